import { afterEach, describe, expect, it, vi } from "vitest";
import type { ReactElement } from "react";
import { cleanup, render as rtlRender, screen, waitFor } from "@testing-library/react";
import { Providers } from "./providers";
import { DependenciesPanel } from "../components/DependenciesPanel";
import type { Dependencies } from "../generated";

const render = (ui: ReactElement) => rtlRender(ui, { wrapper: Providers });

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const deps = (over: Partial<Dependencies>): Dependencies => ({
  requires_python: ">=3.9",
  declared: ["tabulate==0.9.0"],
  locked: [],
  lock_hash: null,
  problem: null,
  state: "none",
  error: null,
  ...over,
});

/** `GET /api/scripts/1` answering each of `answers` in turn (the last one repeats). */
function stubScript(answers: Dependencies[]) {
  let n = 0;
  const fetch = vi.fn(async () => {
    const d = answers[Math.min(n++, answers.length - 1)];
    return new Response(JSON.stringify({ id: 1, version: "0.2", content: "", dependencies: d }), { status: 200 });
  });
  vi.stubGlobal("fetch", fetch);
  return fetch;
}

describe("DependenciesPanel", () => {
  it("shows what is declared, the locked pins and the lock's hash", async () => {
    stubScript([deps({ state: "locked", locked: ["tabulate==0.9.0"], lock_hash: "ab".repeat(32) })]);
    render(<DependenciesPanel scriptId={1} version="0.2" canEdit={false} />);
    await waitFor(() => expect(screen.getByTestId("deps-state").textContent).toBe("locked"));
    expect(screen.getByRole("list", { name: "Declared packages" }).textContent).toContain("tabulate==0.9.0");
    expect(screen.getByRole("list", { name: "Locked packages" }).textContent).toContain("tabulate==0.9.0");
    expect(screen.getByText(/lock sha256 abababababab/)).toBeTruthy();
    expect(screen.getByText("requires-python >=3.9")).toBeTruthy();
  });

  it("follows a resolution until it fails and shows uv's reason", async () => {
    const fetch = stubScript([
      deps({ state: "resolving" }),
      deps({ state: "failed", error: "the dependencies could not be resolved: Because nope was not found" }),
    ]);
    render(<DependenciesPanel scriptId={1} version="0.2" canEdit={false} />);
    await waitFor(() => expect(screen.getByTestId("deps-state").textContent).toBe("resolving with uv…"));
    await waitFor(() => expect(screen.getByTestId("deps-state").textContent).toBe("resolution failed"), { timeout: 3000 });
    expect(screen.getByRole("alert").textContent).toContain("Because nope was not found");
    expect(fetch.mock.calls.length).toBe(2);
  });

  it("tells how to declare a package when none is", async () => {
    stubScript([deps({ declared: [], requires_python: null })]);
    render(<DependenciesPanel scriptId={1} version="0.1" canEdit />);
    await waitFor(() => expect(screen.getByTestId("deps-state").textContent).toBe("no dependencies declared"));
    expect(screen.getByText(/dependencies = \["tabulate"\]/)).toBeTruthy();
    // Nothing declared, nothing to re-lock.
    expect(screen.queryByRole("button", { name: "Re-lock" })).toBeNull();
  });

  it("offers editors a re-lock and says what it did; viewers get no button", async () => {
    const locked = deps({ state: "locked", locked: ["tabulate==0.9.0"], lock_hash: "cd".repeat(32) });
    const calls: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string, init?: RequestInit) => {
        calls.push(`${init?.method ?? "GET"} ${url}`);
        if (url.endsWith("/relock")) return new Response(JSON.stringify({ version: "0.3", changed: true }), { status: 200 });
        return new Response(JSON.stringify({ id: 1, version: "0.2", content: "", dependencies: locked }), { status: 200 });
      }),
    );
    const relocked: string[] = [];
    render(<DependenciesPanel scriptId={1} version="0.2" canEdit onRelocked={(v) => relocked.push(v)} />);
    await screen.findByRole("button", { name: "Re-lock" });
    screen.getByRole("button", { name: "Re-lock" }).click();
    await waitFor(() => expect(screen.getByTestId("deps-note").textContent).toBe("re-locked as version 0.3"));
    expect(relocked).toEqual(["0.3"]);
    expect(calls).toContain("POST /api/scripts/1/relock");
    cleanup();
    render(<DependenciesPanel scriptId={1} version="0.2" canEdit={false} />);
    await waitFor(() => expect(screen.getByTestId("deps-state").textContent).toBe("locked"));
    expect(screen.queryByRole("button", { name: "Re-lock" })).toBeNull();
  });
});
