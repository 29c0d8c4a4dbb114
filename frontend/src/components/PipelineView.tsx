import { useEffect, useRef, useState } from "react";
import { api, ApiError, type PassRecord } from "../api";

interface Cell {
  run_id: number;
  ordering: string;
  group: number;
  status: string;
}

/** Run all: groups by integer part as columns, each script's live state. */
export function PipelineView({ canEdit, onFinished }: { canEdit: boolean; onFinished: () => void }) {
  const [passId, setPassId] = useState<number | null>(null);
  const [cells, setCells] = useState<Cell[]>([]);
  const [status, setStatus] = useState("");
  const [latest, setLatest] = useState<PassRecord | null>(null);
  const [onFailure, setOnFailure] = useState<"stop" | "continue">("stop");
  const [error, setError] = useState<string | null>(null);
  const source = useRef<EventSource | null>(null);

  useEffect(() => {
    api.latestPass().then(setLatest, () => setLatest(null));
    return () => source.current?.close();
  }, []);

  async function runAll() {
    setError(null);
    try {
      const { pass_id } = await api.startPass(onFailure);
      setPassId(pass_id);
      setCells([]);
      setStatus("running");
      source.current?.close();
      const es = new EventSource(api.passEventsUrl(pass_id));
      source.current = es;
      es.addEventListener("status", (e) => {
        const d = JSON.parse((e as MessageEvent).data);
        if (d.runs) setCells(d.runs.map((r: Cell) => ({ ...r, status: "queued" })));
      });
      es.addEventListener("run", (e) => {
        const d = JSON.parse((e as MessageEvent).data);
        setCells((cs) => cs.map((c) => (c.run_id === d.run_id ? { ...c, status: d.status } : c)));
      });
      es.addEventListener("complete", async (e) => {
        setStatus(JSON.parse((e as MessageEvent).data).status);
        es.close();
        const p = await api.pass(pass_id);
        setCells(p.groups.flatMap((g) => g.runs.map((r) => ({ run_id: r.id, ordering: r.ordering ?? "", group: g.group, status: r.status }))));
        api.latestPass().then(setLatest, () => undefined);
        onFinished();
      });
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    }
  }

  const shown: Cell[] = cells.length
    ? cells
    : (latest?.groups.flatMap((g) => g.runs.map((r) => ({ run_id: r.id, ordering: r.ordering ?? "", group: g.group, status: r.status }))) ?? []);
  const groups = [...new Set(shown.map((c) => c.group))].sort((a, b) => a - b);

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
            <button className="primary" onClick={runAll}>
              Run all
            </button>
            {passId !== null && status === "running" && <button onClick={() => api.cancelPass(passId)}>Cancel</button>}
          </>
        )}
        <span className="muted" data-testid="pass-status">
          {cells.length ? `pass ${passId}: ${status}` : latest ? `last full pass ${latest.id}: ${latest.status}` : "no pass yet"}
        </span>
      </header>
      {error && <p className="error" role="alert">{error}</p>}
      <div className="lanes">
        {groups.map((g) => (
          <div className="lane" key={g} data-testid="pipeline-group">
            <h3>Group {g}</h3>
            {shown
              .filter((c) => c.group === g)
              .map((c) => (
                <div key={c.run_id} className={`cell ${c.status}`} title={`run ${c.run_id}`}>
                  {c.ordering} <span>{c.status}</span>
                </div>
              ))}
          </div>
        ))}
      </div>
    </section>
  );
}
