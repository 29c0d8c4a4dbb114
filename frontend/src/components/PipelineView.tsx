import { useEffect, useState } from "react";
import { useNavigate } from "react-router";
import { api } from "../api";
import { errorMessage } from "../errors";
import { useInvalidate, usePass, useScripts } from "../queries";
import { PassList } from "./PassList";
import { PassPreview } from "./PassPreview";
import { PassTimeline } from "./PassTimeline";

/**
 * Run all: a preview of what the next pass runs (groups in order), and one pass (its URL
 * is `/passes/ID`, or the latest full pass at `/passes/latest`) as a timeline, one lane
 * per group; a running pass is followed live through its event stream.
 */
export function PipelineView({ canEdit, passId = "latest" }: { canEdit: boolean; passId?: number | "latest" }) {
  const { data: pass, error: loadError } = usePass(passId);
  const [onFailure, setOnFailure] = useState<"stop" | "continue">("stop");
  const [error, setError] = useState<string | null>(null);
  const invalidate = useInvalidate();
  const navigate = useNavigate();
  const running = pass?.status === "running" ? pass.id : null;
  const scripts = useScripts().data ?? [];

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
      {pass && groups.length > 0 && (
        <>
          <h3>{running !== null ? "Running now" : `Pass ${pass.id}`}</h3>
          <PassTimeline pass={pass} scripts={scripts} />
        </>
      )}
      {running === null && <PassPreview scripts={scripts} />}
      <h3>Past passes</h3>
      <PassList />
    </section>
  );
}
