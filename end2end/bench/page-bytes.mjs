// Measures the script and wasm each kind of page loads (docs, explorer,
// billing) in Debian's Chromium: their size, and what the browser actually
// downloads for them (the encoded body, as the server compressed it) on a
// first visit with an empty cache and on a second visit. Prints a table for
// the README; exits 1 if a page without an island loads wasm or the explorer downloads
// more than 200 KB of script and wasm on a first visit.
//
//   node end2end/bench/page-bytes.mjs [base URL, default http://127.0.0.1:3000]
import { chromium } from "@playwright/test";

const base = process.argv[2] ?? process.env.TOLLGATE_E2E_URL ?? "http://127.0.0.1:3000";
const LIMIT = 200 * 1024;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const octet = () => 1 + Math.floor(Math.random() * 250);
const headers = { "x-forwarded-for": `10.${octet()}.${octet()}.${octet()}` };
const signUp = await browser.newContext({ baseURL: base, extraHTTPHeaders: headers });
const page = await signUp.newPage();

// A signed-in customer, as the explorer and billing pages are seen.
await page.goto("/signup");
await page.getByLabel("Your name").fill("Page Weight");
await page.getByLabel("Email").fill(`weight-${Date.now()}@example.com`);
await page.getByLabel("Password").fill("correct horse battery");
await page.getByRole("button", { name: "Create account" }).click();
await page.waitForURL(/\/account$/);
const storageState = await signUp.storageState();
await signUp.close();

// One visit of `path` on `tab`: per resource, its decoded size and the
// bytes of body that came over the network (0 from the browser's cache).
async function visit(tab, path) {
  const seen = [];
  const onResponse = (res) => {
    const type = res.request().resourceType();
    const url = res.url();
    if (type === "script" || url.endsWith(".wasm") || type === "stylesheet" || type === "document") {
      seen.push((async () => {
        const sizes = await res.request().sizes().catch(() => ({ responseBodySize: 0 }));
        const raw = await res.body().then((b) => b.length).catch(() => 0);
        return { type: url.endsWith(".wasm") ? "wasm" : type, raw, wire: Math.max(0, sizes.responseBodySize) };
      })());
    }
  };
  tab.on("response", onResponse);
  await tab.goto(path, { waitUntil: "networkidle" });
  tab.off("response", onResponse);
  return Promise.all(seen);
}

async function measure(path) {
  // A context of its own: an empty cache, the customer's session.
  const context = await browser.newContext({ baseURL: base, storageState, extraHTTPHeaders: headers });
  const tab = await context.newPage();
  const first = await visit(tab, path);
  const second = await visit(tab, path);
  await context.close();
  const sum = (rows, pred, key) => rows.filter(pred).reduce((a, r) => a + r[key], 0);
  const code = (r) => r.type === "script" || r.type === "wasm";
  return {
    path,
    html: sum(first, (r) => r.type === "document", "wire"),
    css: sum(first, (r) => r.type === "stylesheet", "wire"),
    scriptRaw: sum(first, code, "raw"),
    scriptWire: sum(first, code, "wire"),
    scriptAgain: sum(second, code, "wire"),
    wasm: sum(first, (r) => r.type === "wasm", "raw"),
  };
}

const kinds = [
  ["docs", "/docs/quickstart"],
  ["docs (error page)", "/docs/errors/insufficient_credits"],
  ["explorer", "/explorer"],
  ["billing", "/billing"],
  ["billing (top-up)", "/billing/top-up"],
  ["dashboard", "/account"],
  ["usage (charts drawn on the server)", "/account/usage?span=30d"],
  ["request log", "/account/logs"],
];
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
console.log("| page | path | script + wasm (size) | downloaded, first visit | downloaded, second visit | of which wasm (size) | HTML (downloaded) | CSS (downloaded) |");
console.log("|---|---|---|---|---|---|---|---|");
let failed = false;
for (const [kind, path] of kinds) {
  const m = await measure(path);
  console.log(`| ${kind} | \`${path}\` | ${kb(m.scriptRaw)} | ${kb(m.scriptWire)} | ${kb(m.scriptAgain)} | ${kb(m.wasm)} | ${kb(m.html)} | ${kb(m.css)} |`);
  // Only the explorer and the keys page hold islands.
  if (kind !== "explorer" && m.wasm > 0) {
    console.error(`${path} loads wasm; only pages with an island may`);
    failed = true;
  }
  if (kind === "explorer" && m.scriptWire > LIMIT) {
    console.error(`the explorer downloads ${kb(m.scriptWire)} of script and wasm; the budget is ${kb(LIMIT)}`);
    failed = true;
  }
}
await browser.close();
process.exit(failed ? 1 : 0);
