// Every screen, script, run and pass has its own URL: a shared link opens it, a reload
// keeps it, the back button goes where the user came from, and unsaved text is never
// lost by following a link.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { launch, shots, signIn } from "./harness.mjs";

let env;

before(async () => {
  env = await launch();
});

after(async () => {
  await env?.stop();
});

/** Makes a script through the API of a signed-in page; returns its id. */
async function createScript(page, content) {
  const r = await page.request.post(`${env.base}/api/scripts`, { data: { content } });
  assert.equal(r.status(), 201, await r.text());
  return (await r.json()).id;
}

/** The open script: the list's current entry and the editor's version badge. */
async function openScript(page) {
  await page.getByTestId("version").waitFor();
  return (await page.locator(".script-list a[aria-current=page]").textContent()) ?? "";
}

test("a script's URL opens it directly, survives a reload, and Back returns to the list", { timeout: 120_000 }, async () => {
  const first = await signIn(env, "ed1", "1editor");
  const id = await createScript(first.page, '"""Route target"""\nprint("routed")\n');
  await first.context.close();

  // A shared link, opened signed out: sign in there and land on the script.
  const { context, page } = await signIn(env, "ed1", "1editor", { url: `${env.base}/scripts/${id}` });
  assert.equal(new URL(page.url()).pathname, `/scripts/${id}`);
  assert.match(await openScript(page), /Route target/);

  // From the list: a click changes the URL; a reload keeps the script open.
  await page.getByRole("link", { name: "Scripts", exact: true }).click();
  await page.getByText("Select a script").waitFor();
  assert.equal(new URL(page.url()).pathname, "/scripts");
  await page.getByRole("link", { name: /Route target/ }).click();
  await page.waitForURL(`**/scripts/${id}`);
  await page.reload();
  assert.match(await openScript(page), /Route target/);
  assert.equal(new URL(page.url()).pathname, `/scripts/${id}`);
  await page.screenshot({ path: path.join(shots, "route-script.png") });

  // Back: the list again, nothing selected.
  await page.goBack();
  await page.getByText("Select a script").waitFor();
  assert.equal(new URL(page.url()).pathname, "/scripts");
  assert.equal(await page.locator(".script-list a[aria-current=page]").count(), 0);
  await context.close();
});

test("leaving a script with unsaved text asks first; staying keeps the text", { timeout: 120_000 }, async () => {
  const { context, page } = await signIn(env, "ed1", "1editor");
  const id = await createScript(page, '"""Unsaved guard"""\nprint(1)\n');
  await page.goto(`${env.base}/scripts/${id}`);
  await openScript(page);
  await page.locator("[data-testid=editor] .monaco-editor").click();
  await page.keyboard.press("Control+End");
  await page.keyboard.type("# not saved yet");
  await page.getByText("unsaved", { exact: true }).waitFor();

  const asked = [];
  page.once("dialog", (d) => {
    asked.push(d.message());
    void d.dismiss();
  });
  await page.getByRole("link", { name: "Pipeline" }).click();
  await page.waitForTimeout(300);
  assert.deepEqual(asked, ["You have unsaved changes. Leave them?"]);
  assert.equal(new URL(page.url()).pathname, `/scripts/${id}`);
  assert.match(await page.locator("[data-testid=editor] .view-lines").textContent(), /#\s+not\s+saved\s+yet/, "the unsaved text is gone");

  // Signing out asks too; staying keeps the text and the session.
  page.once("dialog", (d) => void d.dismiss());
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForTimeout(300);
  assert.equal(new URL(page.url()).pathname, `/scripts/${id}`);
  assert.match(await page.getByTestId("user").textContent(), /ed1/);
  assert.match(await page.locator("[data-testid=editor] .view-lines").textContent(), /#\s+not\s+saved\s+yet/);

  // Agreeing leaves.
  page.once("dialog", (d) => void d.accept());
  await page.getByRole("link", { name: "Pipeline" }).click();
  await page.waitForURL("**/passes/latest");
  await page.getByTestId("pass-status").waitFor();
  await context.close();
});

test("a run has its own URL: its log and result after a reload, for a viewer too", { timeout: 120_000 }, async () => {
  const ed = await signIn(env, "ed1", "1editor");
  const id = await createScript(ed.page, '"""Run page"""\nprint("hello from the run")\n');
  await ed.page.goto(`${env.base}/scripts/${id}`);
  await openScript(ed.page);
  await ed.page.getByRole("button", { name: "Run & Stream" }).click();
  await ed.page.getByTestId("run-status").filter({ hasText: "Success" }).waitFor({ timeout: 60_000 });
  const link = ed.page.getByRole("link", { name: /^run \d+$/ });
  const runUrl = await link.getAttribute("href");
  assert.match(runUrl, /^\/runs\/\d+$/);
  await link.click();
  await ed.page.waitForURL(`**${runUrl}`);
  await ed.page.reload();
  await ed.page.getByTestId("run-status").filter({ hasText: "Success" }).waitFor({ timeout: 30_000 });
  assert.match(await ed.page.getByTestId("run-log").textContent(), /hello from the run/);
  await ed.context.close();

  const mo = await signIn(env, "mo1", "2viewer", { url: `${env.base}${runUrl}` });
  await mo.page.getByTestId("run-status").filter({ hasText: "Success" }).waitFor({ timeout: 30_000 });
  assert.match(await mo.page.getByTestId("run-log").textContent(), /hello from the run/);
  await mo.page.screenshot({ path: path.join(shots, "route-run.png") });
  await mo.page.getByRole("link", { name: `script ${id}` }).click();
  await mo.page.waitForURL(`**/scripts/${id}`);
  await mo.page.screenshot({ path: path.join(shots, "route-run-viewer.png") });
  await mo.context.close();
});

test("unknown ids and paths say so instead of showing an empty screen", { timeout: 60_000 }, async () => {
  const { context, page } = await signIn(env, "mo1", "2viewer", { url: `${env.base}/runs/abc` });
  await page.getByText("Run “abc” does not exist.").waitFor();
  await page.goto(`${env.base}/runs/999999`);
  await page.getByRole("alert").filter({ hasText: /run 999999 does not exist/ }).first().waitFor();
  assert.equal((await page.request.get(`${env.base}/nowhere`)).status(), 404);
  await context.close();
});
