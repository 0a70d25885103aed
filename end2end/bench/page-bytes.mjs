// Measures the script and wasm each kind of page loads (docs, explorer,
// billing), raw and gzip-compressed, in Debian's Chromium. Prints a table
// for the README; exits 1 if a docs page loads wasm or the explorer loads
// more than 200 KB of compressed script and wasm.
//
//   node end2end/bench/page-bytes.mjs [base URL, default http://127.0.0.1:3000]
import { chromium } from "@playwright/test";
import { gzipSync } from "node:zlib";

const base = process.argv[2] ?? process.env.TOLLGATE_E2E_URL ?? "http://127.0.0.1:3000";
const LIMIT = 200 * 1024;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const context = await browser.newContext({ baseURL: base });
const page = await context.newPage();
const octet = () => 1 + Math.floor(Math.random() * 250);
await page.setExtraHTTPHeaders({ "x-forwarded-for": `10.${octet()}.${octet()}.${octet()}` });

// A signed-in customer, as the explorer and billing pages are seen.
await page.goto("/signup");
await page.getByLabel("Your name").fill("Page Weight");
await page.getByLabel("Email").fill(`weight-${Date.now()}@example.com`);
await page.getByLabel("Password").fill("correct horse battery");
await page.getByRole("button", { name: "Create account" }).click();
await page.waitForURL(/\/account$/);

async function measure(path) {
  const seen = new Map();
  const onResponse = async (res) => {
    const type = res.request().resourceType();
    const url = res.url();
    if (type === "script" || url.endsWith(".wasm") || type === "stylesheet" || type === "document") {
      try {
        const body = await res.body();
        seen.set(url, { type: url.endsWith(".wasm") ? "wasm" : type, raw: body.length, gz: gzipSync(body, { level: 9 }).length });
      } catch {}
    }
  };
  page.on("response", onResponse);
  await page.goto(path, { waitUntil: "networkidle" });
  page.off("response", onResponse);
  const sum = (pred, key) => [...seen.values()].filter(pred).reduce((a, r) => a + r[key], 0);
  const code = (r) => r.type === "script" || r.type === "wasm";
  return {
    path,
    html: sum((r) => r.type === "document", "gz"),
    css: sum((r) => r.type === "stylesheet", "gz"),
    scriptRaw: sum(code, "raw"),
    scriptGz: sum(code, "gz"),
    wasm: sum((r) => r.type === "wasm", "raw"),
  };
}

const kinds = [
  ["docs", "/docs/quickstart"],
  ["docs (error page)", "/docs/errors/insufficient_credits"],
  ["explorer", "/explorer"],
  ["billing", "/billing"],
  ["billing (top-up)", "/billing/top-up"],
];
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
console.log("| page | path | script + wasm (raw) | script + wasm (gzip -9) | of which wasm (raw) | HTML (gzip) | CSS (gzip) |");
console.log("|---|---|---|---|---|---|---|");
let failed = false;
for (const [kind, path] of kinds) {
  const m = await measure(path);
  console.log(`| ${kind} | \`${path}\` | ${kb(m.scriptRaw)} | ${kb(m.scriptGz)} | ${kb(m.wasm)} | ${kb(m.html)} | ${kb(m.css)} |`);
  if (kind.startsWith("docs") && m.wasm > 0) {
    console.error(`${path} loads wasm; docs pages must not`);
    failed = true;
  }
  if (kind === "explorer" && m.scriptGz > LIMIT) {
    console.error(`the explorer loads ${kb(m.scriptGz)} of compressed script and wasm; the budget is ${kb(LIMIT)}`);
    failed = true;
  }
}
await browser.close();
process.exit(failed ? 1 : 0);
