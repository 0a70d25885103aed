import { APIRequestContext, expect, Page } from "@playwright/test";

export const PASSWORD = "correct horse battery";
/** The platform admin `.ci/test` creates on the test database. */
export const ADMIN = { email: "ops@tollgate.test", password: "e2e-operator-password" };

/** An address no other run has used. */
export function uniqueEmail(prefix: string): string {
  return `${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
}

/** Fails the test on any console error or page error (a broken hydration shows up here). */
export function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(e.message));
  return errors;
}

/**
 * Waits until the page is ready: loaded, and if it holds an island (the
 * explorer, the keys page's copy button), hydrated. Other pages load no wasm.
 */
export async function expectHydrated(page: Page) {
  await page.waitForLoadState("load");
  if ((await page.locator("leptos-island").count()) > 0) {
    await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
  }
}

/**
 * Each sign-up speaks from an address of its own (the test server trusts one
 * proxy), so the suite stays under the per-address sign-up limit as it grows.
 */
export async function fromOwnAddress(page: Page) {
  const octet = () => 1 + Math.floor(Math.random() * 250);
  await page.setExtraHTTPHeaders({ "x-forwarded-for": `10.${octet()}.${octet()}.${octet()}` });
}

export async function signUp(page: Page, name: string, email: string, password = PASSWORD) {
  await fromOwnAddress(page);
  await page.goto("/signup");
  await page.getByLabel("Your name").fill(name);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/account$/);
}

export async function signIn(page: Page, email: string, password = PASSWORD, base = "") {
  await page.goto(`${base}/login`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

export async function signOut(page: Page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login$/);
}

/** Fills the payment-methods form with a sandbox card and saves it. */
export async function addCard(page: Page, number: string) {
  await page.getByLabel("Card number").fill(number);
  await page.getByLabel("Expiry month").fill("12");
  await page.getByLabel("Expiry year").fill("2030");
  await page.getByLabel("CVC").fill("123");
  await page.getByLabel("Name on the card").fill("Ada Lovelace");
  await page.getByTestId("save-card").click();
  await expect(page.getByText("Card added.")).toBeVisible();
}

/**
 * The serious and critical axe-core violations of the page (axe's source,
 * `require.resolve("axe-core/axe.min.js")` read once, is injected; the test
 * must `bypassCSP`).
 */
export async function axeViolations(page: Page, axeSource: string): Promise<any[]> {
  await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const r = await (window as any).axe.run(document, { resultTypes: ["violations"] });
    return r.violations.filter((v: any) => v.impact === "serious" || v.impact === "critical")
      .map((v: any) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n: any) => n.target.join(" ")) }));
  });
}

/** A link in the site's main navigation. */
export function navLink(page: Page, name: string) {
  return page.getByRole("navigation", { name: "Main" }).getByRole("link", { name, exact: true });
}

/**
 * Another Tollgate server on the browser tests' database whose clock runs
 * `offset` ahead (`TOLLGATE_CLOCK_OFFSET`): its due jobs (renewals, dunning)
 * run as it starts, so time-driven journeys play out in a browser.
 */
export async function serverAhead(offset: string, port: number): Promise<{ url: string; stop: () => Promise<void> }> {
  const { spawn } = await import("child_process");
  const bin = process.env.TOLLGATE_BIN;
  const db = process.env.TOLLGATE_E2E_DB;
  if (!bin || !db) throw new Error("TOLLGATE_BIN and TOLLGATE_E2E_DB come from .ci/test");
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(bin, ["serve"], {
    env: {
      ...process.env,
      DATABASE_URL: db,
      TOLLGATE_ADDR: `127.0.0.1:${port}`,
      TOLLGATE_PUBLIC_URL: url,
      TOLLGATE_CLOCK_OFFSET: offset,
      TOLLGATE_TRUSTED_PROXIES: "1",
      LEPTOS_SITE_ROOT: process.env.TOLLGATE_SITE_ROOT ?? "../target/site",
    },
    stdio: "ignore",
  });
  const exited = new Promise((r) => child.once("exit", r));
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Creates a live key on the keys page and reads it off the page. */
export async function liveKey(page: Page, name = "server"): Promise<string> {
  await page.goto("/account/keys");
  await page.getByLabel("Name").fill(name);
  await page.locator("input[name=mode][value=live]").check();
  await page.getByRole("button", { name: "Create key" }).click();
  const key = (await page.getByTestId("new-key").textContent())!;
  expect(key).toMatch(/^tg_live_/);
  return key;
}

/**
 * Calls `path` with `key` until it answers 402 (waiting out 429s; the Free
 * plan allows 5 calls a second), and returns the problem body.
 */
export async function spendUntil402(request: APIRequestContext, key: string, url: string, text = "A great, fast API."): Promise<any> {
  for (let i = 0; i < 200; i++) {
    const res = await request.post(url, { headers: { Authorization: `Bearer ${key}` }, data: { text } });
    if (res.status() === 402) return res.json();
    if (res.status() === 429) await new Promise((r) => setTimeout(r, Number(res.headers()["retry-after"] ?? "1") * 1000));
    else expect(res.status()).toBe(200);
  }
  throw new Error(`${url} never answered 402`);
}
