import { APIRequestContext, expect, Page, test } from "@playwright/test";
import { ADMIN, signIn, signUp, spendUntil402, uniqueEmail, liveKey } from "./support";

// The same journeys with Stripe taking the payments: a second server that
// `.ci/test` starts against the Stripe emulator (localstripe), whose fake
// Stripe.js draws its card field into the page as Stripe.js does.
const STRIPE = process.env.TOLLGATE_E2E_STRIPE_URL;
test.skip(!STRIPE, "TOLLGATE_E2E_STRIPE_URL comes from .ci/test");
test.use({ baseURL: STRIPE });

async function call(request: APIRequestContext, key: string, path: string, text = "A great, fast API.") {
  return request.post(`${STRIPE}${path}`, { headers: { Authorization: `Bearer ${key}` }, data: { text } });
}

/**
 * Signs up as `signUp` does, then keeps the page's own client address
 * (`fromOwnAddress`) on Tollgate's requests only: an extra header on
 * Stripe.js's requests to Stripe would make them preflighted, which Stripe.js
 * never is.
 */
async function signUpHere(page: Page, name: string, email: string) {
  await signUp(page, name, email);
  const ip = `10.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
  await page.setExtraHTTPHeaders({});
  await page.route(`${STRIPE}/**`, (route) => route.continue({ headers: { ...route.request().headers(), "x-forwarded-for": ip } }));
}

/** Types a card into Stripe.js's field and saves it. */
async function stripeCard(page: Page, number: string) {
  const field = page.getByTestId("card-element");
  await field.locator("input[placeholder=number]").fill(number);
  await field.locator("input[placeholder=exp_month]").fill("12");
  await field.locator("input[placeholder=exp_year]").fill("30");
  await field.locator("input[placeholder=cvc]").fill("123");
  await field.locator("input[placeholder=postal_code]").fill("10001");
  await page.getByLabel("Name on the card").fill("Ada Lovelace");
  await page.getByTestId("save-card").click();
}

/** Every request body the page sends to Tollgate (never to Stripe). */
function bodiesToTollgate(page: Page): string[] {
  const bodies: string[] = [];
  page.on("request", (r) => {
    if (r.url().startsWith(STRIPE!)) bodies.push(`${r.url()} ${r.postData() ?? ""}`);
  });
  return bodies;
}

test("Stripe: a card through Stripe.js, a top-up from the 402's fix, and the retried call gets 200", async ({ page, request }) => {
  test.setTimeout(120_000);
  const sent = bodiesToTollgate(page);
  await signUpHere(page, "Stella Stripe", uniqueEmail("stella"));
  const key = await liveKey(page);
  const refused = await spendUntil402(request, key, `${STRIPE}/v1/text/sentiment`);
  expect(refused.code).toBe("insufficient_credits");
  await page.goto(refused.resolution[0].href);
  await page.getByTestId("add-card-first").click();
  await expect(page).toHaveURL(/\/billing\/payment-methods/);
  // Stripe.js's card field, not Tollgate's card number inputs.
  await expect(page.getByLabel("Card number")).toHaveCount(0);
  await stripeCard(page, "4242424242424242");
  await expect(page.getByText("Card added.")).toBeVisible();
  await expect(page.locator("tr[data-card='4242']")).toHaveCount(1);
  await page.getByTestId("return").click();
  await expect(page).toHaveURL(/\/billing\/top-up\?credits=1000/);
  await page.getByTestId("pay").click();
  await expect(page.getByText("Paid: 1,000 credits were added")).toBeVisible();
  await expect(page.getByTestId("balance")).toHaveText("1000");
  const ok = await call(request, key, "/v1/text/sentiment");
  expect(ok.status()).toBe(200);
  expect(ok.headers()["tollgate-credits-remaining"]).toBe("999");
  // The card number never went to Tollgate's server.
  expect(sent.length).toBeGreaterThan(3);
  expect(sent.filter((b) => b.includes("4242424242424242") || b.includes("4242+4242"))).toEqual([]);

  // A forged webhook (a wrong signature) changes nothing.
  const forged = JSON.stringify({ id: "evt_forged_e2e", type: "payment_intent.payment_failed", data: { object: { id: "pi_x" } } });
  const res = await request.post(`${STRIPE}/webhooks/stripe`, {
    headers: { "content-type": "application/json", "stripe-signature": `t=${Math.floor(Date.now() / 1000)},v1=${"0".repeat(64)}` },
    data: forged,
  });
  expect(res.status()).toBe(400);
  await page.goto("/billing/top-up");
  await expect(page.getByTestId("balance")).toHaveText("999");
});

test("Stripe: a declined card shows its sentence next to the field and adds nothing", async ({ page }) => {
  await signUpHere(page, "Dana Declined", uniqueEmail("dana"));
  await page.goto("/billing/payment-methods");
  await stripeCard(page, "4000000000009995");
  const error = page.locator("#card-error");
  await expect(error).toBeVisible();
  await expect(error).toHaveText("Your card was declined.");
  await expect(page.getByText("No cards yet.")).toBeVisible();
  // The name is checked before Stripe is asked.
  await page.reload();
  await page.getByTestId("card-element").locator("input[placeholder=number]").fill("4242424242424242");
  await page.getByTestId("save-card").click();
  await expect(page.locator("#name-error")).toHaveText("Enter the name on the card.");
  await expect(page.getByText("No cards yet.")).toBeVisible();
});

test("Stripe: a payment the bank wants confirmed is confirmed on the invoice's page", async ({ page }) => {
  await signUpHere(page, "Theo Threeds", uniqueEmail("theo"));
  await page.goto("/billing/payment-methods");
  await stripeCard(page, "4000002500003155");
  // The bank asks while the card is saved, too.
  await page.getByRole("button", { name: "Complete authentication" }).click();
  await expect(page.getByText("Card added.")).toBeVisible();
  await page.goto("/billing/top-up?credits=5000");
  await page.getByTestId("pay").click();
  await expect(page.getByText("Your bank wants you to confirm this payment")).toBeVisible();
  await expect(page.getByTestId("balance")).toHaveText("100");
  await page.goto("/billing/invoices");
  await page.getByTestId("needs-confirmation").click();
  await page.getByTestId("confirm").click();
  await page.getByRole("button", { name: "Complete authentication" }).click();
  await expect(page.getByText("Payment confirmed: thank you.")).toBeVisible();
  await expect(page.getByTestId("invoice-status")).toHaveText("paid");
  await page.goto("/billing/top-up");
  await expect(page.getByTestId("balance")).toHaveText("5100");
});

test("Stripe: an admin refunds an invoice with a reason, and the invoice shows it", async ({ page, browser }) => {
  const email = uniqueEmail("rita");
  await signUpHere(page, "Rita Refund", email);
  await page.goto("/billing/payment-methods");
  await stripeCard(page, "4242424242424242");
  await expect(page.getByText("Card added.")).toBeVisible();
  await page.goto("/billing/top-up?credits=5000");
  await page.getByTestId("pay").click();
  await expect(page.getByText(/Paid: 5,000 credits were added/)).toBeVisible();

  const ops = await (await browser.newContext({ baseURL: STRIPE })).newPage();
  await signIn(ops, ADMIN.email, ADMIN.password);
  await ops.goto(`/admin/orgs?q=${encodeURIComponent(email)}`);
  await ops.locator("main a[href^='/admin/orgs/']").first().click();
  await ops.getByLabel("Amount (empty: all that is left)").fill("5.00");
  await ops.getByTestId("refund").click();
  await expect(ops.getByText("Say why")).toBeVisible();
  await ops.getByLabel("Amount (empty: all that is left)").fill("5.00");
  await ops.locator("#refund-reason").fill("goodwill: a slow week");
  await ops.getByTestId("refund").click();
  await expect(ops.getByText("Refunded $5.00: the customer is told")).toBeVisible();

  await page.goto("/billing/invoices");
  await expect(page.locator("tr[data-status=paid]")).toContainText("refunded $5.00");
  await page.locator("tr[data-status=paid]").getByRole("link").click();
  await expect(page.getByTestId("refunded")).toContainText("$5.00");
  await expect(page.getByTestId("refunds")).toContainText("goodwill: a slow week");

  // Every charge and refund of these journeys is at Stripe as it is here
  // (the emulator is fresh for the browser tests).
  await ops.goto("/admin/reconcile");
  await expect(ops.getByTestId("reconciled")).toBeVisible();
  await expect(ops.getByTestId("reconcile-differences")).toHaveText("0 differences");
});
