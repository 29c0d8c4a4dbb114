// The workbench: results for everyone (a script's run history and its last run's output
// and model, for viewers too, across reloads), status words that match the API, a
// running pass found again after navigation, and rejected proposals in the LLM log.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { apiCall, shots, launch, signIn } from "./harness.mjs";

let app;
before(async () => {
  app = await launch();
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

/** Creates a script through the API (optionally at an ordering, published). */
async function makeScript(page, content, { ordering, publish = false } = {}) {
  const r = await apiCall(page, "POST", "/api/scripts", ordering ? { content, ordering } : { content });
  assert.equal(r.status, 201, r.text);
  if (publish) {
    const p = await apiCall(page, "POST", `/api/scripts/${r.json.id}/publish`, {});
    assert.equal(p.status, 200, p.text);
  }
  return r.json;
}

async function scriptOf(page, id) {
  return (await apiCall(page, "GET", `/api/scripts/${id}`)).json;
}

/** Replaces the editor's text (inserted as a paste would: no auto-closing or indenting). */
async function typeInEditor(page, text) {
  await page.locator("[data-testid=editor] .monaco-editor").click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.insertText(text);
}

test("Run all shows what it will run, then the pass as a live timeline with one bar per run", { timeout: 180_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor");
  // Earlier tests' published scripts go to the archive, so this pass is ours alone.
  for (const s of (await apiCall(page, "GET", "/api/scripts")).json) await apiCall(page, "POST", `/api/scripts/${s.id}/archive`, {});
  await makeScript(page, '"""Load rows"""\nprint("loaded")\n', { ordering: "21.0", publish: true });
  await makeScript(page, '"""Slow sum"""\nimport time\ntime.sleep(3)\nprint("summed")\n', { ordering: "22.0", publish: true });
  await makeScript(page, '"""Quick count"""\nprint("counted")\n', { ordering: "22.5", publish: true });
  await makeScript(page, '"""Draft report"""\nprint("draft")\n', { ordering: "22.7" });
  await page.goto(`${app.base}/passes/latest`);
  const preview = page.getByRole("region", { name: "Run all preview" });
  await preview.getByText("Run all will run 3 scripts in 2 group(s)").waitFor();
  const groups = preview.getByTestId("preview-group");
  assert.match(await groups.filter({ hasText: "Group 21" }).textContent(), /Load rows.*published 0\.1/);
  const g22 = await groups.filter({ hasText: "Group 22" }).textContent();
  assert.match(g22, /Slow sum/);
  assert.match(g22, /Draft report\s*not published: left out/);
  await page.screenshot({ path: path.join(shots, "workbench-run-all-preview.png"), fullPage: true });

  await page.getByRole("button", { name: "Run all" }).click();
  const timeline = page.getByRole("region", { name: "Pass timeline" });
  await timeline.getByRole("group", { name: "Group 22" }).getByTestId("timeline-bar").first().waitFor();
  // Live: a bar of group 22 shows as running while the slow script sleeps.
  await timeline.locator(".bar.running").first().waitFor({ timeout: 30_000 });
  await page.screenshot({ path: path.join(shots, "workbench-pass-timeline-live.png"), fullPage: true });
  await page.getByTestId("pass-status").filter({ hasText: /succeeded/ }).waitFor({ timeout: 60_000 });
  const bars = timeline.getByTestId("timeline-bar");
  await timeline.locator(".bar.succeeded").nth(2).waitFor();
  assert.equal(await bars.count(), 3, "one bar per run; the draft is not run");
  const slow = timeline.getByTestId("timeline-bar").filter({ hasText: "Slow sum" });
  assert.match(await slow.textContent(), /Success · [3-9]\.\d s/);
  // The slow bar is wider than the quick one beside it, and starts after group 21's.
  const widths = await Promise.all([slow, bars.filter({ hasText: "Quick count" })].map((b) => b.evaluate((el) => el.getBoundingClientRect().width)));
  assert.ok(widths[0] > widths[1], `bar widths ${widths}`);
  await page.screenshot({ path: path.join(shots, "workbench-pass-timeline-done.png"), fullPage: true });
  // A bar opens that run's log.
  await slow.click();
  await page.getByTestId("run-log").getByText("summed").waitFor({ timeout: 15_000 });
  await context.close();
});

test("the queue: drag a script onto another, Alt+arrows, archive and restore; a viewer can do none", { timeout: 120_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor");
  const a = await makeScript(page, '"""Queue A"""\nprint("a")\n', { ordering: "31.0" });
  const b = await makeScript(page, '"""Queue B"""\nprint("b")\n', { ordering: "32.0" });
  const c = await makeScript(page, '"""Queue C"""\nprint("c")\n', { ordering: "33.0" });
  await page.goto(`${app.base}/scripts/${c.id}`);
  const queue = page.getByRole("list", { name: "Queue" });
  await queue.locator(`li[data-script="${c.id}"]`).dragTo(queue.locator(`li[data-script="${a.id}"]`));
  await queue.locator(`li[data-script="${c.id}"] .ordering`).filter({ hasText: "31.5" }).waitFor();
  assert.equal((await scriptOf(page, c.id)).ordering, "31.5", "dropped on A: into A's group, after it");
  // The keyboard does the same: Alt+Down passes B (into B's group).
  await queue.locator(`li[data-script="${c.id}"] a`).focus();
  await page.keyboard.press("Alt+ArrowDown");
  await queue.locator(`li[data-script="${c.id}"] .ordering`).filter({ hasText: "32.5" }).waitFor();
  const order = await queue.locator("li .name").allTextContents();
  assert.ok(order.indexOf("Queue A") < order.indexOf("Queue B") && order.indexOf("Queue B") < order.indexOf("Queue C"), order.join(" | "));
  await page.screenshot({ path: path.join(shots, "workbench-queue-moved.png") });

  await queue.locator(`li[data-script="${c.id}"]`).getByRole("button", { name: "Archive" }).click();
  await page.getByText(/^Archived \(\d+\)$/).click();
  const archived = page.getByRole("list", { name: "Archived scripts" });
  await archived.getByText("Queue C").waitFor();
  assert.equal(await queue.getByText("Queue C").count(), 0);
  assert.equal((await scriptOf(page, c.id)).archived, true);
  await page.screenshot({ path: path.join(shots, "workbench-queue-archived.png") });
  await archived.locator("li", { hasText: "Queue C" }).getByRole("button", { name: "Restore" }).click();
  await queue.getByText("Queue C").waitFor();
  assert.equal((await scriptOf(page, c.id)).archived, false);
  await context.close();

  const mo = await signIn(app, "mo1", "2viewer", { url: `${app.base}/scripts/${b.id}` });
  await mo.page.getByRole("list", { name: "Queue" }).getByText("Queue B").waitFor();
  assert.equal(await mo.page.getByRole("button", { name: /Move .* (up|down)/ }).count(), 0);
  assert.equal(await mo.page.getByRole("button", { name: "Archive" }).count(), 0);
  assert.equal(await mo.page.locator(`li[data-script="${b.id}"]`).getAttribute("draggable"), "false");
  // The API refuses a viewer's move too.
  const refused = await apiCall(mo.page, "PUT", `/api/scripts/${b.id}/ordering`, { ordering: "99.0" });
  assert.equal(refused.status, 403);
  await mo.context.close();
});

test("Publish shows the diff against prod first; Cancel publishes nothing", { timeout: 120_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor");
  const s = await makeScript(page, '"""Publish me"""\nprint("prod line")\n', { ordering: "41.0", publish: true });
  const saved = await apiCall(page, "PUT", `/api/scripts/${s.id}`, { content: '"""Publish me"""\nprint("prod line")\nprint("new line")\n', base_version: "0.1" });
  assert.equal(saved.status, 200, saved.text);
  await page.goto(`${app.base}/scripts/${s.id}`);
  const badge = page.getByRole("list", { name: "Queue" }).locator(`li[data-script="${s.id}"] .badge`);
  assert.match(await badge.textContent(), /published 0\.1 · edited/);
  await page.getByRole("button", { name: "Publish…" }).click();
  const dialog = page.getByRole("dialog", { name: "Publish to prod" });
  await dialog.getByText("Publish version 0.2 to prod").waitFor();
  await dialog.getByText("prod has 0.1").waitFor();
  await dialog.getByTestId("diff").locator(".line-insert, .char-insert").first().waitFor({ timeout: 15_000 });
  // Monaco draws spaces as no-break spaces.
  assert.match(await dialog.getByTestId("diff").textContent(), /new\sline/);
  await page.screenshot({ path: path.join(shots, "workbench-publish-diff.png") });
  await dialog.getByRole("button", { name: "Cancel" }).click();
  assert.equal((await scriptOf(page, s.id)).published_version, "0.1", "cancel publishes nothing");
  await page.getByRole("button", { name: "Publish…" }).click();
  await dialog.getByRole("button", { name: "Publish 0.2" }).click();
  await page.getByText("Published to prod").waitFor();
  assert.equal((await scriptOf(page, s.id)).published_version, "0.2");
  await context.close();
});

test("Save needs a change; Run saves first and waits; Ctrl+S and Ctrl+Enter work outside the editor", { timeout: 180_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor");
  const s = await makeScript(page, '"""Keys"""\nprint("first")\n', { ordering: "51.0" });
  await page.goto(`${app.base}/scripts/${s.id}`);
  const save = page.getByRole("button", { name: "Save", exact: true });
  await page.locator("[data-testid=editor] .monaco-editor").waitFor();
  await page.getByText('print("first")').waitFor();
  assert.ok(await save.isDisabled(), "Save without changes is disabled");

  // Run with unsaved edits: the edits are saved, and the run is of them.
  await typeInEditor(page, '"""Keys"""\nimport time\ntime.sleep(2)\nprint("second")\n');
  assert.ok(await save.isEnabled());
  const run = page.getByRole("button", { name: "Run & Stream" });
  await run.click();
  await page.getByText(/Saved as version 0\.2/).waitFor({ timeout: 15_000 });
  await page.waitForFunction(() => document.querySelector("button[title^='Ctrl+Enter']")?.disabled === true);
  await page.getByTestId("run-log").getByText("second").waitFor({ timeout: 30_000 });
  await page.getByTestId("run-status").filter({ hasText: "Success" }).waitFor({ timeout: 30_000 });
  await page.waitForFunction(() => document.querySelector("button[title^='Ctrl+Enter']")?.disabled === false);
  let runs = (await apiCall(page, "GET", `/api/runs?script_id=${s.id}`)).json;
  assert.equal(runs.length, 1, "one run, however the button was pressed");
  assert.equal(runs[0].version, "0.2", "the run is of the saved edits");
  assert.equal((await scriptOf(page, s.id)).version, "0.2");

  // Ctrl+S in the test data (outside Monaco) saves the script, not the browser's page.
  await typeInEditor(page, '"""Keys"""\nprint("third")\n');
  await page.getByRole("tab", { name: "Test data" }).click();
  await page.getByRole("textbox", { name: "Test data" }).focus();
  let downloaded = false;
  page.on("download", () => (downloaded = true));
  await page.keyboard.press("Control+S");
  await page.getByText(/Saved as version 0\.3/).waitFor({ timeout: 15_000 });
  assert.equal(downloaded, false);
  // Ctrl+Enter there starts a run and shows it.
  await page.keyboard.press("Control+Enter");
  await page.getByTestId("run-log").getByText("third").waitFor({ timeout: 30_000 });
  runs = (await apiCall(page, "GET", `/api/runs?script_id=${s.id}`)).json;
  assert.equal(runs.length, 2);
  assert.equal(runs[0].version, "0.3");
  await context.close();
});

test("at 800 px wide nothing scrolls sideways or is cut off; the sidebar folds and stays folded", { timeout: 120_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor", { viewport: { width: 800, height: 720 } });
  const s = await makeScript(page, '"""Narrow"""\nprint("narrow")\n', { ordering: "61.0" });
  await page.goto(`${app.base}/scripts/${s.id}`);
  await page.locator("[data-testid=editor] .monaco-editor").waitFor();
  await page.getByRole("tab", { name: "Run" }).waitFor();
  const overflow = async () =>
    page.evaluate(() => {
      const doc = document.scrollingElement;
      const cut = [...document.querySelectorAll("button, [role=tab], select, .toolbar strong")]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
        .map((el) => el.textContent);
      return { sideways: doc.scrollWidth - doc.clientWidth, cut };
    });
  let o = await overflow();
  assert.equal(o.sideways, 0, "no horizontal scroll");
  assert.deepEqual(o.cut, [], "controls past the right edge");
  await page.screenshot({ path: path.join(shots, "workbench-800px.png") });
  await page.getByRole("button", { name: /Script list/ }).click();
  assert.equal(await page.getByRole("navigation", { name: "Scripts" }).count(), 0);
  const wide = await page.locator("[data-testid=editor]").evaluate((el) => el.getBoundingClientRect().width);
  assert.ok(wide > 700, `the editor takes the room: ${wide}`);
  o = await overflow();
  assert.equal(o.sideways, 0);
  await page.reload();
  await page.locator("[data-testid=editor] .monaco-editor").waitFor();
  assert.equal(await page.getByRole("navigation", { name: "Scripts" }).count(), 0, "the folded sidebar is remembered");
  await page.screenshot({ path: path.join(shots, "workbench-800px-folded.png") });
  await page.getByRole("button", { name: /Script list/ }).click();
  await page.getByRole("navigation", { name: "Scripts" }).waitFor();
  await context.close();
});

test("the editor | output split can be resized and is remembered", { timeout: 120_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor", { viewport: { width: 1400, height: 900 } });
  const s = await makeScript(page, '"""Split"""\nprint("split")\n', { ordering: "62.0" });
  await page.goto(`${app.base}/scripts/${s.id}`);
  const handle = page.getByRole("separator", { name: "Resize editor and output" });
  await handle.waitFor();
  const width = () => page.locator("[data-testid=editor]").evaluate((el) => el.getBoundingClientRect().width);
  const before = await width();
  const box = await handle.boundingBox();
  await page.mouse.move(box.x + 3, box.y + 20);
  await page.mouse.down();
  await page.mouse.move(box.x - 200, box.y + 20, { steps: 5 });
  await page.mouse.up();
  await page.waitForTimeout(300);
  const after = await width();
  assert.ok(after < before - 100, `dragged narrower: ${before} -> ${after}`);
  await handle.focus();
  await page.keyboard.press("ArrowRight");
  const keyed = await width();
  assert.ok(keyed > after, `the arrow keys widen it: ${after} -> ${keyed}`);
  await page.reload();
  await handle.waitFor();
  await page.waitForTimeout(300);
  assert.ok(Math.abs((await width()) - keyed) < 5, "remembered across a reload");
  await page.screenshot({ path: path.join(shots, "workbench-split.png") });
  await context.close();
});
