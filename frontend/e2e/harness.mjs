// What every browser test needs: the real server (built by cargo) on a fresh data
// directory, the built frontend, and Debian's chromium driven by playwright-core.

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

export const root = path.resolve(import.meta.dirname, "../..");
export const shots = path.join(import.meta.dirname, "screenshots");
mkdirSync(shots, { recursive: true });

/** Starts the server and the browser; `stop()` ends both and removes the data. */
export async function launch() {
  const dataDir = mkdtempSync(path.join(tmpdir(), "scriptorium-e2e-"));
  // The binary `cargo test` just built (a shared CARGO_TARGET_DIR is honoured).
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, "target");
  const bin = process.env.SCRIPTORIUM_BIN ?? path.join(targetDir, "debug/scriptorium");
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
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  return {
    base,
    browser,
    async stop() {
      await browser.close();
      server.kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A new browser context; `url` (default: the app's root) is opened and signed in on. */
export async function signIn({ base, browser }, user, password, url = base) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  await page.goto(url);
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("user").waitFor();
  return { context, page };
}
