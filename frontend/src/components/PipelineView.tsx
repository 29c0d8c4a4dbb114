import { useEffect, useState } from "react";
import { Link, useNavigate } from "react-router";
import { api } from "../api";
import { errorMessage } from "../errors";
import { useInvalidate, usePass } from "../queries";
import { PassList } from "./PassList";

/**
 * Run all: groups by integer part as columns, each script's state. Shows one pass (its
 * URL is `/passes/ID`) or the latest full pass (`/passes/latest`); a running pass is
 * followed live through its event stream.
 */
export function PipelineView({ canEdit, passId = "latest" }: { canEdit: boolean; passId?: number | "latest" }) {
  const { data: pass, error: loadError } = usePass(passId);
  const [onFailure, setOnFailure] = useState<"stop" | "continue">("stop");
  const [error, setError] = useState<string | null>(null);
  const invalidate = useInvalidate();
  const navigate = useNavigate();
  const running = pass?.status === "running" ? pass.id : null;

  // While the pass runs, each event refreshes its record; `complete` ends the stream.
  useEffect(() => {
    if (running === null) return;
    const es = new EventSource(api.passEventsUrl(running));
    es.addEventListener("run", () => invalidate.runs());
    es.addEventListener("complete", () => {
      es.close();
      invalidate.runs();
    });
    return () => es.close();
  }, [running, invalidate]);

  async function runAll() {
    setError(null);
    try {
      const { pass_id } = await api.startPass(onFailure);
      invalidate.runs();
      navigate(`/passes/${pass_id}`);
    } catch (e) {
      setError(errorMessage(e));
    }
  }

  const groups = pass?.groups ?? [];
  const label = pass ? `${passId === "latest" && !["running", "queued"].includes(pass.status) ? "last full pass" : "pass"} ${pass.id}: ${pass.status}` : pass === null ? "no pass yet" : "";

  return (
    <section className="pipeline" aria-label="Pipeline">
      <header>
        <h2>Pipeline</h2>
        {canEdit && (
          <>
            <select value={onFailure} onChange={(e) => setOnFailure(e.target.value as "stop" | "continue")} aria-label="On failure">
              <option value="stop">stop after a failing group</option>
              <option value="continue">continue after failures</option>
            </select>
            <button className="primary" onClick={() => void runAll()}>
              Run all
            </button>
            {running !== null && <button onClick={() => api.cancelPass(running).catch((e) => setError(errorMessage(e)))}>Cancel</button>}
          </>
        )}
        <span className="muted" data-testid="pass-status">
          {label}
        </span>
      </header>
      {(error || loadError) && <p className="error" role="alert">{error ?? errorMessage(loadError)}</p>}
      <div className="lanes">
        {groups.map((g) => (
          <div className="lane" key={g.group} data-testid="pipeline-group">
            <h3>Group {g.group}</h3>
            {g.runs.map((r) => (
              <Link key={r.id} to={`/runs/${r.id}`} className={`cell ${r.status}`} title={`run ${r.id}`}>
                {r.ordering} <span>{r.status}</span>
              </Link>
            ))}
          </div>
        ))}
      </div>
      <h3>Past passes</h3>
      <PassList />
    </section>
  );
}
