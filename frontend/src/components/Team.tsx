// What the rest of the team does to the open script: who else has it open (initials),
// a non-blocking "ed2 saved 0.7 — merge now / view diff" notice, the three-way conflict
// view, the duplicate refusal and the fork-ordering chooser. Notices come from the
// server's `/api/events` stream (one per open editor).

import { useEffect, useRef, useState } from "react";
import { api, type DuplicateOf, type MergeConflict, type MergedFrom } from "../api";
import { monaco } from "../monaco";

/** One notice from `/api/events` (the fields besides `kind`/`user` depend on the kind). */
export interface Notice {
  id: number;
  kind: string;
  user: string;
  at: string;
  script_id?: number;
  version?: string;
  open?: boolean;
  merged?: MergedFrom | null;
}

/** Who else has `scriptId` open, and the latest save of it by someone else. */
export function useTeam(scriptId: number, me: string, canEdit: boolean) {
  const [present, setPresent] = useState<string[]>([]);
  const [saved, setSaved] = useState<Notice | null>(null);
  useEffect(() => {
    // Notices are an addition: where a browser has no EventSource, the editor works without.
    if (typeof EventSource === "undefined") return;
    const events = new EventSource(api.eventsUrl);
    const where = new Map<string, number>();
    const show = () => setPresent([...where].filter(([u, s]) => s === scriptId && u !== me).map(([u]) => u).sort());
    events.addEventListener("hello", (e) => {
      const hello = JSON.parse((e as MessageEvent).data) as { presence: { user: string; script_id: number }[] };
      where.clear();
      for (const p of hello.presence) where.set(p.user, p.script_id);
      show();
      // (Re)connected: say which script is open here; viewers only listen.
      if (canEdit) api.presence(scriptId).catch(() => undefined);
    });
    events.addEventListener("presence", (e) => {
      const n = JSON.parse((e as MessageEvent).data) as Notice;
      if (n.open) where.set(n.user, n.script_id!);
      else if (where.get(n.user) === n.script_id) where.delete(n.user);
      show();
    });
    events.addEventListener("saved", (e) => {
      const n = JSON.parse((e as MessageEvent).data) as Notice;
      if (n.script_id === scriptId) setSaved(n);
    });
    return () => {
      events.close();
      // The list's own stream stays open: say that this script is no longer open here.
      if (canEdit) api.presence(null).catch(() => undefined);
    };
  }, [scriptId, me, canEdit]);
  return { present, saved, dismiss: () => setSaved(null) };
}

/** Refreshes what others change (the list, runs) when the server says so, not by polling. */
export function useRefreshOnNotices(refresh: { scripts: () => void; runs: () => void }) {
  const latest = useRef(refresh);
  useEffect(() => {
    latest.current = refresh;
  });
  useEffect(() => {
    if (typeof EventSource === "undefined") return;
    const events = new EventSource(api.eventsUrl);
    for (const kind of ["saved", "published", "forked", "created", "reset"]) {
      events.addEventListener(kind, () => latest.current.scripts());
    }
    for (const kind of ["run_finished", "pass_ended"]) {
      events.addEventListener(kind, () => {
        latest.current.runs();
        latest.current.scripts();
      });
    }
    return () => events.close();
  }, []);
}

/** The other editors of this script, as initials. */
export function TeamInitials({ users }: { users: string[] }) {
  if (users.length === 0) return null;
  return (
    <span className="team" aria-label="Also open by">
      {users.map((u) => (
        <span key={u} className="initials" title={`${u} has this script open`} data-testid="presence">
          {u.slice(0, 3).toUpperCase()}
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
 * Side by side: theirs (the current version, left) and yours (right, editable), with the
 * base shown for each overlapping hunk. Saving sends the right side based on theirs.
 */
export function ConflictView(props: { conflict: MergeConflict; onResolve: (content: string) => void; onCancel: () => void }) {
  const host = useRef<HTMLDivElement>(null);
  const diff = useRef<monaco.editor.IStandaloneDiffEditor | null>(null);
  const c = props.conflict;
  useEffect(() => {
    const editor = monaco.editor.createDiffEditor(host.current!, { automaticLayout: true, originalEditable: false, renderSideBySide: true });
    const original = monaco.editor.createModel(c.theirs_content, "python");
    const modified = monaco.editor.createModel(c.ours_content, "python");
    editor.setModel({ original, modified });
    diff.current = editor;
    return () => {
      editor.dispose();
      original.dispose();
      modified.dispose();
    };
  }, [c]);
  return (
    <section className="conflict-view" aria-label="Merge conflict" data-testid="conflict">
      <p className="error">
        Version {c.theirs} changed the same lines as your edit of {c.base} ({c.hunks.length} place{c.hunks.length === 1 ? "" : "s"}). Left: {c.theirs}; right: your text — edit it into the
        version to keep, then save.
      </p>
      <ol className="hunks">
        {c.hunks.map((h, i) => (
          <li key={i}>
            line {h.line}: base <code>{h.base.trim() || "(nothing)"}</code>, theirs <code>{h.theirs.trim() || "(nothing)"}</code>, yours <code>{h.ours.trim() || "(nothing)"}</code>
          </li>
        ))}
      </ol>
      <div className="diff-host" ref={host} />
      <button className="primary" onClick={() => props.onResolve(diff.current?.getModifiedEditor().getValue() ?? c.ours_content)}>
        Save resolution on {c.theirs}
      </button>{" "}
      <button onClick={props.onCancel}>Back to my text</button>
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
