// Two editors in two browsers on one script (issue 16): ed2 sees that ed1 has it open
// and that ed1 saved, merges instead of redoing, and both edits are in the saved version.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { launch, shots, signIn } from "./harness.mjs";

let env;

before(async () => {
  env = await launch({ editors: [["ed2", "pw-ed2"]] });
});

after(async () => {
  await env?.stop();
});

const TEXT = '"""Team script"""\n\na = 1\nb = 2\nc = 3\nd = 4\ne = 5\n';

/** Puts the cursor at the end of line `line` (1-based) of the editor. */
async function endOfLine(page, line) {
  await page.locator("[data-testid=editor] .monaco-editor").click();
  await page.keyboard.press("Control+Home");
  for (let i = 1; i < line; i++) await page.keyboard.press("ArrowDown");
  await page.keyboard.press("End");
}

test("ed2 sees ed1 in the script and ed1's save, merges, and both edits are kept", { timeout: 240_000 }, async () => {
  const one = await signIn(env, "ed1", "1editor");
  const r = await one.page.request.post(`${env.base}/api/scripts`, { data: { content: TEXT } });
  assert.equal(r.status(), 201, await r.text());
  const id = (await r.json()).id;

  await one.page.goto(`${env.base}/scripts/${id}`);
  await one.page.getByTestId("version").waitFor();
  const two = await signIn(env, "ed2", "pw-ed2", { url: `${env.base}/scripts/${id}` });
  await two.page.getByTestId("version").waitFor();

  // Presence: each sees the other's initials.
  await two.page.getByTestId("presence").filter({ hasText: "ED1" }).waitFor({ timeout: 10_000 });
  await one.page.getByTestId("presence").filter({ hasText: "ED2" }).waitFor({ timeout: 10_000 });

  // ed2 starts an edit of the last line, not saved yet.
  await endOfLine(two.page, 7);
  await two.page.keyboard.type("0");

  // ed1 changes the first assignment and saves 0.2.
  await endOfLine(one.page, 3);
  await one.page.keyboard.type("0");
  await one.page.keyboard.press("Control+S");
  await one.page.getByRole("status").filter({ hasText: "Saved as version 0.2" }).waitFor({ timeout: 30_000 });

  // ed2 is told, without losing the edit in progress.
  const notice = two.page.getByTestId("saved-notice");
  await notice.filter({ hasText: "ed1 saved 0.2" }).waitFor({ timeout: 10_000 });
  await two.page.screenshot({ path: path.join(shots, "team-saved-notice.png") });
  await notice.getByRole("button", { name: "Merge now" }).click();
  await two.page.getByRole("status").filter({ hasText: "merged with 0.2" }).waitFor({ timeout: 30_000 });
  await two.page.screenshot({ path: path.join(shots, "team-merged.png") });

  const saved = await (await two.page.request.get(`${env.base}/api/scripts/${id}`)).json();
  assert.equal(saved.version, "0.3");
  assert.match(saved.content, /^a = 10$/m, "ed1's edit is in");
  assert.match(saved.content, /^e = 50$/m, "ed2's edit is in");

  // The list follows the team's notices: ed1's new script shows up for ed2 by itself.
  const fresh = await one.page.request.post(`${env.base}/api/scripts`, { data: { content: '"""Fresh from ed1"""\nx = 1\n' } });
  assert.equal(fresh.status(), 201);
  await two.page.getByRole("link", { name: /Fresh from ed1/ }).waitFor({ timeout: 5_000 });
  await one.context.close();
  await two.context.close();
});

test("an overlapping save shows the three-way conflict and the resolution saves", { timeout: 240_000 }, async () => {
  const one = await signIn(env, "ed1", "1editor");
  const r = await one.page.request.post(`${env.base}/api/scripts`, { data: { content: TEXT.replace("Team script", "Second") } });
  const id = (await r.json()).id;
  const two = await signIn(env, "ed2", "pw-ed2", { url: `${env.base}/scripts/${id}` });
  await two.page.getByTestId("version").waitFor();
  // ed1 saves a change of line 5 through the API meanwhile.
  const s = await one.page.request.put(`${env.base}/api/scripts/${id}`, {
    data: { content: TEXT.replace("Team script", "Second").replace("c = 3", "c = 30"), base_version: "0.1" },
  });
  assert.equal(s.status(), 200, await s.text());
  // ed2 changes the same line and saves.
  await endOfLine(two.page, 5);
  await two.page.keyboard.type("00");
  await two.page.keyboard.press("Control+S");
  const conflict = two.page.getByTestId("conflict");
  await conflict.waitFor({ timeout: 30_000 });
  assert.match(await conflict.textContent(), /line 5: base c = 3, theirs c = 30, yours c = 300/);
  await two.page.screenshot({ path: path.join(shots, "team-conflict.png") });
  await conflict.getByRole("button", { name: /Save resolution on 0.2/ }).click();
  await two.page.getByRole("status").filter({ hasText: "Saved your resolution as version 0.3" }).waitFor({ timeout: 30_000 });
  const saved = await (await two.page.request.get(`${env.base}/api/scripts/${id}`)).json();
  assert.match(saved.content, /^c = 300$/m);
  await one.context.close();
  await two.context.close();
});

test("presence is per tab: ed2's editing tab shows as editing, and closing it leaves the other tab's presence", { timeout: 240_000 }, async () => {
  const one = await signIn(env, "ed1", "1editor");
  const r = await one.page.request.post(`${env.base}/api/scripts`, { data: { content: TEXT.replace("Team script", "Tabs") } });
  const id = (await r.json()).id;
  const url = `${env.base}/scripts/${id}`;
  await one.page.goto(url);
  await one.page.getByTestId("version").waitFor();
  const two = await signIn(env, "ed2", "pw-ed2", { url });
  await two.page.getByTestId("version").waitFor();
  const other = await two.context.newPage();
  await other.goto(url);
  await other.getByTestId("version").waitFor();

  const ed2 = one.page.getByTestId("presence").filter({ hasText: "ED2" });
  await ed2.waitFor({ timeout: 10_000 });
  assert.equal(await ed2.count(), 1, "one user, however many tabs");
  assert.equal(await ed2.getAttribute("data-state"), "viewing");

  // ed2 types in the first tab: ed1 sees that ed2 is editing.
  await endOfLine(two.page, 4);
  await two.page.keyboard.type("1");
  await one.page.locator("[data-testid=presence][data-state=editing]").filter({ hasText: "ED2" }).waitFor({ timeout: 10_000 });
  await one.page.screenshot({ path: path.join(shots, "team-presence-editing.png") });

  // The editing tab closes; ed2's other tab still has the script open.
  await two.page.close();
  await one.page.locator("[data-testid=presence][data-state=viewing]").filter({ hasText: "ED2" }).waitFor({ timeout: 10_000 });
  // That tab opens another script (in the page, its stream stays): ed2 leaves this one.
  await other.getByRole("link", { name: /Count words/ }).click();
  await other.waitForURL((u) => !u.pathname.endsWith(`/scripts/${id}`));
  await ed2.waitFor({ state: "detached", timeout: 10_000 });
  await other.close();
  await one.context.close();
  await two.context.close();
});

test("test data edited by two editors: a merge keeps both, an overlap shows both versions to resolve", { timeout: 240_000 }, async () => {
  const DATA = "a\nb\nc\nd\ne\n";
  const one = await signIn(env, "ed1", "1editor");
  const r = await one.page.request.post(`${env.base}/api/scripts`, { data: { content: TEXT.replace("Team script", "Data") } });
  const id = (await r.json()).id;
  const put = await one.page.request.put(`${env.base}/api/scripts/${id}/test-data`, { headers: { "content-type": "application/octet-stream" }, data: DATA });
  assert.equal(put.status(), 200, await put.text());
  const url = `${env.base}/scripts/${id}`;
  await one.page.goto(url);
  const two = await signIn(env, "ed2", "pw-ed2", { url });
  const area = (page) => page.locator("textarea[aria-label='Test data']");
  for (const page of [one.page, two.page]) {
    await page.getByRole("tab", { name: "Test data" }).click();
    await area(page).waitFor();
    await page.waitForFunction(() => document.querySelector("textarea[aria-label='Test data']")?.value.startsWith("a\n"));
  }
  const data = async () => (await (await one.page.request.get(`${env.base}/api/scripts/${id}/test-data`)).text());

  // ed2 edits the last line; ed1 edits the first and saves first.
  await area(two.page).fill(DATA.replace("e\n", "E\n"));
  await area(one.page).fill(DATA.replace("a\n", "A\n"));
  await one.page.getByRole("button", { name: "Save test data" }).click();
  await one.page.getByText("saved (a commit on your branch)").waitFor({ timeout: 10_000 });
  await two.page.getByText("ed1 saved the test data meanwhile").waitFor({ timeout: 10_000 });
  await two.page.getByRole("button", { name: "Save test data" }).click();
  await two.page.getByText(/merged with the test data someone saved/).waitFor({ timeout: 10_000 });
  assert.equal(await data(), "A\nb\nc\nd\nE\n", "both edits are in");
  // ed1, with nothing unsaved, is shown the merged data.
  await one.page.waitForFunction(() => document.querySelector("textarea[aria-label='Test data']")?.value.endsWith("E\n"));

  // Both change the middle line: ed2 saves first, ed1 sees both versions and resolves.
  await area(one.page).fill("A\nb\nC1\nd\nE\n");
  await area(two.page).fill("A\nb\nC2\nd\nE\n");
  await two.page.getByRole("button", { name: "Save test data" }).click();
  await two.page.getByText("saved (a commit on your branch)").waitFor({ timeout: 10_000 });
  await one.page.getByText("ed2 saved the test data meanwhile").waitFor({ timeout: 10_000 });
  await one.page.getByRole("button", { name: "Save test data" }).click();
  const conflict = one.page.getByTestId("test-data-conflict");
  await conflict.waitFor({ timeout: 10_000 });
  assert.match(await conflict.textContent(), /base c, theirs C2, yours C1/);
  await one.page.screenshot({ path: path.join(shots, "team-test-data-conflict.png") });
  assert.equal(await data(), "A\nb\nC2\nd\nE\n", "nothing saved on the conflict");
  await conflict.getByRole("button", { name: "Save resolution" }).click();
  await one.page.getByText("saved (a commit on your branch)").waitFor({ timeout: 10_000 });
  assert.equal(await data(), "A\nb\nC1\nd\nE\n");
  await one.context.close();
  await two.context.close();
});
