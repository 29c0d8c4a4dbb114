// The screens and their URLs. Each screen, script, run and pass has its own address, so
// a reload, the back button and a shared link all land on the same thing. The server
// answers these paths with index.html (src/frontend.rs).

import { useEffect, useState } from "react";
import { Link, Navigate, useBlocker, useNavigate, useParams, type RouteObject } from "react-router";
import { App, useSession } from "./App";
import { useInvalidate, useRun } from "./queries";
import { errorMessage } from "./errors";
import { ScriptEditor } from "./components/ScriptEditor";
import { PipelineView } from "./components/PipelineView";
import { TokensPanel } from "./components/TokensPanel";
import { RunOutput } from "./components/RunOutput";

export const paths = {
  scripts: "/scripts",
  script: (id: number) => `/scripts/${id}`,
  run: (id: number) => `/runs/${id}`,
  pass: (id: number | "latest") => `/passes/${id}`,
  tokens: "/tokens",
};

export const routes: RouteObject[] = [
  {
    path: "/",
    element: <App />,
    children: [
      { index: true, element: <Navigate to={paths.scripts} replace /> },
      { path: "scripts", element: <NoScript /> },
      { path: "scripts/:id", element: <ScriptScreen /> },
      { path: "runs/:id", element: <RunScreen /> },
      { path: "passes/latest", element: <PassScreen /> },
      { path: "passes/:id", element: <PassScreen /> },
      { path: "pipeline", element: <Navigate to={paths.pass("latest")} replace /> },
      { path: "tokens", element: <TokensScreen /> },
      { path: "*", element: <NotFound what="This page" /> },
    ],
  },
];

/** A positive whole number from a path segment, or null. */
function idParam(raw: string | undefined): number | null {
  return raw && /^[1-9][0-9]{0,15}$/.test(raw) ? Number(raw) : null;
}

function NotFound({ what }: { what: string }) {
  return (
    <div className="not-found" role="alert">
      <p>{what} does not exist.</p>
      <Link to={paths.scripts}>Back to the scripts</Link>
    </div>
  );
}

function NoScript() {
  const { canEdit } = useSession();
  return <p className="muted empty">Select a script{canEdit ? ", or + to start a new one" : ""}.</p>;
}

/** `/scripts/:id`: the editor. Leaving it with unsaved text asks first (links and back alike). */
function ScriptScreen() {
  const raw = useParams().id;
  const id = idParam(raw);
  const { canEdit } = useSession();
  const navigate = useNavigate();
  const invalidate = useInvalidate();
  const [dirty, setDirty] = useState(false);
  const blocker = useBlocker(({ currentLocation, nextLocation }) => dirty && currentLocation.pathname !== nextLocation.pathname);
  useEffect(() => {
    if (blocker.state !== "blocked") return;
    if (confirm("You have unsaved changes. Leave them?")) blocker.proceed();
    else blocker.reset();
  }, [blocker]);
  if (id === null) return <NotFound what={`Script “${raw}”`} />;
  return (
    <ScriptEditor
      key={id}
      scriptId={id}
      canEdit={canEdit}
      onChanged={invalidate.scripts}
      onOpen={(other) => navigate(paths.script(other))}
      onDirty={setDirty}
    />
  );
}

/** `/runs/:id`: one run's log, result and artifacts, for anyone who may read. */
function RunScreen() {
  const raw = useParams().id;
  const id = idParam(raw);
  const { data: run, error } = useRun(id ?? 0, id !== null);
  if (id === null) return <NotFound what={`Run “${raw}”`} />;
  return (
    <section className="run-page" aria-label={`Run ${id}`}>
      <header>
        <h2>Run {id}</h2>
        {error && <p className="error" role="alert">{errorMessage(error)}</p>}
        {run && (
          <p className="run-meta muted">
            <Link to={paths.script(run.script_id)}>script {run.script_id}</Link>
            <span>version {run.version}</span>
            <span>
              {run.interpreter} {run.interpreter_version} · {run.backend}
            </span>
            <span>by {run.requested_by}</span>
            {run.pass_id !== null && <Link to={paths.pass(run.pass_id)}>pass {run.pass_id}</Link>}
          </p>
        )}
      </header>
      {!error && <RunOutput key={id} runId={id} />}
    </section>
  );
}

/** `/passes/latest` and `/passes/:id`: the pipeline. */
function PassScreen() {
  const raw = useParams().id;
  const { canEdit } = useSession();
  if (raw === undefined) return <PipelineView canEdit={canEdit} passId="latest" />;
  const id = idParam(raw);
  if (id === null) return <NotFound what={`Pass “${raw}”`} />;
  return <PipelineView key={id} canEdit={canEdit} passId={id} />;
}

function TokensScreen() {
  const { me } = useSession();
  return <TokensPanel username={me.username} />;
}
