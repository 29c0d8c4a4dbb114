// The workbench: results for everyone (a script's run history and its last run's output
// and model, for viewers too, across reloads), status words that match the API, a
// running pass found again after navigation, and rejected proposals in the LLM log.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { apiCall, shots, signIn, startApp } from "./workbench-harness.mjs";

let app;
before(async () => {
  app = await startApp();
});
after(async () => {
  await app?.stop();
});

/** Polls a run until it has ended. */
async function waitRun(page, id, timeout = 240_000) {
  const end = Date.now() + timeout;
  for (;;) {
    const run = (await apiCall(page, "GET", `/api/runs/${id}`)).json;
    if (!["queued", "running"].includes(run.status)) return run;
    assert.ok(Date.now() < end, `run ${id} still ${run.status}`);
    await page.waitForTimeout(500);
  }
}

test("a viewer opens a script and sees its last run's output and model, also after a reload", { timeout: 300_000 }, async () => {
  const ed = await signIn(app, "ed1", "1editor");
  const script = (await apiCall(ed.page, "POST", "/api/examples/bracket", {})).json;
  const started = (await apiCall(ed.page, "POST", "/api/runs", { script_id: script.id })).json;
  const run = await waitRun(ed.page, started.run_id);
  assert.equal(run.status, "succeeded");
  await ed.context.close();

  const { context, page } = await signIn(app, "mo1", "2viewer");
  await page.goto(`${app.base}/scripts/${script.id}`);
  const history = page.getByRole("table", { name: "Run history" });
  await history.getByRole("row").nth(1).waitFor();
  const row = await history.getByRole("row").nth(1).textContent();
  assert.match(row, /ed1/);
  assert.match(row, /Success/);
  assert.match(row, /build123d/);
  await page.getByTestId("run-log").getByText("bracket: 60 x 30 mm").waitFor({ timeout: 30_000 });
  await page.getByRole("tree", { name: "Parts" }).locator("[role=treeitem][data-part]").first().waitFor({ timeout: 60_000 });
  assert.equal(await page.getByRole("button", { name: "Run & Stream" }).count(), 0, "a viewer gets no Run button");
  await page.screenshot({ path: path.join(shots, "workbench-viewer-last-run.png"), fullPage: true });
  // A reload keeps it.
  await page.reload();
  await page.getByTestId("run-log").getByText("bracket: 60 x 30 mm").waitFor({ timeout: 30_000 });
  await context.close();
});

test("a cancelled run reads 'cancelled', not a red Failure, in the history", { timeout: 120_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor");
  const script = (await apiCall(page, "POST", "/api/scripts", { content: "import time\ntime.sleep(30)\n" })).json;
  const started = (await apiCall(page, "POST", "/api/runs", { script_id: script.id })).json;
  for (let i = 0; i < 60; i++) {
    if ((await apiCall(page, "GET", `/api/runs/${started.run_id}`)).json.status === "running") break;
    await page.waitForTimeout(250);
  }
  await apiCall(page, "POST", `/api/runs/${started.run_id}/cancel`, {});
  assert.equal((await waitRun(page, started.run_id)).status, "cancelled");
  await page.goto(`${app.base}/scripts/${script.id}`);
  const cell = page.getByRole("table", { name: "Run history" }).getByRole("row").nth(1).locator(".run-status");
  await cell.waitFor();
  assert.equal((await cell.textContent()).trim(), "cancelled");
  assert.doesNotMatch(await cell.getAttribute("class"), /failure/);
  const colour = await cell.evaluate((el) => getComputedStyle(el).color);
  assert.notEqual(colour, "rgb(198, 40, 40)", "painted in the failure red");
  // The script list says the same.
  const listed = page.locator(".script-list li", { hasText: "script_" }).locator(".result");
  await listed.filter({ hasText: "cancelled" }).waitFor();
  assert.doesNotMatch(await listed.getAttribute("class"), /failure/);
  await context.close();
});

test("a running pass is found again after navigating away and after a reload", { timeout: 180_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor");
  const script = (await apiCall(page, "POST", "/api/scripts", { content: '"""Slow step"""\nimport time\ntime.sleep(12)\n', ordering: "7.0" })).json;
  const published = await apiCall(page, "POST", `/api/scripts/${script.id}/publish`, {});
  assert.equal(published.status, 200, published.text);
  await page.goto(`${app.base}/passes/latest`);
  await page.getByRole("button", { name: "Run all" }).click();
  await page.getByTestId("pass-status").filter({ hasText: "running" }).waitFor();
  // Away to the scripts and back through the app's own link.
  await page.goto(`${app.base}/scripts`);
  await page.goto(`${app.base}/passes/latest`);
  await page.getByTestId("pass-status").filter({ hasText: /pass \d+: running/ }).waitFor({ timeout: 10_000 });
  assert.equal(await page.getByRole("button", { name: "Cancel" }).count(), 1, "the running pass can be cancelled");
  await page.reload();
  await page.getByTestId("pass-status").filter({ hasText: /pass \d+: running/ }).waitFor({ timeout: 10_000 });
  await page.screenshot({ path: path.join(shots, "workbench-pass-found-again.png"), fullPage: true });
  await page.getByRole("button", { name: "Cancel" }).click();
  // Cancelled, it is listed among the past passes with its outcome.
  const past = page.getByRole("table", { name: "Past passes" });
  await past.getByRole("row").nth(1).filter({ hasText: "cancelled" }).waitFor({ timeout: 30_000 });
  assert.match(await past.getByRole("row").nth(1).textContent(), /ed1/);
  await page.screenshot({ path: path.join(shots, "workbench-past-passes.png"), fullPage: true });
  await context.close();
});

test("Reject is recorded in the LLM log", { timeout: 120_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor");
  const script = (await apiCall(page, "POST", "/api/scripts", { content: '"""Rows"""\nprint(1)\n' })).json;
  await page.goto(`${app.base}/scripts/${script.id}`);
  await page.getByRole("tab", { name: /prompt/i }).click();
  await page.getByLabel("Instruction").fill("add logging");
  await page.getByRole("button", { name: "Ask", exact: true }).click();
  await page.getByRole("button", { name: "Reject" }).click();
  await page.getByTestId("exchange-outcome").filter({ hasText: "rejected by ed1" }).waitFor({ timeout: 15_000 });
  await context.close();
});
