import { APIRequestContext, expect, Page, test } from "@playwright/test";
import { addCard, ADMIN, expectHydrated, serverAhead, signIn, signUp, spendUntil402, uniqueEmail, liveKey } from "./support";

async function call(request: APIRequestContext, key: string, path: string, text = "A great, fast API.") {
  return request.post(path, { headers: { Authorization: `Bearer ${key}` }, data: { text } });
}

/** Follows the first fix link of a problem body, as the explorer's button does. */
async function followFix(page: Page, body: any) {
  const href: string = body.resolution[0].href;
  expect(href).toContain("return_to=%2Fexplorer");
  await page.goto(href);
}


test("journey 2: credits run out, the 402's fix tops up with 4242, the way back, and the call works", async ({ page, request }) => {
  test.setTimeout(120_000);
  await signUp(page, "Tia Topup", uniqueEmail("tia"));
  const key = await liveKey(page);
  // Spend the 100 included credits.
  const refused = await spendUntil402(request, key, "/v1/text/sentiment");
  expect(refused.code).toBe("insufficient_credits");
  expect(refused.balance.available).toBe("0");

  await followFix(page, refused);
  await expect(page.getByLabel(/1000 credits/)).toBeChecked();
  // No card yet: the page asks for one and comes back here.
  await page.getByTestId("add-card-first").click();
  await addCard(page, "4242424242424242");
  await page.getByTestId("return").click();
  await expect(page).toHaveURL(/\/billing\/top-up\?credits=1000/);
  await expect(page.getByLabel(/1000 credits/)).toBeChecked();
  await page.getByTestId("pay").click();
  await expect(page.getByText("Paid: 1,000 credits were added")).toBeVisible();
  await expect(page.getByTestId("balance")).toHaveText("1000");
  await page.getByTestId("return").click();
  await expect(page).toHaveURL(/\/explorer$/);
  const ok = await call(request, key, "/v1/text/sentiment");
  expect(ok.status()).toBe(200);
  expect(ok.headers()["tollgate-credits-remaining"]).toBe("999");
});

test("journey 3: a declined card adds no credits and the failed charge stays in the history", async ({ page }) => {
  await signUp(page, "Dee Decline", uniqueEmail("dee"));
  await page.goto("/billing/payment-methods");
  await addCard(page, "4000000000009995");
  await page.goto("/billing/top-up?credits=5000");
  await expect(page.getByTestId("balance")).toHaveText("100");
  await page.getByTestId("pay").click();
  await expect(page.getByText("Your card has insufficient funds.")).toBeVisible();
  await expect(page.getByTestId("balance")).toHaveText("100");
  await page.goto("/billing/invoices");
  const row = page.locator("tr[data-status=failed]");
  await expect(row).toHaveCount(1);
  await expect(row).toContainText("insufficient_funds");
  await row.getByRole("link").click();
  await expect(page.getByTestId("invoice-status")).toHaveText("failed");
  await expect(page.getByTestId("invoice-total")).toHaveText("$45.00");
});

test("journey 4: a Free key on a Pro endpoint upgrades from the 402 and the call succeeds", async ({ page, request }) => {
  await signUp(page, "Uma Upgrade", uniqueEmail("uma"));
  const key = await liveKey(page);
  const res = await call(request, key, "/v1/text/summarize", "one two three");
  expect(res.status()).toBe(402);
  const body = await res.json();
  expect(body.code).toBe("plan_upgrade_required");
  expect(body.required_plan).toBe("pro");

  await followFix(page, body);
  await expect(page.locator("article[data-plan=pro]")).toHaveClass(/plan-selected/);
  await page.getByRole("link", { name: "Add a card" }).click();
  await addCard(page, "4242424242424242");
  await page.getByTestId("return").click();
  const pro = page.locator("article[data-plan=pro]");
  const previewed = (await pro.getByTestId("preview-total").textContent())!;
  await pro.getByTestId("choose-pro").click();
  await expect(page.getByText("Upgraded: your new plan applies now.")).toBeVisible();
  await page.goto("/billing/invoices");
  await expect(page.locator("tr[data-status=paid]").first()).toContainText(previewed);
  const ok = await call(request, key, "/v1/text/summarize", "one two three");
  expect(ok.status()).toBe(200);
});

test("journey 5: Enterprise waits for approval, an admin approves, the customer is told, calls work", async ({ page, browser, request }) => {
  const email = uniqueEmail("eli");
  await signUp(page, "Eli Enterprise", email);
  const key = await liveKey(page);
  await page.goto("/billing/payment-methods");
  await addCard(page, "4242424242424242");
  await page.goto("/billing/plans?plan=enterprise");
  await page.getByTestId("choose-enterprise").click();
  await expect(page.getByText("Requested:")).toBeVisible();
  const waiting = await call(request, key, "/v1/text/summarize", "one two three");
  expect(waiting.status()).toBe(402);
  expect((await waiting.json()).code).toBe("subscription_pending_approval");
  expect((await call(request, key, "/v1/text/sentiment")).status()).toBe(200);
  await page.goto("/billing");
  await expect(page.locator("[data-banner=pending_approval]")).toBeVisible();

  const admin = await (await browser.newContext()).newPage();
  await signIn(admin, ADMIN.email, ADMIN.password);
  await admin.goto("/admin/approvals");
  const request_ = admin.locator("article.approval", { hasText: "Eli Enterprise" });
  await request_.getByRole("textbox").fill("Welcome aboard");
  await request_.getByTestId("approve").click();
  await expect(admin.getByText("Approved")).toBeVisible();
  await admin.goto("/admin/outbox");
  await expect(admin.locator("article.outbox-entry", { hasText: email }).filter({ hasText: "approved" }).first()).toBeVisible();

  await page.goto("/billing");
  await expect(page.getByTestId("plan-status")).toHaveText("active");
  await expect(page.getByTestId("plan-name")).toHaveText("Enterprise");
  const ok = await call(request, key, "/v1/text/summarize", "one two three");
  expect(ok.status()).toBe(200);
});

test("journey 8: the spend cap's 402 opens the cap setting, raising it lets calls through", async ({ page, request }) => {
  await signUp(page, "Cal Cap", uniqueEmail("cal"));
  const key = await liveKey(page);
  await page.goto("/billing/limits");
  await page.getByLabel("Monthly spend cap (credits)").fill("1");
  await page.getByTestId("save-limits").click();
  await expect(page.getByText("Limits saved.")).toBeVisible();
  expect((await call(request, key, "/v1/text/sentiment")).status()).toBe(200);
  const res = await call(request, key, "/v1/text/sentiment");
  expect(res.status()).toBe(402);
  const body = await res.json();
  expect(body.code).toBe("spend_cap_reached");

  await followFix(page, body);
  await expectHydrated(page);
  await expect(page.getByLabel("Monthly spend cap (credits)")).toHaveValue("1");
  await page.getByLabel("Monthly spend cap (credits)").fill("abc");
  await page.getByTestId("save-limits").click();
  await expect(page.locator("#spend_cap-error")).toContainText("whole number");
  await expect(page.getByLabel("Monthly spend cap (credits)")).toHaveValue("abc");
  await page.getByLabel("Monthly spend cap (credits)").fill("50");
  await page.getByTestId("save-limits").click();
  await expect(page.getByText("Limits saved.")).toBeVisible();
  await page.getByTestId("return").click();
  await expect(page).toHaveURL(/\/explorer$/);
  expect((await call(request, key, "/v1/text/sentiment")).status()).toBe(200);
});

/** Calls `path` on `base` until it answers `status` (a job may still be running). */
async function until(request: APIRequestContext, base: string, key: string, status: number, path = "/v1/text/sentiment") {
  for (let i = 0; i < 60; i++) {
    const res = await request.post(`${base}${path}`, { headers: { Authorization: `Bearer ${key}` }, data: { text: "fine" } });
    if (res.status() === status) return res;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${base}${path} never answered ${status}`);
}

async function onPro(page: Page, card = "4242424242424242") {
  await page.goto("/billing/payment-methods");
  await addCard(page, card);
  await page.goto("/billing/plans?plan=pro");
  await page.getByTestId("choose-pro").click();
  await expect(page.getByText("Upgraded: your new plan applies now.")).toBeVisible();
}

test("journey 6: a failed renewal warns in grace, then 402s, and a new card restores access at once", async ({ page, request }) => {
  test.setTimeout(90_000);
  const email = uniqueEmail("pat");
  await signUp(page, "Pat Pastdue", email);
  const key = await liveKey(page);
  await onPro(page);
  await page.goto("/billing/payment-methods");
  await addCard(page, "4000000000000341");

  // A month on, the renewal fails: past due, calls still work, with a warning.
  const month = await serverAhead("32d", 3101);
  try {
    let warning = "";
    for (let i = 0; i < 60 && !warning.includes("subscription_past_due"); i++) {
      const res = await until(request, month.url, key, 200);
      warning = res.headers()["tollgate-warning"] ?? "";
      if (!warning.includes("subscription_past_due")) await new Promise((r) => setTimeout(r, 250));
    }
    expect(warning).toContain("subscription_past_due");
    // A session a month old has lapsed on a server a month ahead: sign in there.
    await signIn(page, email, undefined, month.url);
    await page.goto(`${month.url}/billing`);
    await expect(page.locator("[data-banner=past_due]")).toBeVisible();
  } finally {
    await month.stop();
  }

  // After the grace period: 402, with the processor's words.
  const later = await serverAhead("36d", 3102);
  try {
    const refused = await until(request, later.url, key, 402);
    const body = await refused.json();
    expect(body.code).toBe("subscription_past_due");
    expect(body.payment_error).toEqual({ code: "card_declined", decline_code: "generic_decline" });
    await signIn(page, email, undefined, later.url);
    await followFix(page, body);
    await addCard(page, "4242424242424242");
    await expect(page.getByText("access is restored")).toBeVisible();
    await page.getByTestId("return").click();
    await expect(page).toHaveURL(/\/explorer$/);
    expect((await call(request, key, `${later.url}/v1/text/sentiment`)).status()).toBe(200);
  } finally {
    await later.stop();
  }
});

test("journey 7: a canceled plan ends at period end with 402 subscription_expired, and renews from its fix", async ({ page, request }) => {
  test.setTimeout(90_000);
  const email = uniqueEmail("cy");
  await signUp(page, "Cy Cancel", email);
  const key = await liveKey(page);
  await onPro(page);
  await page.goto("/billing/plans");
  await page.getByTestId("cancel").click();
  await expect(page.getByText("Canceled: your plan keeps working until")).toBeVisible();
  expect((await call(request, key, "/v1/text/sentiment")).status()).toBe(200);

  const ahead = await serverAhead("33d", 3103);
  try {
    const refused = await until(request, ahead.url, key, 402);
    const body = await refused.json();
    expect(body.code).toBe("subscription_expired");
    await signIn(page, email, undefined, ahead.url);
    await followFix(page, body);
    await expect(page.getByRole("heading", { name: "Renew your subscription" })).toBeVisible();
    await expect(page.locator("article[data-plan=pro]")).toHaveClass(/plan-selected/);
    await page.getByTestId("choose-pro").click();
    await expect(page.getByText("Renewed: your subscription is active again.")).toBeVisible();
    await page.getByTestId("return").click();
    await expect(page).toHaveURL(/\/explorer$/);
    expect((await call(request, key, `${ahead.url}/v1/text/sentiment`)).status()).toBe(200);
  } finally {
    await ahead.stop();
  }
});
