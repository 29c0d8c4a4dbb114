import { afterEach, describe, expect, it, vi } from "vitest";
import type { ReactElement } from "react";
import { cleanup, render as rtlRender, screen, waitFor } from "@testing-library/react";
import { Providers } from "./providers";
import { ScriptList, tooltip } from "../components/ScriptList";
import { VersionBadge } from "../components/VersionBadge";
import { PipelineView } from "../components/PipelineView";
import type { ScriptSummary } from "../api";

const render = (ui: ReactElement) => rtlRender(ui, { wrapper: Providers });

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const script = (over: Partial<ScriptSummary>): ScriptSummary => ({
  id: 1,
  ordering: "1.0",
  name: "Count words",
  filename: "word_count.py",
  version: "0.10",
  published_version: "0.9",
  last_modified: "2026-11-21T05:25:57.42Z",
  description: "Count words\n\nReads a text file.",
  parent: null,
  has_test_data: true,
  archived: false,
  last_run: null,
  ...over,
});

describe("ScriptList", () => {
  const scripts = [
    script({ id: 1, ordering: "1.0", last_run: { run_id: 3, status: "succeeded", started_at: null, ended_at: "2026-11-21T06:00:00.12Z" } }),
    script({ id: 2, ordering: "2.01", name: "Sum sales", last_run: { run_id: 4, status: "failed", started_at: null, ended_at: "2026-11-21T06:01:00.00Z" } }),
    script({ id: 3, ordering: "2.1", name: "", filename: "script_0003.py" }),
  ];

  it("shows ordering, name and the last result with its colour", () => {
    render(<ScriptList scripts={scripts} selected={2} canEdit onCreate={() => {}} />);
    const items = screen.getAllByRole("listitem").map((li) => li.textContent);
    expect(items[0]).toContain("1.0");
    expect(items[0]).toContain("Count words");
    expect(screen.getByText(/Success/).className).toContain("success");
    expect(screen.getByText(/Failure/).className).toContain("failure");
    expect(items[2]).toContain("script_0003.py");
    expect(items[2]).toContain("never run");
  });

  it("has a tooltip with version, last modified to 0.01 s and the full docstring", () => {
    const t = tooltip(scripts[0]);
    expect(t).toContain("version 0.10");
    expect(t).toContain("2026-11-21T05:25:57.42Z");
    expect(t).toContain("Reads a text file.");
    render(<ScriptList scripts={scripts} selected={null} canEdit onCreate={() => {}} />);
    expect(screen.getAllByRole("link", { name: /Count words/ })[0].getAttribute("title")).toBe(t);
  });

  it("offers the shipped examples to editors, naming their interpreter", async () => {
    const { fireEvent } = await import("@testing-library/react");
    const examples = [
      { id: "bracket", name: "Bracket with a hole", summary: "An L-shaped bracket.", filename: "bracket.py", interpreter: "build123d", available: false, problem: "run `make build123d`" },
    ];
    const picked: string[] = [];
    render(<ScriptList scripts={scripts} selected={null} canEdit onCreate={() => {}} examples={examples} onCreateFromExample={(id) => picked.push(id)} />);
    const item = screen.getByRole("button", { name: /Bracket with a hole/ });
    expect(item.textContent).toContain("build123d (not installed)");
    expect(item.getAttribute("title")).toContain("run `make build123d`");
    fireEvent.click(item);
    expect(picked).toEqual(["bracket"]);
    cleanup();
    render(<ScriptList scripts={scripts} selected={null} canEdit={false} onCreate={() => {}} examples={examples} />);
    expect(screen.queryByText("Add an example…")).toBeNull();
  });

  it("offers + to editors only", () => {
    const { unmount } = render(<ScriptList scripts={scripts} selected={null} canEdit onCreate={() => {}} />);
    expect(screen.getByRole("button", { name: "New script" })).toBeTruthy();
    unmount();
    render(<ScriptList scripts={scripts} selected={null} canEdit={false} onCreate={() => {}} />);
    expect(screen.queryByRole("button", { name: "New script" })).toBeNull();
  });
});

describe("VersionBadge", () => {
  it("shows Major.Minor as given (0.10 is not 0.1), prod and unsaved state", () => {
    render(<VersionBadge version="0.10" published="0.9" dirty />);
    expect(screen.getByTestId("version").textContent).toBe("v0.10");
    expect(screen.getByText("prod: 0.9")).toBeTruthy();
    expect(screen.getByText("unsaved")).toBeTruthy();
    cleanup();
    render(<VersionBadge version="1.0" published={null} dirty={false} />);
    expect(screen.getByTestId("version").textContent).toBe("v1.0");
    expect(screen.queryByText("unsaved")).toBeNull();
    expect(screen.queryByText(/prod:/)).toBeNull();
  });
});

describe("role gating", () => {
  function stubNoPass() {
    vi.stubGlobal("fetch", vi.fn(async () => new Response(JSON.stringify({ error: "no full pass has run yet" }), { status: 404 })));
  }

  it("viewers see the pipeline but no Run all or Cancel", async () => {
    stubNoPass();
    render(<PipelineView canEdit={false} />);
    await waitFor(() => expect(screen.getByTestId("pass-status").textContent).toBe("no pass yet"));
    expect(screen.queryByRole("button", { name: "Run all" })).toBeNull();
  });

  it("editors get Run all", async () => {
    stubNoPass();
    render(<PipelineView canEdit />);
    await waitFor(() => expect(screen.getByTestId("pass-status").textContent).toBe("no pass yet"));
    expect(screen.getByRole("button", { name: "Run all" })).toBeTruthy();
  });
});

describe("run panel gating", () => {
  function stubInterpreters() {
    vi.stubGlobal(
      "fetch",
      vi.fn(async () =>
        new Response(
          JSON.stringify({
            default: "cpython",
            interpreters: [
              { id: "cpython", kind: "native", implementation: "CPython", version: "3.11.7", backends: ["linux"], default_backend: "linux", available: true },
            ],
          }),
          { status: 200 },
        ),
      ),
    );
  }

  it("shows the interpreter with its exact version to everyone, Run & Stream to editors only", async () => {
    const { RunPanel } = await import("../components/RunPanel");
    stubInterpreters();
    const { unmount } = render(<RunPanel scriptId={1} canEdit={false} runTrigger={0} />);
    await waitFor(() => expect(screen.getByRole("combobox", { name: "Interpreter" }).textContent).toContain("CPython 3.11.7"));
    expect(screen.queryByRole("button", { name: /Run/ })).toBeNull();
    unmount();
    stubInterpreters();
    render(<RunPanel scriptId={1} canEdit runTrigger={0} />);
    await waitFor(() => expect(screen.getByRole("button", { name: /Run & Stream/ })).toBeTruthy());
    await waitFor(() => expect(screen.getByText(/namespaces; Landlock/)).toBeTruthy());
  });

  it("tells the editor which interpreter is chosen, so its language server follows a switch", async () => {
    const { RunPanel } = await import("../components/RunPanel");
    const { fireEvent } = await import("@testing-library/react");
    const both = [
      { id: "cpython", kind: "native", implementation: "CPython", version: "3.11.7", backends: ["linux"], default_backend: "linux", available: true },
      { id: "build123d", kind: "native", implementation: "CPython", version: "3.11.7", backends: ["linux"], default_backend: "linux", available: true },
    ];
    vi.stubGlobal("fetch", vi.fn(async () => new Response(JSON.stringify({ default: "cpython", interpreters: both }), { status: 200 })));
    const chosen: string[] = [];
    render(<RunPanel scriptId={1} canEdit runTrigger={0} onInterpreter={(id) => chosen.push(id)} />);
    await waitFor(() => expect(chosen).toEqual(["cpython"]));
    fireEvent.change(screen.getByRole("combobox", { name: "Interpreter" }), { target: { value: "build123d" } });
    await waitFor(() => expect(chosen).toEqual(["cpython", "build123d"]));
  });
});

describe("API tokens", () => {
  it("lists tokens, shows a new secret once, and revokes", async () => {
    const { TokensPanel } = await import("../components/TokensPanel");
    const { fireEvent } = await import("@testing-library/react");
    let tokens = [{ id: 1, name: "old-job", prefix: "scr_1a2b", created_at: "2026-11-20T10:00:00.00Z", revoked_at: null as string | null }];
    const calls: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string, init?: RequestInit) => {
        calls.push(`${init?.method ?? "GET"} ${url}`);
        if (init?.method === "POST") {
          const { name } = JSON.parse(init.body as string);
          const t = { id: 2, name, prefix: "scr_9f8e", created_at: "2026-11-21T09:00:00.00Z", revoked_at: null };
          tokens = [...tokens, t];
          return new Response(JSON.stringify({ ...t, token: "scr_9f8e-the-secret", note: "shown once" }), { status: 201 });
        }
        if (init?.method === "DELETE") {
          tokens = tokens.map((t) => (url.endsWith(`/${t.id}`) ? { ...t, revoked_at: "2026-11-21T09:01:00.00Z" } : t));
          return new Response(null, { status: 204 });
        }
        return new Response(JSON.stringify(tokens), { status: 200 });
      }),
    );
    vi.stubGlobal("confirm", () => true);
    render(<TokensPanel username="ed1" />);
    await waitFor(() => expect(screen.getByText("old-job")).toBeTruthy());
    expect(screen.getByRole("button", { name: "Create token" }).hasAttribute("disabled")).toBe(true);

    fireEvent.change(screen.getByLabelText("Name"), { target: { value: "ci-nightly" } });
    fireEvent.click(screen.getByRole("button", { name: "Create token" }));
    await waitFor(() => expect(screen.getByTestId("token-secret").textContent).toBe("scr_9f8e-the-secret"));
    await waitFor(() => expect(screen.getByRole("cell", { name: "ci-nightly" })).toBeTruthy());
    fireEvent.click(screen.getByRole("button", { name: "Done" }));
    expect(screen.queryByTestId("token-secret")).toBeNull();

    fireEvent.click(screen.getAllByRole("button", { name: "Revoke" })[0]);
    await waitFor(() => expect(screen.getByText(/^revoked 2026-11-21T09:01:00.00Z/)).toBeTruthy());
    expect(calls).toContain("DELETE /api/tokens/1");
    expect(screen.getAllByRole("button", { name: "Revoke" })).toHaveLength(1);
  });
});
