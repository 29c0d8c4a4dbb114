// What the rest of the team does to the open script: who else has it open (initials,
// marked while they have unsaved edits),
// a non-blocking "ed2 saved 0.7 — merge now / view diff" notice, the three-way conflict
// view, the duplicate refusal and the fork-ordering chooser. Notices come from the
// server's `/api/events` stream (one per open editor).

import { useCallback, useEffect, useRef, useState } from "react";
import { api, type DuplicateOf, type MergeConflict, type MergedFrom, type PresenceState } from "../api";
import { monaco } from "../monaco";
import { currentTab, onNotice } from "../notices";

/** One notice from `/api/events` (the fields besides `kind`/`user` depend on the kind). */
export interface Notice {
  id: number;
  kind: string;
  user: string;
  at: string;
  script_id?: number;
  version?: string;
  open?: boolean;
  tab?: number;
  state?: PresenceState;
  merged?: MergedFrom | null;
}

/** One tab of another user with a script open. */
interface TabPresence {
  user: string;
  script_id: number;
  state: PresenceState;
}

/** Another user in this script: editing when any of their tabs has unsaved edits. */
export interface Present {
  user: string;
  state: PresenceState;
}

/** The other users in `scriptId`, one entry per user however many tabs they have. */
function inScript(tabs: Map<number, TabPresence>, scriptId: number, me: string): Present[] {
  const by = new Map<string, PresenceState>();
  for (const t of tabs.values()) {
    if (t.script_id !== scriptId || t.user === me) continue;
    by.set(t.user, by.get(t.user) === "editing" ? "editing" : t.state);
  }
  return [...by].map(([user, state]) => ({ user, state })).sort((a, b) => a.user.localeCompare(b.user));
}

// Presence reports go one after another: leaving one script and opening the next must
// not arrive the other way round.
let reports: Promise<unknown> = Promise.resolve();
function reportPresence(script: number | null, state?: PresenceState) {
  const tab = currentTab();
  if (tab === null) return;
  reports = reports.then(() => api.presence(tab, script, state)).catch(() => undefined);
}

/**
 * Who else has `scriptId` open (and whether they are editing), and the latest save of it
 * by someone else. This tab's own presence is reported: the script, and `editing` while
 * `dirty` (unsaved edits), on every (re)connect of the tab's notice stream.
 */
export function useTeam(scriptId: number, me: string, canEdit: boolean, dirty = false) {
  const [tabs, setTabs] = useState<Map<number, TabPresence>>(new Map());
  const [saved, setSaved] = useState<Notice | null>(null);
  const state: PresenceState = dirty ? "editing" : "viewing";
  const stateRef = useRef(state);
  useEffect(() => {
    stateRef.current = state;
  }, [state]);
  const report = useCallback(() => {
    // Viewers only listen.
    if (canEdit) reportPresence(scriptId, stateRef.current);
  }, [scriptId, canEdit]);
  useEffect(() => {
    const offs = [
      onNotice("hello", (h) => {
        const list = (h.presence ?? []) as (TabPresence & { tab: number })[];
        setTabs(new Map(list.map((p) => [p.tab, p])));
        report();
      }),
      onNotice("presence", (d) => {
        const n = d as unknown as Notice;
        setTabs((prev) => {
          const next = new Map(prev);
          if (n.open) next.set(n.tab!, { user: n.user, script_id: n.script_id!, state: n.state ?? "viewing" });
          else if (next.get(n.tab!)?.script_id === n.script_id) next.delete(n.tab!);
          return next;
        });
      }),
      onNotice("saved", (d) => {
        const n = d as unknown as Notice;
        if (n.script_id === scriptId) setSaved(n);
      }),
    ];
    report();
    return () => {
      for (const off of offs) off();
      // The page's stream stays open: say that this tab no longer shows the script.
      if (canEdit) reportPresence(null);
    };
  }, [scriptId, canEdit, report]);
  useEffect(report, [state, report]);
  return { present: inScript(tabs, scriptId, me), saved, dismiss: () => setSaved(null) };
}

/** Refreshes what others change (the list, runs) when the server says so, not by polling. */
export function useRefreshOnNotices(refresh: { scripts: () => void; runs: () => void }) {
  const latest = useRef(refresh);
  useEffect(() => {
    latest.current = refresh;
  });
  useEffect(() => {
    const offs = ["saved", "published", "forked", "created", "test_data_saved", "reset"].map((kind) => onNotice(kind, () => latest.current.scripts()));
    for (const kind of ["run_finished", "pass_ended"]) {
      offs.push(
        onNotice(kind, () => {
          latest.current.runs();
          latest.current.scripts();
        }),
      );
    }
    return () => offs.forEach((off) => off());
  }, []);
}

/** The other users in this script, as initials; a dot marks unsaved edits. */
export function TeamInitials({ users }: { users: Present[] }) {
  if (users.length === 0) return null;
  return (
    <span className="team" aria-label="Also open by">
      {users.map(({ user, state }) => (
        <span
          key={user}
          className={`initials ${state}`}
          title={state === "editing" ? `${user} is editing this script (unsaved changes)` : `${user} has this script open`}
          data-testid="presence"
          data-state={state}
        >
          {user.slice(0, 3).toUpperCase()}
          {state === "editing" ? " ✎" : ""}
        </span>
      ))}
    </span>
  );
}

/** "ed2 saved 0.7 — merge now / view diff". */
export function SavedNotice(props: { notice: Notice; onMerge: () => void; onDiff: () => void; onDismiss: () => void }) {
  const n = props.notice;
  return (
    <div className="team-notice" role="status" data-testid="saved-notice">
      {n.user} saved {n.version}
      {" — "}
      <button onClick={props.onMerge}>Merge now</button>{" "}
      <button onClick={props.onDiff}>View diff</button>{" "}
      <button onClick={props.onDismiss} aria-label="Dismiss">×</button>
    </div>
  );
}

/**
 * Side by side: theirs (left, read-only) and yours (right, editable); `onResolve` gets
 * the right side.
 */
export function ResolveDiff(props: { theirs: string; ours: string; language: string; label: string; onResolve: (content: string) => void; onCancel: () => void }) {
  const host = useRef<HTMLDivElement>(null);
  const diff = useRef<monaco.editor.IStandaloneDiffEditor | null>(null);
  const { theirs, ours, language } = props;
  useEffect(() => {
    const editor = monaco.editor.createDiffEditor(host.current!, { automaticLayout: true, originalEditable: false, renderSideBySide: true });
    const original = monaco.editor.createModel(theirs, language);
    const modified = monaco.editor.createModel(ours, language);
    editor.setModel({ original, modified });
    diff.current = editor;
    return () => {
      editor.dispose();
      original.dispose();
      modified.dispose();
    };
  }, [theirs, ours, language]);
  return (
    <>
      <div className="diff-host" ref={host} />
      <button className="primary" onClick={() => props.onResolve(diff.current?.getModifiedEditor().getValue() ?? ours)}>
        {props.label}
      </button>{" "}
      <button onClick={props.onCancel}>Back to my text</button>
    </>
  );
}

/** The overlapping hunks of a conflict, each with its three sides. */
export function Hunks({ hunks }: { hunks: MergeConflict["hunks"] }) {
  return (
    <ol className="hunks">
      {hunks.map((h, i) => (
        <li key={i}>
          line {h.line}: base <code>{h.base.trim() || "(nothing)"}</code>, theirs <code>{h.theirs.trim() || "(nothing)"}</code>, yours <code>{h.ours.trim() || "(nothing)"}</code>
        </li>
      ))}
    </ol>
  );
}

/**
 * A script save that overlapped: theirs (the current version) and yours, with the base
 * shown for each overlapping hunk. Saving sends the right side based on theirs.
 */
export function ConflictView(props: { conflict: MergeConflict; onResolve: (content: string) => void; onCancel: () => void }) {
  const c = props.conflict;
  return (
    <section className="conflict-view" aria-label="Merge conflict" data-testid="conflict">
      <p className="error">
        Version {c.theirs} changed the same lines as your edit of {c.base} ({c.hunks.length} place{c.hunks.length === 1 ? "" : "s"}). Left: {c.theirs}; right: your text — edit it into the
        version to keep, then save.
      </p>
      <Hunks hunks={c.hunks} />
      <ResolveDiff theirs={c.theirs_content} ours={c.ours_content} language="python" label={`Save resolution on ${c.theirs}`} onResolve={props.onResolve} onCancel={props.onCancel} />
    </section>
  );
}

/** A refused publish: the script on prod with the same code, linked. */
export function DuplicateRefusal(props: { message: string; other: DuplicateOf; onOpen: (id: number) => void }) {
  const o = props.other;
  return (
    <p className="error" role="alert" data-testid="duplicate">
      {props.message}{" "}
      {o.script_id !== null ? <button onClick={() => props.onOpen(o.script_id!)}>Open script {o.script_id}</button> : <code>scripts/{o.filename}</code>}
    </p>
  );
}

/** Where the fork goes, shown before it is made. */
export function ForkChooser(props: { scriptId: number; onFork: (ordering: string) => void; onCancel: () => void }) {
  const [options, setOptions] = useState<{ same: string | null; next: string } | null>(null);
  const [choice, setChoice] = useState("");
  useEffect(() => {
    api.forkOrdering(props.scriptId).then((o) => {
      setOptions({ same: o.same_group, next: o.new_group });
      setChoice(o.default);
    }, () => setOptions(null));
  }, [props.scriptId]);
  if (!options) return null;
  return (
    <div className="fork-chooser" role="dialog" aria-label="Fork ordering">
      Fork to ordering{" "}
      {options.same && (
        <label><input type="radio" checked={choice === options.same} onChange={() => setChoice(options.same!)} /> {options.same} (next in its group)</label>
      )}{" "}
      <label><input type="radio" checked={choice === options.next} onChange={() => setChoice(options.next)} /> {options.next} (a new group)</label>{" "}
      <label>or <input aria-label="Ordering" size={8} value={choice} onChange={(e) => setChoice(e.target.value)} /></label>{" "}
      <button className="primary" onClick={() => props.onFork(choice)}>Create fork</button>{" "}
      <button onClick={props.onCancel}>Cancel</button>
    </div>
  );
}
