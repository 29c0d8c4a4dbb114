import { useCallback, useEffect, useState } from "react";
import { api, ApiError, type Example, type Me, type ScriptSummary } from "./api";
import { Login } from "./components/Login";
import { ScriptList } from "./components/ScriptList";
import { ScriptEditor } from "./components/ScriptEditor";
import { PipelineView } from "./components/PipelineView";
import { TokensPanel } from "./components/TokensPanel";

export function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [scripts, setScripts] = useState<ScriptSummary[]>([]);
  const [selected, setSelected] = useState<number | null>(null);
  const [view, setView] = useState<"scripts" | "pipeline" | "tokens">("scripts");
  const [dirty, setDirty] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [examples, setExamples] = useState<Example[]>([]);

  useEffect(() => {
    api.me().then(setMe, () => setMe(null));
  }, []);

  const refresh = useCallback(() => {
    api.scripts().then(setScripts, (e) => setError(e instanceof ApiError ? e.message : String(e)));
  }, []);

  // The list follows runs that finish anywhere: refresh now and every few seconds.
  useEffect(() => {
    if (!me) return;
    refresh();
    api.examples().then(setExamples, () => setExamples([]));
    const t = setInterval(refresh, 5000);
    return () => clearInterval(t);
  }, [me, refresh]);

  if (me === undefined) return null;
  if (me === null) return <Login onLogin={setMe} />;
  const canEdit = me.roles.includes("editor");

  function open(id: number) {
    if (dirty && !confirm("You have unsaved changes. Leave them?")) return;
    setSelected(id);
    setView("scripts");
  }

  async function create() {
    try {
      const s = await api.create();
      refresh();
      open(s.id);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    }
  }

  async function createFromExample(id: string) {
    try {
      const s = await api.fromExample(id);
      refresh();
      open(s.id);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    }
  }

  return (
    <div className="app">
      <header className="top">
        <h1>Scriptorium</h1>
        <nav>
          <button className={view === "scripts" ? "active" : ""} onClick={() => setView("scripts")}>Scripts</button>
          <button className={view === "pipeline" ? "active" : ""} onClick={() => setView("pipeline")}>Pipeline</button>
          <button className={view === "tokens" ? "active" : ""} onClick={() => setView("tokens")}>API tokens</button>
        </nav>
        <span className="user" data-testid="user">
          {me.username} ({me.roles.join(", ")})
        </span>
        <button onClick={() => api.logout().then(() => setMe(null))}>Sign out</button>
      </header>
      {error && <p className="error" role="alert">{error}</p>}
      <main>
        <ScriptList
          scripts={scripts}
          selected={selected}
          canEdit={canEdit}
          onSelect={open}
          onCreate={create}
          examples={examples}
          onCreateFromExample={createFromExample}
        />
        <div className="workspace">
          {view === "tokens" ? (
            <TokensPanel username={me.username} />
          ) : view === "pipeline" ? (
            <PipelineView canEdit={canEdit} onFinished={refresh} />
          ) : selected !== null ? (
            <ScriptEditor key={selected} scriptId={selected} canEdit={canEdit} onChanged={refresh} onOpen={open} onDirty={setDirty} />
          ) : (
            <p className="muted empty">Select a script{canEdit ? ", or + to start a new one" : ""}.</p>
          )}
        </div>
      </main>
    </div>
  );
}
