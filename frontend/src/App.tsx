import { useState } from "react";
import { NavLink, Outlet, useMatch, useNavigate, useOutletContext } from "react-router";
import { useQueryClient } from "@tanstack/react-query";
import { api, type Me } from "./api";
import { errorMessage } from "./errors";
import { keys, useExamples, useInvalidate, useMe, useScripts } from "./queries";
import { Login } from "./components/Login";
import { ScriptList } from "./components/ScriptList";
import { useRefreshOnNotices } from "./components/Team";
import { useLayout } from "./layout";

/** What every screen below the shell gets from it. */
export interface Session {
  me: Me;
  canEdit: boolean;
}

export function useSession(): Session {
  return useOutletContext<Session>();
}

/** The shell: sign-in when nobody is, else the header, the script list and the screen of the URL. */
export function App() {
  const client = useQueryClient();
  const { data: me, error: meError } = useMe();
  if (meError) return <p className="error" role="alert">{errorMessage(meError)}</p>;
  if (me === undefined) return null;
  if (me === null) return <Login onLogin={(m) => client.setQueryData(keys.me, m)} />;
  return <Shell me={me} />;
}

function Shell({ me }: { me: Me }) {
  const canEdit = me.roles.includes("editor");
  const [error, setError] = useState<string | null>(null);
  const navigate = useNavigate();
  const invalidate = useInvalidate();
  useRefreshOnNotices(invalidate);
  const scripts = useScripts();
  const examples = useExamples(canEdit);
  const selected = Number(useMatch("/scripts/:id")?.params.id) || null;
  const onPasses = useMatch({ path: "/passes", end: false }) !== null;
  const [layout, setLayout] = useLayout(me.username);

  async function created(make: () => Promise<{ id: number }>) {
    setError(null);
    try {
      const s = await make();
      invalidate.scripts();
      navigate(`/scripts/${s.id}`);
    } catch (e) {
      setError(errorMessage(e));
    }
  }

  /** A queue change (move, archive): the list shows the server's answer, or the error. */
  async function change(make: () => Promise<unknown>) {
    setError(null);
    try {
      await make();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      invalidate.scripts();
    }
  }

  async function signOut() {
    // Leave the screen first: unsaved text asks, and staying keeps it (and the session).
    await navigate("/scripts");
    if (window.location.pathname !== "/scripts") return;
    try {
      await api.logout();
    } finally {
      await invalidate.session();
    }
  }

  const shown = error ?? (scripts.error ? errorMessage(scripts.error) : null);
  const session: Session = { me, canEdit };
  return (
    <div className="app">
      <header className="top">
        <button
          className="sidebar-toggle"
          onClick={() => setLayout({ sidebarHidden: !layout.sidebarHidden })}
          aria-expanded={!layout.sidebarHidden}
          aria-controls="script-list"
          title={layout.sidebarHidden ? "Show the script list" : "Hide the script list"}
        >
          ☰<span className="sr-only"> Script list</span>
        </button>
        <h1>Scriptorium</h1>
        <nav aria-label="Screens">
          <NavLink to="/scripts">Scripts</NavLink>
          <NavLink to="/passes/latest" className={() => (onPasses ? "active" : "")}>
            Pipeline
          </NavLink>
          <NavLink to="/tokens">API tokens</NavLink>
        </nav>
        <span className="user" data-testid="user">
          {me.username} ({me.roles.join(", ")})
        </span>
        <button onClick={() => void signOut()}>Sign out</button>
      </header>
      {shown && <p className="error" role="alert">{shown}</p>}
      <main>
        {!layout.sidebarHidden && <ScriptList
          scripts={scripts.data ?? []}
          selected={selected}
          canEdit={canEdit}
          onCreate={() => void created(() => api.create())}
          examples={examples.data ?? []}
          onCreateFromExample={(id) => void created(() => api.fromExample(id))}
          onMove={(id, ordering) => void change(() => api.setOrdering(id, ordering))}
          onArchive={(id, archived) => void change(() => api.setArchived(id, archived))}
        />}
        <div className="workspace">
          <Outlet context={session} />
        </div>
      </main>
    </div>
  );
}
