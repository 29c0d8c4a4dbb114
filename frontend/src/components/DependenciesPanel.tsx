import { useEffect, useState } from "react";
import { api } from "../api";
import type { Dependencies } from "../generated";
import { errorMessage } from "../errors";

const STATE_TEXT: Record<Dependencies["state"], string> = {
  none: "no dependencies declared",
  locked: "locked",
  resolving: "resolving with uv…",
  failed: "resolution failed",
};

/** The script's PEP 723 dependencies: what it declares, what the lock pins, and where
 * resolution stands (polled while a save is resolving). */
export function DependenciesPanel(props: {
  scriptId: number;
  version: string;
  canEdit: boolean;
  /** After a re-lock made a new version. */
  onRelocked?: (version: string) => void;
}) {
  const { scriptId, version, canEdit, onRelocked } = props;
  const [deps, setDeps] = useState<Dependencies | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function relock() {
    setBusy(true);
    setNote("resolving with uv…");
    try {
      const r = await api.relock(scriptId);
      setNote(r.changed ? `re-locked as version ${r.version}` : "the lock is up to date");
      if (r.changed) onRelocked?.(r.version);
      const d = await api.script(scriptId);
      setDeps(d.dependencies);
    } catch (e) {
      setNote(errorMessage(e));
    } finally {
      setBusy(false);
    }
  }

  useEffect(() => {
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = () =>
      api
        .script(scriptId)
        .then((d) => {
          if (stop) return;
          setDeps(d.dependencies);
          if (d.dependencies.state === "resolving") timer = setTimeout(load, 1000);
        })
        .catch((e) => !stop && setNote(errorMessage(e)));
    load();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [scriptId, version]);

  if (!deps) return <section className="dependencies" aria-label="Dependencies">{note ?? "loading…"}</section>;
  return (
    <section className="dependencies" aria-label="Dependencies">
      <p>
        State: <strong data-testid="deps-state">{STATE_TEXT[deps.state]}</strong>
        {deps.lock_hash && (
          <span className="muted" title={deps.lock_hash}> · lock sha256 {deps.lock_hash.slice(0, 12)}…</span>
        )}
      </p>
      {deps.error && <p className="error" role="alert">{deps.error}</p>}
      {deps.problem && <p className="error" role="alert">{deps.problem}</p>}
      {deps.requires_python && <p className="muted">requires-python {deps.requires_python}</p>}
      <h4>Declared</h4>
      {deps.declared.length === 0 ? (
        <p className="muted">
          Add packages to the script's <code># /// script</code> block, e.g. <code>dependencies = ["tabulate"]</code>, and save.
        </p>
      ) : (
        <ul aria-label="Declared packages">{deps.declared.map((d) => <li key={d}><code>{d}</code></li>)}</ul>
      )}
      {deps.locked.length > 0 && (
        <>
          <h4>Locked (wheels pinned by sha256)</h4>
          <ul aria-label="Locked packages">{deps.locked.map((p) => <li key={p}><code>{p}</code></li>)}</ul>
        </>
      )}
      {canEdit && deps.declared.length > 0 && (
        <button onClick={relock} disabled={busy || deps.state === "resolving"}>
          Re-lock
        </button>
      )}
      {note && <p className="muted" data-testid="deps-note">{note}</p>}
    </section>
  );
}
