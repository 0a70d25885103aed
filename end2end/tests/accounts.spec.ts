import { expect, test } from "@playwright/test";
import { expectHydrated, navLink, PASSWORD, signIn, signOut, signUp, uniqueEmail, watchConsole } from "./support";

test("sign up, sign out and sign in again", async ({ page }) => {
  const errors = watchConsole(page);
  const email = uniqueEmail("ada");

  await page.goto("/");
  await expectHydrated(page);
  await page.getByRole("link", { name: "Sign up" }).click();
  await expect(page.getByRole("heading", { name: "Create your account" })).toBeVisible();

  await signUp(page, "Ada Lovelace", email);
  await expect(page.getByText("Welcome to Tollgate! Your account is ready.")).toBeVisible();
  await expect(page.getByRole("heading", { name: "Welcome, Ada Lovelace" })).toBeVisible();
  await expect(page.getByTestId("org-name")).toHaveText("Ada Lovelace's organization");
  await expect(page.getByTestId("org-role")).toHaveText("owner");
  await expectHydrated(page);

  await navLink(page, "Billing").click();
  await expect(page.getByTestId("plan-name")).toHaveText("Free");

  await signOut(page);
  await expect(page.locator(".nav-user")).toHaveCount(0);
  await page.goto("/account");
  await expect(page).toHaveURL(/\/login\?return_to=%2Faccount$/);

  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/account$/);
  await expect(page.locator(".nav-user")).toHaveText("Ada Lovelace");

  expect(errors, errors.join("\n")).toEqual([]);
});

test("a failed sign-in says so next to the form and keeps the email", async ({ page }) => {
  const email = uniqueEmail("bob");
  await signUp(page, "Bob", email);
  await signOut(page);

  await signIn(page, email, "not the right password");
  await expect(page).toHaveURL(/\/login$/);
  await expect(page.getByRole("alert")).toHaveText("Wrong email or password.");
  await expect(page.getByLabel("Email")).toHaveValue(email);
  await expect(page.getByLabel("Password")).toHaveValue("");
  await expect(page.locator(".nav-user")).toHaveCount(0);
});

test("invalid sign-up input gets a message next to each field", async ({ page }) => {
  await page.goto("/signup");
  await page.getByLabel("Your name").fill("Cleo");
  await page.getByLabel("Email").fill("cleo-at-nowhere");
  await page.getByLabel("Password").fill("short");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/signup$/);
  await expect(page.locator("#email-error")).toHaveText("Enter an email address like name@example.com.");
  await expect(page.locator("#password-error")).toHaveText("Use at least 10 characters.");
  await expect(page.getByLabel("Your name")).toHaveValue("Cleo");
  await expect(page.getByLabel("Email")).toHaveValue("cleo-at-nowhere");
});

test("an account survives a page reload and stays signed in across pages", async ({ page }) => {
  const email = uniqueEmail("dora");
  await signUp(page, "Dora", email);
  await page.reload();
  await expect(page.locator(".nav-user")).toHaveText("Dora");
  await navLink(page, "Docs").click();
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await navLink(page, "Account").click();
  await expect(page.getByRole("heading", { name: "Welcome, Dora" })).toBeVisible();
});
