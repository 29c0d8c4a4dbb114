import { useEffect, useRef, useState } from "react";
import { api, type Artifact } from "../api";
import { useInvalidate, useRun } from "../queries";
import { Viewer3D } from "./Viewer3D";

interface Line {
  stream: string;
  line: string;
}

/** stderr in red; the runner's own notices (`scriptorium: …` on stdout) as information. */
function lineClass(l: Line): string {
  if (l.stream === "stderr") return "stderr";
  return l.line.startsWith("scriptorium: ") ? "notice" : "stdout";
}

/** What the user reads for a status: the API's words, with Success/Failure for the two outcomes. */
export function statusLabel(status: string): string {
  return status === "succeeded" ? "Success" : status === "failed" || status === "error" ? "Failure" : status;
}

/** A run's live log (SSE, replayed from the start for a finished run), its result and artifacts. */
export function RunOutput({ runId, onComplete }: { runId: number; onComplete?: (status: string) => void }) {
  const [lines, setLines] = useState<Line[]>([]);
  const [status, setStatus] = useState<string>("queued");
  const [done, setDone] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const logRef = useRef<HTMLPreElement>(null);
  const invalidate = useInvalidate();
  const refreshRuns = invalidate.runs;
  const completed = useRef(onComplete);
  useEffect(() => {
    completed.current = onComplete;
  }, [onComplete]);
  // The record (exit code, duration, artifacts) once the run has completed.
  const { data: fetched } = useRun(runId, done);
  const record = done && fetched && fetched.status === status ? fetched : undefined;

  // One run per mounted component: give it `key={runId}`.
  useEffect(() => {
    const es = new EventSource(api.runEventsUrl(runId));
    es.addEventListener("log", (e) => {
      const d = JSON.parse((e as MessageEvent).data) as Line;
      setLines((ls) => [...ls, d]);
    });
    es.addEventListener("status", (e) => setStatus(JSON.parse((e as MessageEvent).data).status));
    es.addEventListener("complete", (e) => {
      const final = JSON.parse((e as MessageEvent).data).status as string;
      setStatus(final);
      es.close();
      setDone(true);
      refreshRuns();
      completed.current?.(final);
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) setError(`the log of run ${runId} could not be followed; reload the page to try again`);
    };
    return () => es.close();
  }, [runId, refreshRuns]);

  useEffect(() => {
    // Follow the tail of the log.
    const el = logRef.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [lines]);

  // 3D artifacts; where a GLB and an STL share a name (build123d's result), the GLB
  // alone: it keeps part names and colours.
  const all3d = (record?.artifacts ?? []).filter((a: Artifact) => /\.(stl|glb|gltf)$/i.test(a.name));
  const stem = (n: string) => n.replace(/\.[^.]+$/, "");
  const models = all3d
    .filter((a) => !/\.stl$/i.test(a.name) || !all3d.some((b) => /\.(glb|gltf)$/i.test(b.name) && stem(b.name) === stem(a.name)))
    .map((a) => ({ name: a.name, url: api.artifactUrl(runId, a.name) }));
  const label = statusLabel(status);
  // A model that appears after a run comes into view (it sits beside the log when wide).
  const viewerRef = useRef<HTMLDivElement>(null);
  const hasModel = models.length > 0;
  useEffect(() => {
    if (hasModel) viewerRef.current?.scrollIntoView?.({ block: "nearest", behavior: "smooth" });
  }, [hasModel]);

  return (
    <>
      {error && <p className="error" role="alert">{error}</p>}
      <p className={`run-status ${label === "Success" ? "success" : label === "Failure" ? "failure" : ""}`} data-testid="run-status">
        {label}
        {record && record.exit_code !== null && ` · exit code ${record.exit_code}`}
        {record?.limit && ` · limit: ${record.limit}`}
        {record?.duration !== null && record?.duration !== undefined && ` · ${record.duration.toFixed(2)} s`}
        {record?.warm_start && " · warm start"}
        {record?.message && record.status !== "succeeded" && ` · ${record.message}`}
      </p>
      <div className={`output-split${hasModel ? " with-model" : ""}`}>
      <div className="output-log">
      <pre className="log" ref={logRef} data-testid="run-log">
        {lines.map((l, i) => (
          <div key={i} className={lineClass(l)}>
            {l.line}
          </div>
        ))}
      </pre>
      {record && record.artifacts.length > 0 && (
        <div className="artifacts">
          <h3>Artifacts</h3>
          <ul>
            {record.artifacts.map((a) => (
              <li key={a.name}>
                <a href={api.artifactUrl(record.id, a.name)} download>
                  {a.name}
                </a>{" "}
                <span className="muted">
                  {a.content_type}, {a.size} bytes
                </span>
              </li>
            ))}
          </ul>
          {record.artifact_count > record.artifacts.length && (
            <p className="muted">
              and {record.artifact_count - record.artifacts.length} more (GET /api/runs/{record.id}/artifacts pages through them)
            </p>
          )}
          {record.skipped.length > 0 && (
            <p className="muted">Not served: {record.skipped.map((s) => `${s.name} (${s.kind})`).join(", ")}</p>
          )}
        </div>
      )}
      </div>
      {hasModel && (
        <div className="output-model" ref={viewerRef}>
          <Viewer3D models={models} />
        </div>
      )}
      </div>
    </>
  );
}
