import { expect, test } from "@playwright/test";
import { PASSWORD, uniqueEmail } from "./support";

// Reading pages and every form work before hydration, and with JavaScript off.
test.use({ javaScriptEnabled: false });

test("docs read and forms work with JavaScript off", async ({ page }) => {
  await page.goto("/docs/quickstart");
  await expect(page.getByRole("heading", { name: "Quickstart" })).toBeVisible();
  await expect(page.getByRole("cell", { name: "Enterprise" })).toBeVisible();

  const email = uniqueEmail("nojs");
  await page.goto("/signup");
  await page.getByLabel("Your name").fill("No Script");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/account$/);
  await expect(page.getByRole("heading", { name: "Welcome, No Script" })).toBeVisible();

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login$/);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("wrong password here");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("Wrong email or password.");
});

test("unknown pages answer 404 with the site's navigation", async ({ page }) => {
  const res = await page.goto("/this/page/does/not/exist");
  expect(res?.status()).toBe(404);
  await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Docs" })).toBeVisible();
});
