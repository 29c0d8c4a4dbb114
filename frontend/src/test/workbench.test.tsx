import { afterEach, describe, expect, it } from "vitest";
import type { ReactElement } from "react";
import { cleanup, fireEvent, render as rtlRender, screen } from "@testing-library/react";
import { Providers } from "./providers";
import { fracBetween, orderingAfter, orderingDown, orderingUp } from "../queue";
import { loadLayout, withName } from "../layout";
import { PassPreview, compareOrdering, previewGroups } from "../components/PassPreview";
import { PassTimeline, barOf } from "../components/PassTimeline";
import { ScriptList } from "../components/ScriptList";
import type { PassRecord, RunRecord, ScriptSummary } from "../api";

const render = (ui: ReactElement) => rtlRender(ui, { wrapper: Providers });
afterEach(() => {
  cleanup();
  localStorage.clear();
});

const script = (id: number, ordering: string, over: Partial<ScriptSummary> = {}): ScriptSummary => ({
  id,
  ordering,
  name: `Script ${id}`,
  filename: `script_${id}.py`,
  version: "0.2",
  published_version: "0.2",
  last_modified: "2026-11-21T05:25:57.42Z",
  description: "",
  parent: null,
  has_test_data: false,
  archived: false,
  last_run: null,
  ...over,
});

describe("ordering numbers for a move", () => {
  it("finds the shortest exact decimal between two", () => {
    expect(fracBetween("", null)).toBe("5");
    expect(fracBetween("01", "1")).toBe("05");
    expect(fracBetween("9", null)).toBe("95");
    expect(fracBetween("4", "6")).toBe("5");
    expect(fracBetween("4", "5")).toBe("45");
    expect(fracBetween("", "01")).toBe("005");
  });

  const queue = [script(1, "1.0"), script(2, "2.0"), script(3, "2.5"), script(4, "3.0")];

  it("a drop joins the target's group right after it", () => {
    expect(orderingAfter(queue, 4, 2)).toBe("2.2");
    expect(orderingAfter(queue, 1, 3)).toBe("2.7");
    expect(orderingAfter(queue, 1, 4)).toBe("3.5");
  });

  it("up and down pass one neighbour; the first cannot go up", () => {
    expect(orderingDown(queue, 1)).toBe("2.2");
    expect(orderingUp(queue, 3)).toBe("1.5");
    expect(orderingUp(queue, 4)).toBe("2.2");
    expect(orderingUp(queue, 1)).toBeNull();
    expect(orderingDown(queue, 4)).toBeNull();
  });

  it("compares orderings as exact decimals", () => {
    expect(["10.0", "3.1", "3.01", "2.9"].sort(compareOrdering)).toEqual(["2.9", "3.01", "3.1", "10.0"]);
  });
});

describe("layout and rename helpers", () => {
  it("remembers the layout per user and ignores malformed values", () => {
    localStorage.setItem("scriptorium.layout.ed1", JSON.stringify({ sidebarHidden: true, split: 99 }));
    expect(loadLayout("ed1")).toEqual({ sidebarHidden: true, split: 55 });
    expect(loadLayout("mo1")).toEqual({ sidebarHidden: false, split: 55 });
    localStorage.setItem("scriptorium.layout.ed1", "{not json");
    expect(loadLayout("ed1").sidebarHidden).toBe(false);
  });

  it("renames by the docstring's first line, keeping the rest", () => {
    expect(withName('"""Old name\n\nMore text."""\nprint(1)\n', "New name")).toBe('"""New name\n\nMore text."""\nprint(1)\n');
    expect(withName("# interpreter: py\n'''Old'''\n", 'Say "hi"')).toBe("# interpreter: py\n'''Say  hi'''\n");
    expect(withName("print(1)\n", "Named")).toBe('"""Named"""\nprint(1)\n');
  });
});

describe("Run all preview", () => {
  const scripts = [
    script(1, "1.0"),
    script(2, "2.01", { published_version: null }),
    script(3, "2.1"),
    script(4, "3.0", { archived: true }),
  ];

  it("lists groups in order and says which scripts run and which are left out", () => {
    const groups = previewGroups(scripts);
    expect(groups.map((g) => g.group)).toEqual(["1", "2"]);
    expect(groups[1].scripts.map((s) => s.state)).toEqual(["unpublished", "runs"]);
    render(<PassPreview scripts={scripts} />);
    expect(screen.getByRole("heading").textContent).toContain("Run all will run 2 scripts in 2 group(s)");
    expect(screen.getByText("not published: left out")).toBeTruthy();
    expect(screen.getByTestId("preview-archived").textContent).toContain("1 archived script left out");
  });
});

describe("pass timeline", () => {
  const run = (id: number, group: string, started: string | null, ended: string | null, status: RunRecord["status"]) =>
    ({ id, script_id: id, ordering: `${group}.0`, status, started_at: started, ended_at: ended, duration: null }) as RunRecord;

  it("places each bar at its start and as long as it ran", () => {
    const origin = Date.parse("2026-11-21T06:00:00Z");
    expect(barOf(run(1, "1", "2026-11-21T06:00:02Z", "2026-11-21T06:00:05Z", "succeeded"), origin, origin)).toEqual({ start: 2, length: 3 });
    expect(barOf(run(1, "1", null, null, "queued"), origin, origin)).toBeNull();
  });

  it("draws one lane per group and one bar per run, each linking to its run", () => {
    const pass = {
      id: 7,
      status: "succeeded",
      started_at: "2026-11-21T06:00:00Z",
      ended_at: "2026-11-21T06:00:10Z",
      groups: [
        { group: 1, runs: [run(11, "1", "2026-11-21T06:00:00Z", "2026-11-21T06:00:04Z", "succeeded")] },
        { group: 2, runs: [run(12, "2", "2026-11-21T06:00:04Z", "2026-11-21T06:00:10Z", "failed"), run(13, "2", "2026-11-21T06:00:04Z", "2026-11-21T06:00:05Z", "cancelled")] },
      ],
    } as unknown as PassRecord;
    render(<PassTimeline pass={pass} scripts={[script(11, "1.0", { name: "Load" })]} />);
    expect(screen.getAllByTestId("pipeline-group")).toHaveLength(2);
    const bars = screen.getAllByTestId("timeline-bar");
    expect(bars.map((b) => b.getAttribute("href"))).toEqual(["/runs/11", "/runs/12", "/runs/13"]);
    expect(bars[0].textContent).toContain("Load");
    expect(bars[0].style.width).toBe("40%");
    expect(bars[1].style.marginLeft).toBe("40%");
    expect(bars[1].textContent).toContain("Failure");
  });
});

describe("the queue in the script list", () => {
  it("shows draft/published badges, keeps archived scripts apart, and moves with Alt+arrows", () => {
    const moves: [number, string][] = [];
    const archives: [number, boolean][] = [];
    const scripts = [script(1, "1.0"), script(2, "2.0", { published_version: null }), script(3, "3.0", { archived: true })];
    render(<ScriptList scripts={scripts} selected={1} canEdit onCreate={() => {}} onMove={(id, o) => moves.push([id, o])} onArchive={(id, a) => archives.push([id, a])} />);
    const queue = screen.getByRole("list", { name: "Queue" });
    expect(queue.textContent).toContain("published");
    expect(queue.textContent).toContain("draft");
    expect(queue.textContent).not.toContain("Script 3");
    expect(screen.getByRole("list", { name: "Archived scripts" }).textContent).toContain("Script 3");
    fireEvent.keyDown(screen.getByRole("link", { name: /Script 1/ }), { key: "ArrowDown", altKey: true });
    expect(moves).toEqual([[1, "2.5"]]);
    fireEvent.click(screen.getByRole("button", { name: "Archive" }));
    fireEvent.click(screen.getByRole("button", { name: "Restore" }));
    expect(archives).toEqual([[1, true], [3, false]]);
  });

  it("offers no moves to a viewer", () => {
    render(<ScriptList scripts={[script(1, "1.0"), script(2, "2.0")]} selected={1} canEdit={false} onCreate={() => {}} onMove={() => {}} />);
    expect(screen.queryByRole("button", { name: /Move/ })).toBeNull();
    expect(screen.getAllByRole("listitem")[0].getAttribute("draggable")).toBe("false");
  });
});
