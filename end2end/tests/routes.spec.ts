import { expect, test } from "@playwright/test";
import { ADMIN, expectHydrated, signIn, signUp, uniqueEmail } from "./support";

// An admin puts an upstream behind the gateway in the browser; a customer's
// key then reaches it through /v1 and is charged the route's price, then the
// new price after the admin edits it, and stops reaching it when the admin
// turns the route off. The upstream here is this
// server's own /healthz, over real HTTP.
test("an admin adds a route, a customer calls it, the admin reprices and turns it off", async ({ browser, baseURL, request }) => {
  const prefix = `/v1/status${Date.now() % 100000}`;
  const admin = await browser.newPage();
  await signIn(admin, ADMIN.email, ADMIN.password);
  await expect(admin).toHaveURL(/\/account$/);
  await admin.goto("/admin/routes");
  await expectHydrated(admin);

  // A prefix over a built-in endpoint is refused next to the field, and what was typed stays.
  await admin.getByLabel("Path prefix").fill("/v1/text");
  await admin.getByLabel("Upstream URL", { exact: true }).fill(`${baseURL}/healthz`);
  await admin.getByLabel("Endpoint name").fill("status");
  await admin.getByLabel("Key scope").fill("status");
  await admin.getByLabel(/^Price/).fill("2");
  await admin.getByRole("button", { name: "Add route" }).click();
  await expect(admin.locator("#path_prefix-error")).toContainText("is a built-in endpoint");
  await expect(admin.getByLabel("Upstream URL", { exact: true })).toHaveValue(`${baseURL}/healthz`);

  await admin.getByLabel("Path prefix").fill(prefix);
  await admin.getByLabel("Endpoint name").fill(`status${Date.now() % 100000}`);
  await admin.getByRole("button", { name: "Add route" }).click();
  await expect(admin.getByText(`Calls to ${prefix} now go to`)).toBeVisible();
  const row = admin.locator(`tr[data-route="${prefix}"]`);
  await expect(row).toContainText("2 credits per call");
  await expect(row.getByTestId("route-status")).toHaveText("on");

  const customer = await browser.newPage();
  await signUp(customer, "Rory Routes", uniqueEmail("rory"));
  await customer.goto("/account/keys");
  await customer.getByLabel("Name").fill("status checker");
  await customer.getByRole("button", { name: "Create key" }).click();
  const key = (await customer.getByTestId("new-key").textContent())!;

  const ok = await request.get(prefix, { headers: { Authorization: `Bearer ${key}` } });
  expect(ok.status()).toBe(200);
  expect(ok.headers()["tollgate-credits-charged"]).toBe("2");
  expect(ok.headers()["tollgate-credits-remaining"]).toBe("998");

  // The admin changes the price in the edit form; the next call pays the new one.
  await row.getByRole("link", { name: "Edit" }).click();
  await expect(admin.getByRole("heading", { name: `Edit the route ${prefix}` })).toBeVisible();
  await expect(admin.getByLabel(/^Price/)).toHaveValue("2");
  await admin.getByLabel(/^Price/).fill("3");
  await admin.getByRole("button", { name: "Save route" }).click();
  await expect(admin.getByText("with the new settings")).toBeVisible();
  await expect(row).toContainText("3 credits per call");
  const repriced = await request.get(prefix, { headers: { Authorization: `Bearer ${key}` } });
  expect(repriced.headers()["tollgate-credits-charged"]).toBe("3");
  expect(repriced.headers()["tollgate-credits-remaining"]).toBe("995");

  await row.getByRole("button", { name: "Turn off" }).click();
  await expect(admin.getByText("its calls now answer 404")).toBeVisible();
  await expect(row.getByTestId("route-status")).toHaveText("off");
  const gone = await request.get(prefix, { headers: { Authorization: `Bearer ${key}` } });
  expect(gone.status()).toBe(404);
  expect((await gone.json()).code).toBe("not_found");
});
