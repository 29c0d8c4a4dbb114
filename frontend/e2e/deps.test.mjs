// A script's dependencies in the browser: the Dependencies tab shows what the script
// declares, the locked pins with the lock's hash, and a failed resolution with uv's
// reason (the save is refused and the editor keeps the text), and re-locking. Uses the
// package index.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { launch, shots, signIn } from "./harness.mjs";

let app;
before(async () => {
  app = await launch();
});
after(async () => {
  await app?.stop();
});

const TABLE = `"""Table"""
# /// script
# requires-python = ">=3.9"
# dependencies = ["tabulate==0.9.0"]
# ///
from tabulate import tabulate
print(tabulate([["a", 1]]))
`;

/** An API call from the page (same origin, the session's cookie). */
function call(page, method, url, body) {
  return page.evaluate(
    async ([method, url, body]) => {
      const r = await fetch(url, { method, headers: { "Content-Type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
      return { status: r.status, body: await r.json() };
    },
    [method, url, body],
  );
}

test("the Dependencies tab shows the declared package, its locked pin and a failed resolution", { timeout: 180_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor");
  const created = await call(page, "POST", "/api/scripts", { content: TABLE });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = created.body.id;
  await page.goto(`${app.base}/scripts/${id}`);
  await page.getByTestId("version").waitFor();
  await page.getByRole("tab", { name: "Dependencies" }).click();
  await page.getByTestId("deps-state").filter({ hasText: "locked" }).waitFor();
  const declared = await page.getByRole("list", { name: "Declared packages" }).textContent();
  assert.match(declared, /tabulate==0\.9\.0/);
  const locked = await page.getByRole("list", { name: "Locked packages" }).textContent();
  assert.match(locked, /tabulate==0\.9\.0/);
  const lock = await call(page, "GET", `/api/scripts/${id}`);
  assert.ok(await page.getByText(`lock sha256 ${lock.body.dependencies.lock_hash.slice(0, 12)}…`).isVisible());
  await page.screenshot({ path: path.join(shots, "deps-locked.png") });

  // A package no index has: the save is refused with uv's reason, the tab says so.
  const bad = TABLE.replace("tabulate==0.9.0", "no-such-package-scriptorium-e2e");
  const saved = await call(page, "PUT", `/api/scripts/${id}`, { content: bad, base_version: "0.1" });
  assert.equal(saved.status, 422, JSON.stringify(saved.body));
  await page.getByRole("tab", { name: "Test data" }).click();
  await page.getByRole("tab", { name: "Dependencies" }).click();
  await page.getByTestId("deps-state").filter({ hasText: "resolution failed" }).waitFor();
  const reason = await page.getByRole("alert").first().textContent();
  assert.match(reason, /no-such-package-scriptorium-e2e/);
  await page.screenshot({ path: path.join(shots, "deps-failed.png") });

  // Re-lock resolves the saved block again: the same pins, so no new version.
  await page.getByRole("button", { name: "Re-lock" }).click();
  await page.getByTestId("deps-note").filter({ hasText: "the lock is up to date" }).waitFor({ timeout: 60_000 });
  await page.getByTestId("deps-state").filter({ hasText: "locked" }).waitFor();
  await context.close();
});
