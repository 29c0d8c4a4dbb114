import { useCallback, useEffect, useRef, useState } from "react";
import { api, ApiError, type ScriptDetail } from "../api";
import { errorMessage } from "../errors";
import { monaco } from "../monaco";
import { LspClient, type Diagnostic } from "../lsp";
import { RunPanel } from "./RunPanel";
import { PromptWindow } from "./PromptWindow";
import { HistoryPanel } from "./HistoryPanel";
import { TestDataEditor } from "./TestDataEditor";
import { VersionBadge } from "./VersionBadge";

type Tab = "run" | "prompt" | "history" | "data";

export function ScriptEditor(props: {
  scriptId: number;
  canEdit: boolean;
  onChanged: () => void;
  onOpen: (id: number) => void;
  onDirty: (dirty: boolean) => void;
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
  const [runTrigger, setRunTrigger] = useState(0);
  const exchangeRef = useRef<number | undefined>(undefined);
  const saveRef = useRef<() => void>(() => undefined);

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
    });
    editor.current = ed;
    ed.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.KeyS, () => saveRef.current());
    ed.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.Enter, () => setRunTrigger((n) => n + 1));
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
      lsp.current?.dispose();
      setProblems([]);
      const directive = /^#\s*interpreter:\s*(\S+)/m.exec(d.content)?.[1];
      lsp.current = new LspClient(api.lspUrl(directive), model, setProblems, setLspStatus);
    }, (e) => {
      if (!cancelled) setMessage({ text: errorMessage(e), kind: "error" });
    });
    return () => {
      cancelled = true;
      lsp.current?.dispose();
      lsp.current = null;
    };
  }, [props.scriptId]);

  useEffect(() => props.onDirty(dirty), [dirty, props]);
  useEffect(() => {
    const guard = (e: BeforeUnloadEvent) => {
      if (dirty) e.preventDefault();
    };
    window.addEventListener("beforeunload", guard);
    return () => window.removeEventListener("beforeunload", guard);
  }, [dirty]);

  const save = useCallback(async () => {
    if (!detail || !editor.current || !props.canEdit) return;
    try {
      await lsp.current?.format().catch(() => null);
      const content = editor.current.getValue();
      const r = await api.save(detail.id, content, detail.version, exchangeRef.current);
      exchangeRef.current = undefined;
      setDetail({ ...detail, version: r.version, content });
      setSaved(content);
      setDirty(false);
      setConflict(null);
      setMessage({ text: r.changed ? `Saved as version ${r.version}` : `Nothing changed since ${r.version}`, kind: "info" });
      props.onChanged();
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) {
        setConflict(String(e.body.current_version ?? ""));
        setMessage({ text: `${e.message}. Your text is kept in the editor.`, kind: "error" });
      } else {
        setMessage({ text: errorMessage(e), kind: "error" });
      }
    }
  }, [detail, props]);
  useEffect(() => {
    saveRef.current = save;
  }, [save]);

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
    setMessage({ text: `Loaded version ${d.version}`, kind: "info" });
  }

  return (
    <div className="script-editor">
      <div className="toolbar">
        <strong>{detail?.filename}</strong>
        {detail && <VersionBadge version={detail.version} published={detail.published_version} dirty={dirty} />}
        {props.canEdit && (
          <>
            <button className="primary" onClick={save} title="Ctrl+S">Save</button>
            <button onClick={() => detail && act("Major version bumped", async () => {
              const r = await api.bumpMajor(detail.id);
              setDetail({ ...detail, version: r.version });
            })}>Bump Major</button>
            <button onClick={() => detail && act("Forked", async () => props.onOpen((await api.fork(detail.id)).id))}>Fork</button>
            <button onClick={() => detail && act("Published to prod", async () => {
              const r = await api.publish(detail.id);
              setDetail({ ...detail, published_version: r.published_version });
            })}>Publish</button>
          </>
        )}
      </div>
      {message && <p className={message.kind === "error" ? "error" : "info"} role="status">{message.text}</p>}
      {conflict && (
        <p className="conflict">
          Version {conflict} was saved by someone else after you opened this script.{" "}
          <button onClick={reload}>Load {conflict} (discard my text)</button>
        </p>
      )}
      <div className="editor-host" ref={host} data-testid="editor" />
      <section className="problems" aria-label="Problems">
        <span className="muted">{lspStatus}</span>
        {problems.length === 0 ? <span className="muted"> · no problems</span> : (
          <ul>
            {problems.map((p, i) => (
              <li key={i} className={p.severity}>
                <button onClick={() => { editor.current?.revealLineInCenter(p.line); editor.current?.setPosition({ lineNumber: p.line, column: p.column }); }}>
                  {p.line}:{p.column}
                </button>{" "}
                {p.message}
              </li>
            ))}
          </ul>
        )}
      </section>
      <div className="tabs" role="tablist">
        {(["run", "prompt", "history", "data"] as Tab[]).map((t) => (
          <button key={t} role="tab" aria-selected={tab === t} className={tab === t ? "active" : ""} onClick={() => setTab(t)}>
            {{ run: "Run", prompt: "Prompt", history: "History", data: "Test data" }[t]}
          </button>
        ))}
      </div>
      {detail && tab === "run" && (
        <RunPanel
          scriptId={detail.id}
          canEdit={props.canEdit}
          runTrigger={runTrigger}
          onFinished={props.onChanged}
          preferred={/^#\s*interpreter:\s*(\S+)/m.exec(detail.content)?.[1]}
        />
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
    </div>
  );
}
