import { expect, test } from "@playwright/test";
import { expectHydrated, signUp, uniqueEmail } from "./support";

test("create a key, see it once, copy it, call the API with it, revoke it", async ({ page, context, request }) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await signUp(page, "Kim Keys", uniqueEmail("kim"));
  await page.goto("/account/keys");
  await expect(page.getByTestId("live-credits")).toHaveText("100");
  await expect(page.getByTestId("sandbox-credits")).toHaveText("1000");

  await page.getByLabel("Name").fill("laptop");
  await page.getByRole("button", { name: "Create key" }).click();
  const shown = page.getByTestId("new-key");
  await expect(shown).toHaveText(/^tg_test_[0-9A-Za-z]{32}$/);
  const key = (await shown.textContent())!;

  await expectHydrated(page);
  await page.getByTestId("copy-key").click();
  await expect(page.getByTestId("copy-key")).toHaveText("Copied");
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(key);

  const ok = await request.post("/v1/text/sentiment", {
    headers: { Authorization: `Bearer ${key}` },
    data: { text: "A great, fast API." },
  });
  expect(ok.status()).toBe(200);
  expect(ok.headers()["tollgate-credits-remaining"]).toBe("999");

  const simulated = await request.get("/v1/ping", {
    headers: { Authorization: `Bearer ${key}`, "Tollgate-Simulate": "insufficient_credits" },
  });
  expect(simulated.status()).toBe(402);
  expect((await simulated.json()).code).toBe("insufficient_credits");

  // Shown once: a reload lists it only as prefix…last4.
  await page.reload();
  await expect(page.getByTestId("new-key")).toHaveCount(0);
  const row = page.locator(`tr[data-key="${key.slice(0, 12)}…${key.slice(-4)}"]`);
  await expect(row).toBeVisible();

  await row.getByRole("button", { name: "Revoke" }).click();
  await expect(page.getByText("Key revoked.")).toBeVisible();
  const refused = await request.get("/v1/ping", { headers: { Authorization: `Bearer ${key}` } });
  expect(refused.status()).toBe(401);
  expect((await refused.json()).code).toBe("api_key_revoked");
});
