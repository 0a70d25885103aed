import { APIRequestContext, expect, Page, test } from "@playwright/test";
import { readFileSync } from "node:fs";
import { addCard, axeViolations, expectHydrated, signUp, uniqueEmail, watchConsole } from "./support";

async function createKey(page: Page, mode: "live" | "test", name: string): Promise<string> {
  await page.goto("/account/keys");
  await page.getByLabel("Name").fill(name);
  await page.locator(`input[name=mode][value=${mode}]`).check();
  await page.getByRole("button", { name: "Create key" }).click();
  return (await page.getByTestId("new-key").textContent())!;
}

async function burnCredits(page: Page, request: APIRequestContext, key: string) {
  for (let i = 0; i < 200; i++) {
    const res = await request.post("/v1/text/sentiment", { headers: { Authorization: `Bearer ${key}` }, data: { text: "fine" } });
    if (res.status() === 402) return;
    if (res.status() === 429) await page.waitForTimeout(Number(res.headers()["retry-after"] ?? "1") * 1000);
  }
  throw new Error("the credits never ran out");
}

test("search finds the error page for “insufficient credits”, as you type and without JavaScript", async ({ page, browser }) => {
  await page.goto("/docs");
  await page.getByRole("searchbox", { name: "Search the docs" }).fill("insufficient credits");
  const suggestion = page.getByRole("option").first();
  await expect(suggestion).toContainText("Insufficient credits");
  await expect(suggestion.locator("mark").first()).toBeVisible();
  await suggestion.click();
  await expect(page).toHaveURL(/\/docs\/errors\/insufficient_credits/);
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(/Insufficient credits/);
  await expect(page.locator("#example ~ .code code")).toContainText('"code": "insufficient_credits"');

  // With JavaScript off: the header's form leads to a results page.
  const context = await browser.newContext({ javaScriptEnabled: false });
  const plain = await context.newPage();
  await plain.goto("/docs/quickstart");
  await plain.getByRole("searchbox", { name: "Search the docs" }).fill("insufficient credits");
  await plain.getByRole("searchbox", { name: "Search the docs" }).press("Enter");
  await expect(plain).toHaveURL(/\/docs\/search\?q=insufficient/);
  const first = plain.locator(".search-hit a").first();
  await expect(first).toContainText("Insufficient credits");
  await first.click();
  await expect(plain).toHaveURL(/\/docs\/errors\/insufficient_credits/);
  // Docs pages load no wasm.
  expect(await plain.locator("script[src*='.wasm'], link[href*='.wasm'], script[src*='/pkg/']").count()).toBe(0);
  await context.close();
});

test("the explorer: a test call gives 200; a simulated plan_upgrade_required shows its card and upgrade link", async ({ page }) => {
  const errors = watchConsole(page);
  await signUp(page, "Eve Explorer", uniqueEmail("eve"));
  await createKey(page, "test", "explorer");
  await page.goto("/explorer");
  await expectHydrated(page);
  await expect(page.locator("#ex-key")).toHaveValue(/.+/);
  await page.locator("#ex-endpoint").selectOption({ label: "GET /v1/ping" });
  await page.getByTestId("send").click();
  await expect(page.getByTestId("status")).toContainText("200");
  await expect(page.getByTestId("body")).toContainText('"pong": true');

  await page.locator("#ex-endpoint").selectOption({ label: "POST /v1/text/summarize" });
  // A body that breaks the schema is refused before it is sent.
  await page.getByLabel("JSON body").fill('{"max_sentences": 0}');
  await page.getByTestId("send").click();
  await expect(page.getByRole("alert")).toContainText("`text` is required");
  await page.getByLabel("JSON body").fill('{"text": "One. Two. Three."}');
  await page.getByLabel("Simulate a problem (test keys)").selectOption("plan_upgrade_required");
  await page.getByText("Code for this request").click();
  await expect(page.getByTestId("snippet")).toContainText("Tollgate-Simulate: plan_upgrade_required");
  await expect(page.getByTestId("snippet")).toContainText("tg_test_");
  await page.getByTestId("send").click();
  const card = page.getByTestId("problem-card");
  await expect(card).toHaveAttribute("data-code", "plan_upgrade_required");
  const fix = card.getByTestId("fix").first();
  await expect(fix).toHaveAttribute("href", /\/billing\/plans\?plan=pro.*return_to=%2Fexplorer/);
  await expect(card.getByRole("link", { name: "What this means and how to fix it" })).toHaveAttribute("href", /\/docs\/errors\/plan_upgrade_required$/);
  await expect(card.getByTestId("request-id")).toHaveText(/\S+/);
  await expect(page.locator(".history li")).toHaveCount(2);
  // The browser logs each 402 it receives; nothing else may fail.
  expect(errors.filter((e) => !e.includes("status of 402"))).toEqual([]);
});

test("the explorer: a live key without credits gets 402, the fix is paid with 4242, back in the explorer Retry gives 200", async ({ page, request }) => {
  test.setTimeout(120_000);
  await signUp(page, "Rui Retry", uniqueEmail("rui"));
  const key = await createKey(page, "live", "server");
  await burnCredits(page, request, key);

  await page.goto("/explorer?endpoint=sentiment");
  await expectHydrated(page);
  const live = await page.locator("#ex-key option", { hasText: "server" }).getAttribute("value");
  await page.locator("#ex-key").selectOption(live!);
  await page.getByTestId("send").click();
  const card = page.getByTestId("problem-card");
  await expect(card).toHaveAttribute("data-code", "insufficient_credits");
  await expect(card.getByTestId("balance")).toContainText("Balance 0");
  await card.getByTestId("fix").first().click();

  await expect(page).toHaveURL(/\/billing\/top-up\?credits=/);
  await page.getByTestId("add-card-first").click();
  await addCard(page, "4242424242424242");
  await page.getByTestId("return").click();
  await page.getByTestId("pay").click();
  await expect(page.getByText(/Paid: .* credits were added/)).toBeVisible();
  await page.getByTestId("return").click();

  await expect(page).toHaveURL(/\/explorer$/);
  await expectHydrated(page);
  await expect(page.getByTestId("restored")).toBeVisible();
  await expect(page.locator("#ex-endpoint")).toHaveValue("sentiment");
  await page.getByTestId("retry").click();
  await expect(page.getByTestId("status")).toContainText("200");
  await expect(page.getByTestId("problem-card")).toHaveCount(0);
});

test.describe("accessibility", () => {
  test.use({ bypassCSP: true });
  test("axe finds no serious or critical violations on the docs, explorer and billing pages", async ({ page }) => {
    test.setTimeout(90_000);
    const axe = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
    await signUp(page, "Ali Axe", uniqueEmail("ali"));
    await createKey(page, "test", "axe");
    const found: string[] = [];
    for (const path of ["/docs", "/docs/quickstart", "/docs/errors/insufficient_credits", "/docs/reference/summarize", "/docs/search?q=credits", "/explorer", "/billing", "/billing/plans", "/billing/top-up", "/billing/payment-methods", "/billing/limits", "/billing/invoices"]) {
      await page.goto(path);
      await expectHydrated(page);
      const violations = await axeViolations(page, axe);
      if (violations.length) found.push(`${path}: ${JSON.stringify(violations, null, 1)}`);
    }
    expect(found).toEqual([]);
  });
});
