import { APIRequestContext, Browser, expect, Page, test } from "@playwright/test";
import { readFileSync } from "node:fs";
import { addCard, ADMIN, axeViolations, fromOwnAddress, serverAhead, signIn, signUp, uniqueEmail, liveKey } from "./support";

async function call(request: APIRequestContext, key: string, path: string, base = "") {
  return request.post(`${base}${path}`, { headers: { Authorization: `Bearer ${key}` }, data: { text: "A great, fast API." } });
}

/** The platform admin, signed in, in a browser of their own. */
async function adminPage(browser: Browser, javaScriptEnabled = true): Promise<Page> {
  const context = await browser.newContext({ javaScriptEnabled, bypassCSP: true });
  const admin = await context.newPage();
  await fromOwnAddress(admin);
  await signIn(admin, ADMIN.email, ADMIN.password);
  await expect(admin).toHaveURL(/\/account$/);
  return admin;
}

/** Finds the organization of a member's email and opens its page; returns its path. */
async function openOrg(admin: Page, email: string): Promise<string> {
  await admin.goto("/admin/orgs");
  await admin.getByLabel("Name, member email or id").fill(email);
  await admin.getByRole("button", { name: "Search" }).click();
  const rows = admin.getByTestId("orgs").locator("tbody tr");
  await expect(rows).toHaveCount(1);
  await rows.getByRole("link").first().click();
  await expect(admin).toHaveURL(/\/admin\/orgs\/[0-9a-f-]{36}$/);
  return new URL(admin.url()).pathname;
}

async function adjust(admin: Page, direction: "add" | "remove", account: "included" | "purchased", credits: string, reason: string) {
  await admin.locator(`input[name=direction][value=${direction}]`).check();
  await admin.locator(`input[name=account][value=${account}]`).check();
  await admin.getByLabel("Credits", { exact: true }).fill(credits);
  await admin.getByLabel("Reason", { exact: true }).fill(reason);
  await admin.getByTestId("adjust").click();
}

const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

test("the admin finds an organization, adjusts its credits with a reason the audit log keeps with before and after, and suspends its keys", async ({ page, browser, request }) => {
  test.setTimeout(90_000);
  const email = uniqueEmail("orla");
  await signUp(page, "Orla Org", email);
  const key = await liveKey(page);
  const admin = await adminPage(browser);
  const orgPath = await openOrg(admin, email);
  await expect(admin.getByTestId("org-name")).toContainText("Orla");

  // A reason is required: refused next to the field, nothing moves.
  await adjust(admin, "add", "purchased", "250", "");
  await expect(admin.locator("#reason-error")).toBeVisible();
  await expect(admin.getByTestId("purchased")).toHaveText("0");
  await adjust(admin, "add", "purchased", "250", "goodwill after the outage");
  await expect(admin.getByText("Added 250 purchased credits: 0 → 250.")).toBeVisible();
  await expect(admin.getByTestId("purchased")).toHaveText("250");

  await admin.getByRole("link", { name: "Its whole audit trail" }).click();
  const entry = admin.locator('tr[data-action="credits.adjusted"]');
  await expect(entry).toHaveCount(1);
  await expect(entry).toContainText("goodwill after the outage");
  await expect(entry.getByTestId("before")).toContainText('"purchased":0');
  await expect(entry.getByTestId("after")).toContainText('"purchased":250');
  await expect(entry).toContainText(ADMIN.email);
  await expect(entry).toContainText("req_");

  // Suspended: the customer's next call is a 403 with its own code.
  await admin.goto(orgPath);
  await admin.getByLabel("Reason for the suspension").fill("abuse report 77");
  await admin.getByTestId("suspend").click();
  await expect(admin.getByTestId("suspended")).toContainText("abuse report 77");
  const refused = await request.get("/v1/ping", { headers: { Authorization: `Bearer ${key}` } });
  expect(refused.status()).toBe(403);
  const body = await refused.json();
  expect(body.code).toBe("api_key_suspended");
  expect(body.type).toMatch(/\/docs\/errors\/api_key_suspended$/);
  await admin.getByTestId("suspend").click();
  await expect(admin.getByText("The organization's keys work again.")).toBeVisible();
  expect((await request.get("/v1/ping", { headers: { Authorization: `Bearer ${key}` } })).status()).toBe(200);
});

test("Pro's included credits, edited in the plan editor, reach a subscriber at the next renewal", async ({ page, browser }) => {
  test.setTimeout(120_000);
  const email = uniqueEmail("pia");
  await signUp(page, "Pia Pro", email);
  await page.goto("/billing/payment-methods");
  await addCard(page, "4242424242424242");
  await page.goto("/billing/plans?plan=pro");
  await page.getByTestId("choose-pro").click();
  await expect(page.getByText("Upgraded: your new plan applies now.")).toBeVisible();

  let admin = await adminPage(browser);
  const editPro = async (credits: string) => {
    await admin.goto("/admin/plans");
    await admin.locator('tr[data-plan="pro"]').getByTestId("plan-edit").click();
    await admin.getByLabel("Included credits a month").fill(credits);
    await admin.getByTestId("plan-save").click();
    await expect(admin.getByText("The Pro plan is saved.")).toBeVisible();
  };
  await editPro("12000");
  try {
    await expect(admin.locator('tr[data-plan="pro"]').getByTestId("plan-included")).toHaveText("12,000");
    // This period is what was paid for.
    await page.goto("/billing");
    await expect(page.getByTestId("included-credits")).toContainText("10000");
    // A month on, the renewal grants the new amount.
    const month = await serverAhead("32d", 3111);
    try {
      await signIn(page, email, undefined, month.url);
      let included = "";
      for (let i = 0; i < 40 && !included.includes("12000"); i++) {
        await page.goto(`${month.url}/billing`);
        included = (await page.getByTestId("included-credits").textContent()) ?? "";
        if (!included.includes("12000")) await page.waitForTimeout(250);
      }
      expect(included).toContain("12000");
    } finally {
      await month.stop();
    }
  } finally {
    // The server ahead in time ended sessions idle for a month on its
    // clock, the admin's among them: sign in again to put Pro back.
    admin = await adminPage(browser);
    await editPro("10000");
  }
});

test("a 402 followed to its fix and paid counts as recovered, with its time and revenue", async ({ page, browser, request }) => {
  test.setTimeout(90_000);
  const email = uniqueEmail("rex");
  await signUp(page, "Rex Recover", email);
  const key = await liveKey(page);
  const admin = await adminPage(browser);
  const orgPath = await openOrg(admin, email);
  // The admin takes the included credits away, so the next call is refused.
  await adjust(admin, "remove", "included", "100", "e2e: no included credits left");
  await expect(admin.getByTestId("included")).toHaveText("0");

  const refused = await call(request, key, "/v1/text/sentiment");
  expect(refused.status()).toBe(402);
  const body = await refused.json();
  expect(body.code).toBe("insufficient_credits");
  expect(body.resolution[0].href).toContain(`ref=${body.request_id}`);
  await page.goto(body.resolution[0].href);
  await page.getByTestId("add-card-first").click();
  await addCard(page, "4242424242424242");
  await page.getByTestId("return").click();
  await page.getByTestId("pay").click();
  await expect(page.getByText("Paid: 1,000 credits were added")).toBeVisible();
  let ok = await call(request, key, "/v1/text/sentiment");
  for (let i = 0; i < 20 && ok.status() !== 200; i++) {
    await page.waitForTimeout(250);
    ok = await call(request, key, "/v1/text/sentiment");
  }
  expect(ok.status()).toBe(200);

  const orgId = orgPath.split("/").pop();
  let row = admin.locator('tr[data-code="insufficient_credits"]');
  for (let i = 0; i < 20; i++) {
    await admin.goto(`/admin/recovery?org=${orgId}`);
    if ((await row.locator('[data-step="recovered"]').textContent()) === "1") break;
    await admin.waitForTimeout(500);
  }
  await expect(admin.getByTestId("recovery-org")).toContainText("Rex");
  await expect(row.locator('[data-step="refused"]')).toHaveText("1");
  await expect(row.locator('[data-step="visited"]')).toHaveText("1");
  await expect(row.locator('[data-step="fixed"]')).toHaveText("1");
  await expect(row.locator('[data-step="recovered"]')).toHaveText("1");
  await expect(row.locator('[data-step="median"]')).not.toHaveText("—");
  await expect(row.locator('[data-step="revenue"]')).toHaveText("$10.00");
  await expect(admin.getByTestId("unrecovered")).toHaveCount(0);
});

test("the console's pages pass axe and work with JavaScript off", async ({ browser }) => {
  test.setTimeout(90_000);
  const admin = await adminPage(browser);
  await admin.goto("/admin/orgs");
  await admin.getByTestId("orgs").locator("tbody tr a").first().click();
  await expect(admin).toHaveURL(/\/admin\/orgs\/[0-9a-f-]{36}$/);
  const orgPath = new URL(admin.url()).pathname;
  for (const path of ["/admin", "/admin/recovery", "/admin/orgs", orgPath, "/admin/plans", "/admin/audit", "/admin/approvals"]) {
    await admin.goto(path);
    expect(await axeViolations(admin, axeSource), path).toEqual([]);
    expect(await admin.locator("script[src*='/pkg/']").count(), `${path} loads no wasm`).toBe(0);
  }

  // JavaScript off: the pages render, and their forms work.
  const plain = await adminPage(browser, false);
  await plain.goto("/admin");
  await expect(plain.getByRole("heading", { name: "Admin console" })).toBeVisible();
  await plain.goto("/admin/audit?action=credits.stolen");
  await expect(plain.locator("#action-error")).toBeVisible();
  await plain.goto("/admin/orgs");
  await plain.getByLabel("Name, member email or id").fill("no organization is called this");
  await plain.getByRole("button", { name: "Search" }).click();
  await expect(plain.getByTestId("orgs-none")).toBeVisible();
  await plain.goto("/admin/recovery?from=2026-13-01");
  await expect(plain.locator("#from-error")).toBeVisible();
  await plain.goto("/admin/plans");
  await plain.getByLabel("Code", { exact: true }).fill("Bad Code");
  await plain.getByLabel("Name", { exact: true }).fill("E2E plan");
  await plain.getByTestId("plan-save").click();
  await expect(plain.locator("#code-error")).toBeVisible();
  await expect(plain.getByLabel("Name", { exact: true })).toHaveValue("E2E plan");
});
