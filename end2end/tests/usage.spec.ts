import { APIRequestContext, expect, Page, test } from "@playwright/test";
import { readFileSync } from "node:fs";
import { addCard, axeViolations, signUp, uniqueEmail, liveKey } from "./support";

async function call(request: APIRequestContext, key: string, path: string) {
  return request.post(path, { headers: { Authorization: `Bearer ${key}` }, data: { text: "A great, fast API." } });
}

/** Three answered calls, a 402 plan_upgrade_required, then every included credit spent and a 402 insufficient_credits. */
async function mixedCalls(request: APIRequestContext, page: Page, key: string) {
  const bodies: Record<string, any> = {};
  const upgrade = await call(request, key, "/v1/text/summarize");
  expect(upgrade.status()).toBe(402);
  bodies.plan_upgrade_required = await upgrade.json();
  let answered = 0;
  let limited = 0;
  for (let i = 0; i < 300 && !bodies.insufficient_credits; i++) {
    const res = await call(request, key, "/v1/text/sentiment");
    if (res.status() === 402) bodies.insufficient_credits = await res.json();
    else if (res.status() === 429) {
      limited++;
      await page.waitForTimeout(Number(res.headers()["retry-after"] ?? "1") * 1000);
    } else {
      expect(res.status()).toBe(200);
      answered++;
    }
  }
  expect(answered).toBe(100);
  // Every call counts: the answered ones, the two 402s, the 429s.
  return { bodies, at: Date.now(), total: answered + 2 + limited, limited };
}

function csvRows(text: string): Record<string, string>[] {
  const [head, ...lines] = text.trim().split("\n");
  const cols = head.split(",");
  return lines.map((l) => Object.fromEntries(l.split(",").map((v, i) => [cols[i], v])));
}

const sum = (rows: Record<string, string>[], col: string, pred = (_: Record<string, string>) => true) =>
  rows.filter(pred).reduce((n, r) => n + Number(r[col]), 0);

test.describe("usage in a time zone other than UTC", () => {
  test.use({ timezoneId: "America/Los_Angeles" });

  test("calls show on the usage page within 5 s, filter by key, export sums to the page, each 402 in the log with its body and fix", async ({ page, request }) => {
    test.setTimeout(150_000);
    await signUp(page, "Uma Usage", uniqueEmail("uma"));
    const key = await liveKey(page);
    const { bodies, at, total, limited } = await mixedCalls(request, page, key);

    // Within 5 seconds of the last call, the page shows all of them.
    await expect(async () => {
      await page.goto("/account/usage?span=24h");
      await expect(page.getByTestId("calls-total")).toHaveText(total.toLocaleString("en-US"), { timeout: 500 });
    }).toPass({ timeout: 5_000, intervals: [250] });
    expect(Date.now() - at).toBeLessThan(5_000 + 2_000);
    await expect(page.getByTestId("calls-chart")).toBeVisible();
    await expect(page.getByTestId("credits-included-total")).toHaveText("100");
    // Times are UTC and say so, whatever the browser's zone.
    await expect(page.getByText("All times are UTC.")).toBeVisible();
    await expect(page.getByTestId("calls-table").getByRole("columnheader", { name: "Hour (UTC)" })).toBeVisible();
    const utcHour = String(new Date().getUTCHours()).padStart(2, "0") + ":00";
    await expect(page.getByTestId("calls-table").getByRole("rowheader", { name: utcHour })).toBeVisible();
    // Per endpoint: sentiment and summarize, with their 402s.
    await expect(page.getByTestId("endpoints-table")).toContainText("summarize");

    // Filter by key: the URL keeps it.
    await page.getByLabel("Key").selectOption({ label: await page.getByLabel("Key").locator("option").nth(1).innerText() });
    await page.getByRole("button", { name: "Show" }).click();
    await expect(page).toHaveURL(/key=/);
    await expect(page.getByTestId("calls-total")).toHaveText(total.toLocaleString("en-US"));

    // The export of this view sums to the page.
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("export-csv").click()]);
    const rows = csvRows(readFileSync((await download.path())!, "utf8"));
    expect(sum(rows, "calls")).toBe(total);
    expect(sum(rows, "calls", (r) => r.outcome === "429")).toBe(limited);
    expect(sum(rows, "credits_included")).toBe(100);
    expect(sum(rows, "calls", (r) => r.outcome === "402")).toBe(2);

    // The log: each 402, its exact body and its fix.
    for (const code of ["plan_upgrade_required", "insufficient_credits"]) {
      await page.goto("/account/logs");
      await page.getByLabel("Status").selectOption("402");
      await page.getByLabel("Problem code").selectOption(code);
      await page.getByRole("button", { name: "Filter" }).click();
      await expect(page).toHaveURL(new RegExp(`code=${code}`));
      const rowsFound = page.getByTestId("log-table").locator("tbody tr");
      await expect(rowsFound).toHaveCount(1);
      await rowsFound.getByRole("link").click();
      const body = bodies[code];
      await expect(page.getByTestId("entry-request-id")).toHaveText(body.request_id);
      const shown = JSON.parse((await page.getByTestId("entry-body").textContent())!);
      expect(shown).toEqual(body);
      const entry = page.url();
      await page.getByTestId("entry-fix").first().click();
      await expect(page).toHaveURL(/\/billing\/(plans|top-up)\?/);
      expect(decodeURIComponent(page.url())).toContain(`return_to=/account/logs/${body.request_id}`);
      if (code === "insufficient_credits") {
        // Pay the fix, then the way back leads to the entry.
        await page.getByTestId("add-card-first").click();
        await addCard(page, "4242424242424242");
        await page.getByTestId("return").click();
        await page.getByTestId("pay").click();
        await expect(page.getByText(/Paid: 1,000 credits were added/)).toBeVisible();
        await page.getByTestId("return").click();
        expect(page.url()).toBe(entry);
      }
    }
    // The dashboard: the last refusal and its fix.
    await page.goto("/account");
    await expect(page.getByTestId("today-402")).toHaveText("2");
    await expect(page.getByTestId("last-refused")).toContainText("insufficient_credits");
    await expect(page.getByTestId("forecast")).toBeVisible();
  });
});

test.describe("usage pages with JavaScript off", () => {
  test.use({ javaScriptEnabled: false });

  test("the usage page, its filters, the log and an entry work without script", async ({ page, request }) => {
    await signUp(page, "Nora Noscript", uniqueEmail("nora"));
    const key = await liveKey(page);
    const refused = await call(request, key, "/v1/text/summarize");
    expect(refused.status()).toBe(402);
    const body = await refused.json();
    await expect(async () => {
      await page.goto("/account/usage?span=24h&mode=live");
      await expect(page.getByTestId("calls-total")).toHaveText("1", { timeout: 500 });
    }).toPass({ timeout: 5_000 });
    await page.getByLabel("Mode").selectOption("test");
    await page.getByRole("button", { name: "Show" }).click();
    await expect(page).toHaveURL(/mode=test/);
    await expect(page.getByTestId("usage-empty")).toBeVisible();
    await page.goto(`/account/logs/${body.request_id}`);
    expect(JSON.parse((await page.getByTestId("entry-body").textContent())!)).toEqual(body);
    await expect(page.getByTestId("entry-fix")).toHaveAttribute("href", new RegExp(`return_to=%2Faccount%2Flogs%2F${body.request_id}$`));
  });
});

test.describe("usage accessibility", () => {
  test.use({ bypassCSP: true });
  test("axe finds no serious or critical violations on the dashboard, usage, log and entry pages", async ({ page, request }) => {
    const axe = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
    await signUp(page, "Ava Axe", uniqueEmail("ava"));
    const key = await liveKey(page);
    await call(request, key, "/v1/text/sentiment");
    const refused = await (await call(request, key, "/v1/text/summarize")).json();
    await page.waitForTimeout(500);
    const found: string[] = [];
    for (const path of ["/account", "/account/usage?span=24h", "/account/usage?span=90d", "/account/logs", `/account/logs/${refused.request_id}`, "/billing", "/billing/limits"]) {
      await page.goto(path);
      const violations = await axeViolations(page, axe);
      if (violations.length) found.push(`${path}: ${JSON.stringify(violations, null, 1)}`);
    }
    expect(found).toEqual([]);
  });

  test("on a 360 px wide phone the charts fit and their labels stay legible", async ({ browser, request }) => {
    const context = await browser.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 2 });
    const page = await context.newPage();
    await signUp(page, "Pia Phone", uniqueEmail("pia"));
    const key = await liveKey(page);
    await call(request, key, "/v1/text/sentiment");
    await page.waitForTimeout(500);
    await page.goto("/account/usage?span=24h");
    const chart = page.getByTestId("calls-chart");
    const box = (await chart.boundingBox())!;
    expect(box.width).toBeLessThanOrEqual(360);
    const fontPx = await chart.locator("text.chart-axis").first().evaluate((el) => (el as SVGTextElement).getBoundingClientRect().height);
    expect(fontPx).toBeGreaterThanOrEqual(9);
    // Nothing is wider than the screen.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
    await context.close();
  });
});
