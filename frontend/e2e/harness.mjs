// What every browser test needs: the real server (built by cargo) on a fresh data
// directory, the built frontend, and Debian's chromium driven by playwright-core (WebGL
// through SwiftShader, so the 3D viewer draws); same-origin API calls and canvas pixel
// reads. Screenshots go to e2e/screenshots/.

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

export const root = path.resolve(import.meta.dirname, "../..");
export const shots = path.join(import.meta.dirname, "screenshots");
mkdirSync(shots, { recursive: true });

/**
 * Starts the server and the browser; `stop()` ends both and removes the data.
 * `editors`: more editors as `[name, password]` (written to the data directory's
 * scriptorium.toml beside the default ed1 and mo1).
 */
export async function launch({ editors = [] } = {}) {
  // Outside /tmp so build123d runs can start warm (as in tests/build123d.rs).
  const dataDir = mkdtempSync(path.join("/var/tmp", "scriptorium-e2e-"));
  // The binary `cargo test` just built (a shared CARGO_TARGET_DIR is honoured).
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, "target");
  const bin = process.env.SCRIPTORIUM_BIN ?? path.join(targetDir, "debug/scriptorium");
  if (editors.length > 0) writeUsers(bin, dataDir, [["ed1", "1editor", ["viewer", "editor"]], ["mo1", "2viewer", ["viewer"]], ...editors.map(([u, p]) => [u, p, ["viewer", "editor"]])]);
  const env = { ...process.env, RUST_LOG: "info", SCRIPTORIUM_FRONTEND_DIR: path.join(root, "frontend/dist"), SCRIPTORIUM_INTERPRETERS: path.join(root, "interpreters.toml") };
  delete env.OPENROUTER_API_KEY;
  const server = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--data", dataDir], { cwd: root, env, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const base = await new Promise((resolve, reject) => {
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
  const browser = await chromium.launch({
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
  return {
    base,
    browser,
    serverLog: () => log,
    async stop() {
      await browser.close();
      server.kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Writes `[[users]]` (name, password, roles) with argon2 hashes from `scriptorium hash-password`. */
function writeUsers(bin, dataDir, users) {
  let toml = "";
  for (const [name, password, roles] of users) {
    const hash = spawnSync(bin, ["hash-password"], { input: `${password}\n`, encoding: "utf8" });
    if (hash.status !== 0) throw new Error(`hash-password: ${hash.stderr}`);
    toml += `[[users]]\nusername = "${name}"\npassword_hash = "${hash.stdout.trim()}"\nroles = ${JSON.stringify(roles)}\n\n`;
  }
  writeFileSync(path.join(dataDir, "scriptorium.toml"), toml);
}

/**
 * A new browser context, signed in through the login form. `options`: `url` to open
 * (default: the app's root), `viewport` (default 1400×1000).
 */
export async function signIn({ base, browser }, user, password, options = {}) {
  if (typeof options !== "object") throw new TypeError("signIn's fourth argument is { url, viewport }");
  const { url = base, viewport = { width: 1400, height: 1000 } } = options;
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  await page.goto(url);
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("user").waitFor();
  return { context, page };
}

/** A same-origin JSON API call from the signed-in page (its cookie, its Origin). */
export async function apiCall(page, method, url, body) {
  return page.evaluate(
    async ([method, url, body]) => {
      const r = await fetch(url, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await r.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: r.status, json, text };
    },
    [method, url, body],
  );
}

/**
 * The 3D canvas's pixels, read back in the page (the renderer keeps its drawing buffer),
 * as RGBA bytes with the size.
 */
export async function canvasPixels(page) {
  const { width, height, data } = await page.locator("[data-testid=viewer-canvas] canvas").evaluate((c) => {
    const copy = document.createElement("canvas");
    copy.width = c.width;
    copy.height = c.height;
    const g = copy.getContext("2d");
    g.drawImage(c, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let bin = "";
    for (let i = 0; i < d.length; i += 0x8000) bin += String.fromCharCode(...d.subarray(i, i + 0x8000));
    return { width: c.width, height: c.height, data: btoa(bin) };
  });
  return { width, height, data: Buffer.from(data, "base64") };
}

/** The share of pixels that differ clearly between two canvas reads of one size. */
export function pixelDifference(a, b) {
  if (a.width !== b.width || a.height !== b.height) return 1;
  let differ = 0;
  for (let i = 0; i < a.data.length; i += 4) {
    const d = Math.abs(a.data[i] - b.data[i]) + Math.abs(a.data[i + 1] - b.data[i + 1]) + Math.abs(a.data[i + 2] - b.data[i + 2]);
    if (d > 30) differ++;
  }
  return differ / (a.data.length / 4);
}

/** Pixels of the model (not the light-grey background, grid or axes) within `margin` of the canvas's border. */
export function modelAtBorder(px, margin = 3) {
  const bg = [0xf4, 0xf5, 0xf7];
  let count = 0;
  for (let y = 0; y < px.height; y++)
    for (let x = 0; x < px.width; x++) {
      if (x >= margin && y >= margin && x < px.width - margin && y < px.height - margin) continue;
      const i = (y * px.width + x) * 4;
      const [r, g, b] = [px.data[i], px.data[i + 1], px.data[i + 2]];
      const grey = Math.abs(r - g) < 12 && Math.abs(g - b) < 12;
      // Background and grid lines are greys; the parts are coloured.
      if (!grey && Math.abs(r - bg[0]) + Math.abs(g - bg[1]) + Math.abs(b - bg[2]) > 40) count++;
    }
  return count;
}

/**
 * The canvas once it stops changing: read until two reads 300 ms apart agree (a frame
 * can take long under software rendering on a loaded machine), at most `timeout` ms.
 */
export async function settledPixels(page, timeout = 15_000) {
  let last = await canvasPixels(page);
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    await page.waitForTimeout(300);
    const now = await canvasPixels(page);
    if (pixelDifference(last, now) < 0.0005) return now;
    last = now;
  }
  return last;
}
