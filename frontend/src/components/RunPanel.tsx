import { useEffect, useRef, useState } from "react";
import { api, ApiError, type Artifact, type Interpreter, type RunRecord } from "../api";
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

function protections(backend: string): string {
  switch (backend) {
    case "linux":
      return "user, mount, pid, net, ipc and uts namespaces; Landlock; rlimits; an unprivileged uid; no network";
    case "wasi":
      return "WebAssembly in wasmtime: sees only the run directory, no sockets, bounded memory and time";
    case "windows":
      return "a job object: memory, process count, CPU time, UI restrictions";
    default:
      return backend;
  }
}

function warmText(w: NonNullable<Interpreter["warm_state"]>): string {
  switch (w.state) {
    case "ready":
      return "ready, the next run starts at once";
    case "warming":
      return "importing now; a run waits for it rather than importing again";
    case "failed":
      return `not available (${w.problem}); runs start cold`;
    default:
      return "none yet; made after the first run";
  }
}

/** Interpreter and backend choice, Run & Stream with a live log, cancel, result, artifacts. */
export function RunPanel(props: {
  scriptId: number;
  canEdit: boolean;
  runTrigger: number;
  onFinished: () => void;
  /** The interpreter the script names in a `# interpreter: ID` line. */
  preferred?: string;
}) {
  const [interpreters, setInterpreters] = useState<Interpreter[]>([]);
  const [interp, setInterp] = useState<string>("");
  const [backend, setBackend] = useState<string>("");
  const [runId, setRunId] = useState<number | null>(null);
  const [lines, setLines] = useState<Line[]>([]);
  const [status, setStatus] = useState<string>("");
  const [record, setRecord] = useState<RunRecord | null>(null);
  const [error, setError] = useState<string | null>(null);
  const logRef = useRef<HTMLPreElement>(null);
  const source = useRef<EventSource | null>(null);

  useEffect(() => {
    api.interpreters().then((r) => {
      const usable = r.interpreters.filter((i) => i.available);
      setInterpreters(usable);
      const d = usable.find((i) => i.id === props.preferred) ?? usable.find((i) => i.id === r.default) ?? usable[0];
      if (d) {
        setInterp(d.id);
        setBackend(d.default_backend);
      }
    });
    return () => source.current?.close();
  }, []);

  useEffect(() => {
    if (props.runTrigger > 0 && props.canEdit) start();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.runTrigger]);

  useEffect(() => {
    // Follow the tail of the log.
    const el = logRef.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [lines]);

  const current = interpreters.find((i) => i.id === interp);

  // While a warm spare is being made, follow its state.
  const warmState = current?.warm_state?.state;
  useEffect(() => {
    if (warmState !== "warming" && warmState !== "idle") return;
    const t = setInterval(() => {
      api.interpreters().then((r) => setInterpreters(r.interpreters.filter((i) => i.available)), () => {});
    }, 2000);
    return () => clearInterval(t);
  }, [warmState]);

  function follow(id: number) {
    source.current?.close();
    const es = new EventSource(api.runEventsUrl(id));
    source.current = es;
    es.addEventListener("log", (e) => {
      const d = JSON.parse((e as MessageEvent).data) as Line;
      setLines((ls) => [...ls, d]);
    });
    es.addEventListener("status", (e) => setStatus(JSON.parse((e as MessageEvent).data).status));
    es.addEventListener("complete", async (e) => {
      const d = JSON.parse((e as MessageEvent).data);
      setStatus(d.status);
      es.close();
      setRecord(await api.run(id));
      props.onFinished();
    });
  }

  async function start() {
    setError(null);
    setLines([]);
    setRecord(null);
    setStatus("queued");
    try {
      const { run_id } = await api.startRun(props.scriptId, interp || undefined, backend || undefined);
      setRunId(run_id);
      follow(run_id);
    } catch (e) {
      setStatus("");
      setError(e instanceof ApiError ? e.message : String(e));
    }
  }

  // 3D artifacts; where a GLB and an STL share a name (build123d's result), the GLB
  // alone: it keeps part names and colours.
  const all3d = (record?.artifacts ?? []).filter((a: Artifact) => /\.(stl|glb|gltf)$/i.test(a.name));
  const stem = (n: string) => n.replace(/\.[^.]+$/, "");
  const models = all3d
    .filter((a) => !/\.stl$/i.test(a.name) || !all3d.some((b) => /\.(glb|gltf)$/i.test(b.name) && stem(b.name) === stem(a.name)))
    .map((a) => ({ name: a.name, url: api.artifactUrl(record!.id, a.name) }));
  const label = status === "succeeded" ? "Success" : status === "failed" || status === "error" ? "Failure" : status;

  return (
    <section className="run-panel" aria-label="Run">
      <div className="run-controls">
        <label>
          Interpreter
          <select value={interp} onChange={(e) => {
            setInterp(e.target.value);
            const i = interpreters.find((x) => x.id === e.target.value);
            if (i) setBackend(i.default_backend);
          }}>
            {interpreters.map((i) => (
              <option key={i.id} value={i.id}>
                {i.id} — {i.implementation} {i.version}
              </option>
            ))}
          </select>
        </label>
        <label>
          Sandbox
          <select value={backend} onChange={(e) => setBackend(e.target.value)}>
            {(current?.backends ?? []).map((b) => (
              <option key={b} value={b}>
                {b}
              </option>
            ))}
          </select>
        </label>
        {props.canEdit && (
          <button className="primary" onClick={start} disabled={!interp} title="Ctrl+Enter">
            Run &amp; Stream
          </button>
        )}
        {props.canEdit && runId !== null && (status === "running" || status === "queued") && (
          <button onClick={() => api.cancelRun(runId)}>Cancel</button>
        )}
      </div>
      {current && backend && <p className="hint">Protections ({backend}): {protections(backend)}</p>}
      {current?.warm_state && backend === current.default_backend && (
        <p className="hint" data-testid="warm-state">
          Warm start ({current.warm?.join(", ")} imported ahead): {warmText(current.warm_state)}
        </p>
      )}
      {error && <p className="error" role="alert">{error}</p>}
      {status && (
        <p className={`run-status ${label === "Success" ? "success" : label === "Failure" ? "failure" : ""}`} data-testid="run-status">
          {label}
          {record && record.exit_code !== null && ` · exit code ${record.exit_code}`}
          {record?.limit && ` · limit: ${record.limit}`}
          {record?.duration !== null && record?.duration !== undefined && ` · ${record.duration.toFixed(2)} s`}
          {record?.warm_start && " · warm start"}
          {record?.message && record.status !== "succeeded" && ` · ${record.message}`}
        </p>
      )}
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
          {(record.artifact_count ?? 0) > record.artifacts.length && (
            <p className="muted">
              and {(record.artifact_count ?? 0) - record.artifacts.length} more (GET /api/runs/{record.id}/artifacts pages
              through them)
            </p>
          )}
          {(record.skipped ?? []).length > 0 && (
            <p className="muted">
              Not served: {(record.skipped ?? []).map((s) => `${s.name} (${s.kind})`).join(", ")}
            </p>
          )}
        </div>
      )}
      {models.length > 0 && <Viewer3D models={models} />}
    </section>
  );
}
