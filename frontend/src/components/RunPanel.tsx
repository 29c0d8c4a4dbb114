import { useEffect, useEffectEvent, useState } from "react";
import { Link } from "react-router";
import { api, type Interpreter } from "../api";
import { errorMessage } from "../errors";
import { keys, useInterpreters, useInvalidate, useScriptRuns } from "../queries";
import { useQueryClient } from "@tanstack/react-query";
import { RunOutput } from "./RunOutput";
import { RunHistory } from "./RunHistory";

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
  /** Called when a run this panel started has completed (the list's last result is refreshed anyway). */
  onFinished?: () => void;
  /** The interpreter the script names in a `# interpreter: ID` line. */
  preferred?: string;
  /** Told the chosen interpreter (the editor's language server follows it). */
  onInterpreter?: (id: string) => void;
  /** Runs before a run starts (the editor saves unsaved edits); false stops the run. */
  beforeRun?: () => Promise<boolean>;
  /** Something else is in flight (a save): Run waits. */
  busy?: boolean;
}) {
  const { data } = useInterpreters();
  const client = useQueryClient();
  const invalidate = useInvalidate();
  const interpreters = (data?.interpreters ?? []).filter((i) => i.available);
  const fallback = interpreters.find((i) => i.id === props.preferred) ?? interpreters.find((i) => i.id === data?.default) ?? interpreters[0];
  const [chosen, setChosen] = useState<string>("");
  const [chosenBackend, setChosenBackend] = useState<string>("");
  const interp = chosen || fallback?.id || "";
  const current = interpreters.find((i) => i.id === interp);
  // The editor's language server follows the chosen interpreter.
  const onInterpreter = props.onInterpreter;
  useEffect(() => {
    if (interp) onInterpreter?.(interp);
  }, [interp, onInterpreter]);
  const backend = chosenBackend || current?.default_backend || "";
  const [runId, setRunId] = useState<number | null>(null);
  // A run picked in the history; otherwise the run started here, else the latest one.
  const [picked, setPicked] = useState<number | null>(null);
  const history = useScriptRuns(props.scriptId, 10);
  const shown = picked ?? runId ?? (Array.isArray(history.data) ? history.data[0]?.id : undefined) ?? null;
  const [status, setStatus] = useState<string>("");
  const [error, setError] = useState<string | null>(null);

  // While a warm spare is being made, follow its state.
  const warmState = current?.warm_state?.state;
  useEffect(() => {
    if (warmState !== "warming" && warmState !== "idle") return;
    const t = setInterval(() => void client.invalidateQueries({ queryKey: keys.interpreters }), 2000);
    return () => clearInterval(t);
  }, [warmState, client]);

  const inFlight = status === "starting" || status === "running";
  // The run started here, while another run's output is shown: follow its end by polling.
  const followed = status === "running" && runId !== null && shown !== runId ? runId : null;
  useEffect(() => {
    if (followed === null) return;
    const t = setInterval(() => {
      api.run(followed).then((r) => {
        if (r.status !== "queued" && r.status !== "running") setStatus("done");
      }, () => setStatus("done"));
    }, 1000);
    return () => clearInterval(t);
  }, [followed]);
  async function start() {
    if (inFlight || props.busy) return;
    setError(null);
    setStatus("starting");
    try {
      if (props.beforeRun && !(await props.beforeRun())) {
        setStatus("");
        setError("Not run: the edits could not be saved (see the message above); the saved version was not run either");
        return;
      }
      const { run_id } = await api.startRun(props.scriptId, interp || undefined, backend || undefined);
      setPicked(null);
      setRunId(run_id);
      setStatus("running");
      invalidate.runs();
    } catch (e) {
      setStatus("");
      setError(errorMessage(e));
    }
  }

  // Ctrl+Enter in the editor bumps the trigger; only a change of it starts a run.
  const onTrigger = useEffectEvent(() => {
    if (props.canEdit) void start();
  });
  useEffect(() => {
    // A command from the editor, not state derived from props: it starts a run, whose
    // first state updates are synchronous.
    // eslint-disable-next-line react-hooks/set-state-in-effect
    if (props.runTrigger > 0) onTrigger();
  }, [props.runTrigger]);

  return (
    <section className="run-panel" aria-label="Run">
      <div className="run-controls">
        <label>
          Interpreter
          <select value={interp} onChange={(e) => {
            setChosen(e.target.value);
            setChosenBackend("");
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
          <select value={backend} onChange={(e) => setChosenBackend(e.target.value)}>
            {(current?.backends ?? []).map((b) => (
              <option key={b} value={b}>
                {b}
              </option>
            ))}
          </select>
        </label>
        {props.canEdit && (
          <button className="primary" onClick={() => void start()} disabled={!interp || inFlight || props.busy} title="Ctrl+Enter (unsaved edits are saved first)">
            Run &amp; Stream
          </button>
        )}
        {props.canEdit && runId !== null && status === "running" && (
          <button onClick={() => api.cancelRun(runId).catch((e) => setError(errorMessage(e)))}>Cancel</button>
        )}
        {runId !== null && (
          <Link to={`/runs/${runId}`} title="This run's own page, to reload or share">
            run {runId}
          </Link>
        )}
      </div>
      {current && backend && <p className="hint">Protections ({backend}): {protections(backend)}</p>}
      {current?.warm_state && backend === current.default_backend && (
        <p className="hint" data-testid="warm-state">
          Warm start ({current.warm?.join(", ")} imported ahead): {warmText(current.warm_state)}
        </p>
      )}
      {error && <p className="error" role="alert">{error}</p>}
      {status === "starting" && <p className="run-status" data-testid="run-status">queued</p>}
      <RunHistory scriptId={props.scriptId} selected={shown} onSelect={(r) => setPicked(r.id)} />
      {shown !== null && (
        <RunOutput
          key={shown}
          runId={shown}
          onComplete={() => {
            if (shown !== runId) return;
            setStatus("done");
            props.onFinished?.();
          }}
        />
      )}
    </section>
  );
}
