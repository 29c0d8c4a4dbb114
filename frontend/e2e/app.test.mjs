// End-to-end: the real server (built by cargo), the built frontend, Debian's chromium
// driven by playwright-core. Screenshots go to e2e/screenshots/.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const root = path.resolve(import.meta.dirname, "../..");
const shots = path.join(import.meta.dirname, "screenshots");
mkdirSync(shots, { recursive: true });

let server;
let base;
let browser;
const hosts = new Set();
let dataDir;

async function startServer() {
  dataDir = mkdtempSync(path.join(tmpdir(), "scriptorium-e2e-"));
  // The binary `cargo test` just built (a shared CARGO_TARGET_DIR is honoured).
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, "target");
  const bin = process.env.SCRIPTORIUM_BIN ?? path.join(targetDir, "debug/scriptorium");
  const env = { ...process.env, RUST_LOG: "info", SCRIPTORIUM_FRONTEND_DIR: path.join(root, "frontend/dist"), SCRIPTORIUM_INTERPRETERS: path.join(root, "interpreters.toml") };
  delete env.OPENROUTER_API_KEY;
  server = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--data", dataDir], { cwd: root, env, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 60_000);
    server.stderr.on("data", (d) => {
      log += d.toString();
      const m = /Scriptorium is listening addr=(\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(`http://${m[1]}`);
      }
    });
    server.on("exit", (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
  });
}

/** Content-Security-Policy violations seen on any page, from the console and the DOM event. */
const violations = [];

async function signIn(user, password) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
  // Runs before any page script (outside the page's CSP, through DevTools).
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
    });
  });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (/Content Security Policy|CSP violation/i.test(m.text())) violations.push(`${page.url()}: ${m.text()}`);
  });
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (u.protocol.startsWith("http") || u.protocol.startsWith("ws")) hosts.add(u.host);
  });
  page.on("websocket", (ws) => hosts.add(new URL(ws.url()).host));
  await page.goto(base);
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.screenshot({ path: path.join(shots, `login-${user}.png`) });
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("user").waitFor();
  return { context, page };
}

/** Replaces the editor's text by typing it (Monaco closes brackets and quotes itself). */
async function typeInEditor(page, text) {
  await page.locator("[data-testid=editor] .monaco-editor").click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.type(text, { delay: 5 });
}

/** Replaces the editor's text as a paste would: no keystroke can accept a suggestion. */
async function pasteInEditor(page, text) {
  await page.locator("[data-testid=editor] .monaco-editor").click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.insertText(text);
}

before(async () => {
  base = await startServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--use-angle=swiftshader",
      "--enable-unsafe-swiftshader",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
});

after(async () => {
  await browser?.close();
  server?.kill();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test("an editor writes, checks, saves, runs and views a script", { timeout: 240_000 }, async () => {
  const { context, page } = await signIn("ed1", "1editor");
  assert.match(await page.getByTestId("user").textContent(), /ed1 \(viewer, editor\)/);

  // A new script from the template.
  await page.getByRole("button", { name: "New script" }).click();
  await page.getByTestId("version").filter({ hasText: "v0.1" }).waitFor();
  await page.getByText(/^pyrefly \+ ruff ready/).waitFor({ timeout: 60_000 });

  // Completion from the language server.
  await typeInEditor(page, "import os\nos.pa");
  const suggestion = page.locator(".suggest-widget .monaco-list-row", { hasText: "path" }).first();
  await suggestion.waitFor({ timeout: 60_000 });
  await page.screenshot({ path: path.join(shots, "editor-completion.png") });
  await page.keyboard.press("Escape");

  // A diagnostic as a squiggle and in the problems list.
  await typeInEditor(page, "import os\nprint(undefined_name");
  await page.locator("[data-testid=editor] .squiggly-error").first().waitFor({ timeout: 60_000 });
  await page.getByRole("region", { name: "Problems" }).getByText(/undefined_name/).first().waitFor();
  await page.screenshot({ path: path.join(shots, "editor-diagnostic.png") });

  // Save (Ctrl+S): version 0.2.
  await pasteInEditor(page, 'import time\nprint("first line", flush=True)\ntime.sleep(1.5)\nprint("second line")\n');
  await page.keyboard.press("Control+S");
  // The save's answer, whatever it is (a refusal names its reason).
  const answer = page.getByRole("status").filter({ hasText: /Saved as version|Nothing changed|refused|error|cannot|failed/i }).first();
  await answer.waitFor({ timeout: 30_000 });
  assert.match(await answer.textContent(), /Saved as version 0\.2/);
  await page.getByTestId("version").filter({ hasText: "v0.2" }).waitFor();

  // Run & Stream: the first line arrives while the script still runs, then Success.
  await page.getByRole("button", { name: "Run & Stream" }).click();
  await page.getByTestId("run-log").getByText("first line").waitFor({ timeout: 30_000 });
  const whileRunning = await page.getByTestId("run-status").textContent();
  assert.doesNotMatch(whileRunning, /Success/, "the first line came only at the end");
  await page.getByTestId("run-status").filter({ hasText: "Success" }).waitFor({ timeout: 30_000 });
  assert.match(await page.getByTestId("run-log").textContent(), /second line/);
  await page.screenshot({ path: path.join(shots, "run.png") });

  // A script that writes an STL shows it in the 3D viewer.
  const stl = ["solid t", ...[[0, 0, 0, 10, 0, 0, 0, 10, 0], [0, 0, 0, 0, 10, 0, 0, 0, 10], [0, 0, 0, 0, 0, 10, 10, 0, 0], [10, 0, 0, 0, 0, 10, 0, 10, 0]].map(
    (f) => `facet normal 0 0 0\nouter loop\nvertex ${f.slice(0, 3).join(" ")}\nvertex ${f.slice(3, 6).join(" ")}\nvertex ${f.slice(6, 9).join(" ")}\nendloop\nendfacet`,
  ), "endsolid t"].join("\n");
  const created = await page.request.post(`${base}/api/scripts`, { data: { content: `"""Tetrahedron"""\nopen("model.stl", "w").write(${JSON.stringify(stl + "\n")})\n` } });
  assert.equal(created.status(), 201);
  const { id } = await created.json();
  await page.reload();
  await page.getByRole("link", { name: /Tetrahedron/ }).click();
  await page.getByRole("button", { name: "Run & Stream" }).click();
  await page.getByTestId("run-status").filter({ hasText: "Success" }).waitFor({ timeout: 30_000 });
  await page.locator("[data-testid=viewer-canvas] canvas").waitFor();
  await page.getByRole("tree", { name: "Parts" }).getByText("model.stl").waitFor();
  await page.waitForTimeout(500);
  await page.locator(".viewer3d").screenshot({ path: path.join(shots, "viewer.png") });
  assert.ok(id > 0);

  // Run all: the published examples in groups.
  await page.getByRole("link", { name: "Pipeline" }).click();
  await page.getByRole("button", { name: "Run all" }).click();
  await page.getByTestId("pass-status").filter({ hasText: "succeeded" }).waitFor({ timeout: 60_000 });
  const lanes = await page.getByTestId("pipeline-group").allTextContents();
  assert.equal(lanes.length, 2, lanes.join(" | "));
  assert.match(lanes[0], /Group 1[\s\S]*1\.0/);
  assert.match(lanes[1], /Group 2[\s\S]*2\.0[\s\S]*2\.1/);
  await page.screenshot({ path: path.join(shots, "pipeline.png") });
  await context.close();
});

test("a viewer sees the same screens without save or run controls", { timeout: 120_000 }, async () => {
  const { context, page } = await signIn("mo1", "2viewer");
  assert.match(await page.getByTestId("user").textContent(), /mo1 \(viewer\)/);
  assert.equal(await page.getByRole("button", { name: "New script" }).count(), 0);
  await page.getByRole("link", { name: /Count words/ }).click();
  await page.getByTestId("version").waitFor();
  for (const name of ["Save", "Bump Major", "Fork", "Publish", "Run & Stream"]) {
    assert.equal(await page.getByRole("button", { name, exact: true }).count(), 0, `${name} is shown to a viewer`);
  }
  await page.getByRole("link", { name: "Pipeline" }).click();
  await page.getByTestId("pass-status").waitFor();
  assert.equal(await page.getByRole("button", { name: "Run all" }).count(), 0);
  await page.screenshot({ path: path.join(shots, "viewer-role.png") });
  await context.close();
});

test("an API token made in the browser works from outside until it is revoked", { timeout: 60_000 }, async () => {
  const { context, page } = await signIn("ed1", "1editor");
  await page.getByRole("link", { name: "API tokens" }).click();
  await page.getByLabel("Name").fill("ci-e2e");
  await page.getByRole("button", { name: "Create token" }).click();
  const token = (await page.getByTestId("token-secret").textContent()).trim();
  assert.match(token, /^scr_/);
  await page.screenshot({ path: path.join(shots, "tokens.png") });
  // An agent outside the browser: no cookie, only the token.
  const me = () => fetch(`${base}/api/me`, { headers: { authorization: `Bearer ${token}` } });
  const ok = await me();
  assert.equal(ok.status, 200);
  assert.equal((await ok.json()).username, "ed1");
  page.once("dialog", (d) => d.accept());
  await page.getByRole("row", { name: /ci-e2e/ }).getByRole("button", { name: "Revoke" }).click();
  await page.getByRole("row", { name: /ci-e2e/ }).getByText(/^revoked/).waitFor();
  assert.equal((await me()).status, 401);
  await context.close();
});

test("the app runs under its CSP: Monaco's worker loads, nothing inline is blocked", { timeout: 120_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const workers = [];
  page.on("worker", (w) => workers.push(w.url()));
  const res = await page.goto(base);
  const csp = res.headers()["content-security-policy"];
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(res.headers()["x-frame-options"], "DENY");
  await context.close();
  const signed = await signIn("ed1", "1editor");
  signed.page.on("worker", (w) => workers.push(w.url()));
  await signed.page.getByRole("button", { name: "New script", exact: true }).click();
  await signed.page.getByText(/^pyrefly \+ ruff ready/).waitFor({ timeout: 60_000 });
  await typeInEditor(signed.page, "value = 1\nval");
  // Monaco's editor worker (word suggestions, diffs) is a bundled file of this origin.
  for (let i = 0; i < 100 && !workers.some((u) => /editor\.worker/.test(u)); i++) await signed.page.waitForTimeout(100);
  assert.ok(workers.some((u) => u.startsWith(base) && /editor\.worker/.test(u)), `workers: ${workers.join(", ")}`);
  assert.deepEqual(violations, [], "CSP violations");
  await signed.context.close();
});

test("an HTML or SVG artifact cannot run script in the app's origin", { timeout: 120_000 }, async () => {
  const { context, page } = await signIn("ed1", "1editor");
  // What the hostile pages would do on this origin: mark the app's storage, add a script.
  const payload = `<script>localStorage.setItem("pwned", location.href);fetch("/api/scripts",{method:"POST",headers:{"content-type":"application/json"},body:JSON.stringify({content:"# pwned\\n"})})</script><p>artifact page</p>`;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg"><script>localStorage.setItem("pwned", "svg")</script></svg>`;
  const note = "<script>localStorage.setItem('pwned', 'txt')</script>";
  const content = `"""Evil artifacts"""\nopen("evil.html", "w").write(${JSON.stringify(payload)})\nopen("evil.svg", "w").write(${JSON.stringify(svg)})\nopen("note.txt", "w").write(${JSON.stringify(note)})\n`;
  const created = await page.request.post(`${base}/api/scripts`, { data: { content } });
  assert.equal(created.status(), 201, await created.text());
  const before = (await (await page.request.get(`${base}/api/scripts`)).json()).length;
  await page.reload();
  await page.getByRole("link", { name: /Evil artifacts/ }).click();
  await page.getByRole("button", { name: "Run & Stream" }).click();
  await page.getByTestId("run-status").filter({ hasText: "Success" }).waitFor({ timeout: 30_000 });

  // Clicking the artifact in the run panel downloads it.
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: /evil\.html/ }).click()]);
  assert.equal(download.suggestedFilename(), "evil.html");
  // Opened directly (a link pasted into the address bar), it is still only a download.
  const href = await page.getByRole("link", { name: /evil\.html/ }).getAttribute("href");
  const opened = [];
  for (const url of [href, href.replace("evil.html", "evil.svg")]) {
    const tab = await context.newPage();
    const downloaded = tab.waitForEvent("download", { timeout: 10_000 }).then(() => "download", () => "shown as a page");
    await tab.goto(`${base}${url}`).catch(() => {});
    opened.push(await downloaded);
    await tab.close();
  }
  await page.waitForTimeout(1000);
  assert.equal(await page.evaluate(() => localStorage.getItem("pwned")), null, "an artifact's script ran in the app's origin");
  const after = (await (await page.request.get(`${base}/api/scripts`)).json()).length;
  assert.equal(after, before, "an artifact's script created a script");
  assert.deepEqual(opened, ["download", "download"]);
  // A text artifact shows as text, its markup inert.
  const tab = await context.newPage();
  const r = await tab.goto(`${base}${href.replace("evil.html", "note.txt")}`);
  assert.match(r.headers()["content-security-policy"], /sandbox/);
  assert.equal((await tab.locator("body").textContent()).trim(), note);
  await tab.close();
  await context.close();
});

test("the page talks to no host but the server", () => {
  const server = new URL(base).host;
  assert.deepEqual([...hosts], [server], `requests went to ${[...hosts].join(", ")}`);
});

test("a build123d assembly shows as two layers", { timeout: 180_000 }, async () => {
  const { context, page } = await signIn("ed1", "1editor");
  // The shipped example, added from the script list with its test data.
  await page.getByText("Add an example…").click();
  await page.getByRole("list", { name: "Examples" }).getByRole("button", { name: /Two-part assembly/ }).click();
  await page.getByTestId("version").waitFor();
  assert.match(await page.locator(".script-list li a.selected").textContent(), /Two-part assembly/);
  await page.getByRole("button", { name: "Run & Stream" }).click();
  await page.getByTestId("run-status").filter({ hasText: "Success" }).waitFor({ timeout: 150_000 });
  const layers = page.getByRole("tree", { name: "Parts" }).locator("[role=treeitem][data-part]");
  await layers.nth(1).waitFor();
  const names = await layers.allTextContents();
  assert.equal(names.length, 2, names.join(" | "));
  assert.match(names[0], /plate/);
  assert.match(names[1], /pin/);
  await page.getByLabel("Exploded view").fill("60");
  await page.waitForTimeout(500);
  await page.locator(".viewer3d").screenshot({ path: path.join(shots, "assembly.png") });
  await context.close();
});
