import { useCallback, useEffect, useRef, useState } from "react";
import { api, ApiError, type DuplicateOf, type MergeConflict, type ScriptDetail } from "../api";
import { errorMessage } from "../errors";
import { monaco } from "../monaco";
import { LspClient, type Diagnostic } from "../lsp";
import { RunPanel } from "./RunPanel";
import { PromptWindow } from "./PromptWindow";
import { HistoryPanel } from "./HistoryPanel";
import { TestDataEditor } from "./TestDataEditor";
import { DependenciesPanel } from "./DependenciesPanel";
import { VersionBadge } from "./VersionBadge";
import { ConflictView, DuplicateRefusal, ForkChooser, SavedNotice, TeamInitials, useTeam } from "./Team";
import { PublishDialog } from "./PublishDialog";
import { SplitPane } from "./SplitPane";
import { useLayout, withName } from "../layout";

type Tab = "run" | "prompt" | "history" | "data" | "deps";

export function ScriptEditor(props: {
  scriptId: number;
  canEdit: boolean;
  onChanged: () => void;
  onOpen: (id: number) => void;
  onDirty: (dirty: boolean) => void;
  /** The signed-in user (their own presence is not shown). */
  me?: string;
}) {
  const host = useRef<HTMLDivElement>(null);
  const editor = useRef<monaco.editor.IStandaloneCodeEditor | null>(null);
  const lsp = useRef<LspClient | null>(null);
  const [detail, setDetail] = useState<ScriptDetail | null>(null);
  const [saved, setSaved] = useState("");
  const [dirty, setDirty] = useState(false);
  const [message, setMessage] = useState<{ text: string; kind: "info" | "error" } | null>(null);
  const [conflict, setConflict] = useState<string | null>(null);
  const [problems, setProblems] = useState<Diagnostic[]>([]);
  const [lspStatus, setLspStatus] = useState("connecting to the language server…");
  const [tab, setTab] = useState<Tab>("run");
  // The interpreter the language server analyses with: the script's directive, then
  // whatever the run panel switches to (the session is re-pointed, no page reload).
  const [lspInterpreter, setLspInterpreter] = useState<string | undefined>(undefined);
  const [model, setModel] = useState<monaco.editor.ITextModel | null>(null);
  const [runTrigger, setRunTrigger] = useState(0);
  const exchangeRef = useRef<number | undefined>(undefined);
  const saveRef = useRef<() => void>(() => undefined);
  const team = useTeam(props.scriptId, props.me ?? "", props.canEdit, dirty);
  const [mergeConflict, setMergeConflict] = useState<MergeConflict | null>(null);
  const [duplicate, setDuplicate] = useState<{ message: string; other: DuplicateOf } | null>(null);
  const [forking, setForking] = useState(false);
  // One save at a time: Save (and Run, which saves first) wait while one is in flight.
  const [saving, setSaving] = useState(false);
  const savingRef = useRef(false);
  const [publishing, setPublishing] = useState(false);
  const [renaming, setRenaming] = useState<string | null>(null);
  const [layout, setLayout] = useLayout(props.me ?? "");

  // The editor, once.
  useEffect(() => {
    const ed = monaco.editor.create(host.current!, {
      language: "python",
      automaticLayout: true,
      minimap: { enabled: false },
      fontSize: 13,
      readOnly: !props.canEdit,
      tabSize: 4,
      insertSpaces: true,
      quickSuggestions: true,
      // Enter accepts a suggestion only when it changes the text ("import time⏎" is a newline).
      acceptSuggestionOnEnter: "smart",
    });
    editor.current = ed;
    ed.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.KeyS, () => saveRef.current());
    ed.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.Enter, () => {
      setTab("run");
      setRunTrigger((n) => n + 1);
    });
    return () => ed.dispose();
  }, [props.canEdit]);

  // The script, and its language-server session.
  useEffect(() => {
    let cancelled = false;
    api.script(props.scriptId).then((d) => {
      if (cancelled || !editor.current) return;
      setDetail(d);
      setSaved(d.content);
      setDirty(false);
      setConflict(null);
      setMessage(null);
      const model = monaco.editor.createModel(d.content, "python");
      const old = editor.current.getModel();
      editor.current.setModel(model);
      old?.dispose();
      model.onDidChangeContent(() => setDirty(model.getValue() !== d.content));
      setLspInterpreter(/^#\s*interpreter:\s*(\S+)/m.exec(d.content)?.[1]);
      setModel(model);
    }, (e) => {
      if (!cancelled) setMessage({ text: errorMessage(e), kind: "error" });
    });
    return () => {
      cancelled = true;
    };
  }, [props.scriptId]);

  // The language-server session for this model and interpreter.
  useEffect(() => {
    if (!model) return;
    const client = new LspClient(api.lspUrl(lspInterpreter, props.scriptId), model, setProblems, setLspStatus);
    lsp.current = client;
    return () => {
      client.dispose();
      if (lsp.current === client) lsp.current = null;
      // The next session (another interpreter or script) reports its own.
      setProblems([]);
      setLspStatus("connecting to the language server…");
    };
  }, [model, lspInterpreter, props.scriptId]);

  const goTo = (p: Diagnostic) => {
    editor.current?.revealLineInCenter(p.line);
    editor.current?.setPosition({ lineNumber: p.line, column: p.column });
    editor.current?.focus();
  };
  // Arrow keys move between problems; Enter (the button's own) jumps to one.
  const problemKeys = (e: React.KeyboardEvent<HTMLUListElement>) => {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    const buttons = Array.from(e.currentTarget.querySelectorAll("button"));
    const at = buttons.indexOf(document.activeElement as HTMLButtonElement);
    const next = buttons[Math.min(buttons.length - 1, Math.max(0, at + (e.key === "ArrowDown" ? 1 : -1)))];
    next?.focus();
    e.preventDefault();
  };

  useEffect(() => props.onDirty(dirty), [dirty, props]);
  useEffect(() => {
    const guard = (e: BeforeUnloadEvent) => {
      if (dirty) e.preventDefault();
    };
    window.addEventListener("beforeunload", guard);
    return () => window.removeEventListener("beforeunload", guard);
  }, [dirty]);

  /** Saves the editor's text; true when it is saved (or had nothing to save). */
  const save = useCallback(async (): Promise<boolean> => {
    if (!detail || !editor.current || !props.canEdit || savingRef.current) return false;
    if (editor.current.getValue() === saved) {
      setMessage({ text: `No changes to save; version ${detail.version} is current`, kind: "info" });
      return true;
    }
    savingRef.current = true;
    setSaving(true);
    try {
      // Bounded: a slow or dead language server never holds a save back.
      await lsp.current?.format().catch(() => null);
      const content = editor.current.getValue();
      const r = await api.save(detail.id, content, detail.version, exchangeRef.current);
      exchangeRef.current = undefined;
      if (r.merged) {
        // Someone saved in between: the server merged; show what was saved.
        const d = await api.script(detail.id);
        editor.current.setValue(d.content);
        setDetail(d);
        setSaved(d.content);
      } else {
        setDetail({ ...detail, version: r.version, content });
        setSaved(content);
      }
      setDirty(false);
      setConflict(null);
      setMergeConflict(null);
      team.dismiss();
      const merged = r.merged ? ` (your edit of ${r.merged.base} merged with ${r.merged.theirs})` : "";
      const dup = r.duplicate_of ? `; note: the same code is on prod as script ${r.duplicate_of.script_id ?? r.duplicate_of.filename}, so publishing it would be refused` : "";
      setMessage({ text: (r.changed ? `Saved as version ${r.version}${merged}` : `Nothing changed since ${r.version}`) + dup, kind: "info" });
      props.onChanged();
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 409 && e.body.conflict) {
        setMergeConflict(e.body.conflict as MergeConflict);
        setMessage({ text: `${e.message}. Your text is kept.`, kind: "error" });
      } else if (e instanceof ApiError && e.status === 409) {
        setConflict(String(e.body.current_version ?? ""));
        setMessage({ text: `${e.message}. Your text is kept in the editor.`, kind: "error" });
      } else {
        setMessage({ text: errorMessage(e), kind: "error" });
      }
      return false;
    } finally {
      savingRef.current = false;
      setSaving(false);
    }
  }, [detail, props, team, saved]);
  useEffect(() => {
    saveRef.current = () => void save();
  }, [save]);

  // Ctrl+S and Ctrl+Enter anywhere on the script's page (Monaco handles its own first).
  useEffect(() => {
    const keys = (e: KeyboardEvent) => {
      if (e.defaultPrevented || !(e.ctrlKey || e.metaKey)) return;
      if (e.key === "s" || e.key === "S") {
        e.preventDefault();
        saveRef.current();
      } else if (e.key === "Enter") {
        e.preventDefault();
        setTab("run");
        setRunTrigger((n) => n + 1);
      }
    };
    window.addEventListener("keydown", keys);
    return () => window.removeEventListener("keydown", keys);
  }, []);

  /** Before a run: unsaved edits are saved first, so the run is of what is on screen. */
  async function saveBeforeRun(): Promise<boolean> {
    if (!editor.current || editor.current.getValue() === saved) return true;
    return save();
  }

  async function rename(name: string) {
    if (!editor.current || !name.trim()) return;
    setRenaming(null);
    editor.current.setValue(withName(editor.current.getValue(), name));
    await save();
  }

  // "Merge now": with no edits of mine, load theirs; else save mine (the server merges).
  async function mergeNow() {
    team.dismiss();
    if (!dirty) await reload();
    else await save();
  }

  async function resolve(content: string) {
    if (!mergeConflict || !detail || !editor.current) return;
    editor.current.setValue(content);
    setDetail({ ...detail, version: mergeConflict.theirs });
    setMergeConflict(null);
    try {
      const r = await api.save(detail.id, content, mergeConflict.theirs);
      setDetail({ ...detail, version: r.version, content });
      setSaved(content);
      setDirty(false);
      setMessage({ text: `Saved your resolution as version ${r.version}`, kind: "info" });
      props.onChanged();
    } catch (e) {
      if (e instanceof ApiError && e.body.conflict) setMergeConflict(e.body.conflict as MergeConflict);
      setMessage({ text: errorMessage(e), kind: "error" });
    }
  }

  async function publish(note?: string) {
    if (!detail) return;
    setPublishing(false);
    setDuplicate(null);
    try {
      const r = await api.publish(detail.id, detail.version, note);
      setDetail({ ...detail, published_version: r.published_version });
      setMessage({ text: "Published to prod", kind: "info" });
      props.onChanged();
    } catch (e) {
      if (e instanceof ApiError && e.body.duplicate_of) {
        setDuplicate({ message: e.message, other: e.body.duplicate_of as DuplicateOf });
        setMessage(null);
      } else setMessage({ text: errorMessage(e), kind: "error" });
    }
  }

  async function act(what: string, f: () => Promise<unknown>) {
    try {
      const r = await f();
      setMessage({ text: what, kind: "info" });
      props.onChanged();
      return r;
    } catch (e) {
      setMessage({ text: errorMessage(e), kind: "error" });
    }
  }

  async function reload() {
    const d = await api.script(props.scriptId);
    setDetail(d);
    editor.current?.setValue(d.content);
    setSaved(d.content);
    setConflict(null);
    setDirty(false);
    setMessage({ text: `Loaded version ${d.version}`, kind: "info" });
  }

  return (
    <div className="script-editor">
      <div className="toolbar">
        <strong>{detail?.filename}</strong>
        {detail && <VersionBadge version={detail.version} published={detail.published_version} dirty={dirty} />}
        {props.canEdit && (
          <>
            <button className="primary" onClick={() => void save()} title="Ctrl+S" disabled={!dirty || saving}>
              {saving ? "Saving…" : "Save"}
            </button>
            <button onClick={() => detail && act("Major version bumped", async () => {
              const r = await api.bumpMajor(detail.id);
              setDetail({ ...detail, version: r.version });
            })}>Bump Major</button>
            <button onClick={() => setForking(true)}>Fork</button>
            <button onClick={() => setPublishing(true)} disabled={saving}>Publish…</button>
            <button onClick={() => setRenaming(detail?.name ?? "")} disabled={saving} title="Changes the docstring's first line and saves">
              Rename…
            </button>
          </>
        )}
        <TeamInitials users={team.present} />
      </div>
      {renaming !== null && (
        <form className="rename-form" onSubmit={(e) => {
          e.preventDefault();
          void rename(renaming);
        }}>
          <label>
            New name (the docstring's first line)
            <input autoFocus value={renaming} onChange={(e) => setRenaming(e.target.value)} />
          </label>
          <button className="primary" type="submit" disabled={!renaming.trim()}>Rename and save</button>
          <button type="button" onClick={() => setRenaming(null)}>Cancel</button>
        </form>
      )}
      {publishing && detail && (
        <PublishDialog
          scriptId={detail.id}
          version={detail.version}
          published={detail.published_version}
          content={saved}
          dirty={dirty}
          onConfirm={(note) => void publish(note)}
          onCancel={() => setPublishing(false)}
        />
      )}
      {forking && detail && (
        <ForkChooser
          scriptId={detail.id}
          onCancel={() => setForking(false)}
          onFork={(ordering) => act("Forked", async () => {
            setForking(false);
            props.onOpen((await api.fork(detail.id, ordering)).id);
          })}
        />
      )}
      {team.saved && props.canEdit && (
        <SavedNotice notice={team.saved} onMerge={mergeNow} onDismiss={team.dismiss} onDiff={() => setTab("history")} />
      )}
      {duplicate && <DuplicateRefusal message={duplicate.message} other={duplicate.other} onOpen={props.onOpen} />}
      {mergeConflict && <ConflictView conflict={mergeConflict} onResolve={resolve} onCancel={() => setMergeConflict(null)} />}
      {message && <p className={message.kind === "error" ? "error" : "info"} role="status">{message.text}</p>}
      {conflict && (
        <p className="conflict">
          Version {conflict} was saved by someone else after you opened this script.{" "}
          <button onClick={reload}>Load {conflict} (discard my text)</button>
        </p>
      )}
      <SplitPane
        split={layout.split}
        onSplit={(split) => setLayout({ split })}
        first={<>
      <div className="editor-host" ref={host} data-testid="editor" />
      <section className="problems" aria-label="Problems">
        <span className="muted">{lspStatus}</span>
        {problems.length === 0 ? <span className="muted"> · no problems</span> : (
          <ul onKeyDown={problemKeys}>
            {problems.map((p, i) => (
              <li key={i} className={p.severity}>
                <button onClick={() => goTo(p)}>
                  {p.line}:{p.column}
                </button>{" "}
                {p.message}
                {(p.source || p.code) && (
                  <span className="muted"> [{[p.source, p.code].filter(Boolean).join(" ")}]</span>
                )}
              </li>
            ))}
          </ul>
        )}
      </section>
        </>}
        second={<>
      <div className="tabs" role="tablist">
        {(["run", "prompt", "history", "data", "deps"] as Tab[]).map((t) => (
          <button key={t} role="tab" aria-selected={tab === t} className={tab === t ? "active" : ""} onClick={() => setTab(t)}>
            {{ run: "Run", prompt: "Prompt", history: "History", data: "Test data", deps: "Dependencies" }[t]}
          </button>
        ))}
      </div>
      {detail && (
        // Kept mounted on the other tabs: a run in flight keeps streaming.
        <div hidden={tab !== "run"}>
        <RunPanel
          scriptId={detail.id}
          canEdit={props.canEdit}
          runTrigger={runTrigger}
          beforeRun={saveBeforeRun}
          busy={saving}
          onFinished={props.onChanged}
          preferred={/^#\s*interpreter:\s*(\S+)/m.exec(detail.content)?.[1]}
          onInterpreter={(id) =>
            setLspInterpreter((old) => {
              if (old === id) return old;
              // The run panel's first pick for a script without a directive is the
              // default the session already analyses with: no second session for it
              // (two at once can exceed the per-user session bound).
              const current = lsp.current?.interpreter ?? "";
              if (old === undefined && (current === "" || current === id)) return old;
              return id;
            })
          }
        />
        </div>
      )}
      {detail && tab === "prompt" && (
        <PromptWindow
          scriptId={detail.id}
          code={() => editor.current?.getValue() ?? saved}
          canEdit={props.canEdit}
          onAccept={(code, id) => {
            editor.current?.setValue(code);
            exchangeRef.current = id;
            setMessage({ text: "Proposal accepted into the editor; save to keep it", kind: "info" });
          }}
        />
      )}
      {detail && tab === "history" && <HistoryPanel scriptId={detail.id} version={detail.version} />}
      {detail && tab === "data" && <TestDataEditor scriptId={detail.id} canEdit={props.canEdit} />}
      {detail && tab === "deps" && (
        <DependenciesPanel
          scriptId={detail.id}
          version={detail.version}
          canEdit={props.canEdit}
          onRelocked={(version) => setDetail({ ...detail, version })}
        />
      )}
        </>}
      />
    </div>
  );
}
