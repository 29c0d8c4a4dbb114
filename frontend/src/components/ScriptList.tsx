import { Link } from "react-router";
import type { Example, ScriptSummary } from "../api";
import { statusClass } from "./RunHistory";
import { statusLabel } from "./RunOutput";

/** The tooltip: version, last modified (0.01 s), the full docstring. */
export function tooltip(s: ScriptSummary): string {
  return [`version ${s.version}`, `last modified ${s.last_modified}`, s.description || "(no docstring)"].join("\n");
}

function result(s: ScriptSummary) {
  const r = s.last_run;
  if (!r) return <span className="result none">never run</span>;
  // The API's words: only a failed run (or an error) is a red Failure; `cancelled`,
  // `interrupted` and `skipped` say what happened, in grey.
  const label = r.status === "running" || r.status === "queued" ? "Running" : statusLabel(r.status);
  const cls = label === "Running" ? "running" : statusClass(r.status);
  return (
    <span className={`result ${cls}`} title={r.status}>
      {label} {r.ended_at ? r.ended_at.replace("T", " ").replace("Z", "") : ""}
    </span>
  );
}

export function ScriptList(props: {
  scripts: ScriptSummary[];
  selected: number | null;
  canEdit: boolean;
  onCreate: () => void;
  /** Shipped examples an editor can add (with their test data). */
  examples?: Example[];
  onCreateFromExample?: (id: string) => void;
}) {
  return (
    <nav className="script-list" aria-label="Scripts">
      <header>
        <h2>Scripts</h2>
        {props.canEdit && (
          <button className="add" onClick={props.onCreate} title="New script from the template" aria-label="New script">
            +
          </button>
        )}
      </header>
      {props.canEdit && props.examples && props.examples.length > 0 && (
        <details className="examples">
          <summary>Add an example…</summary>
          <ul aria-label="Examples">
            {props.examples.map((e) => (
              <li key={e.id}>
                <button
                  onClick={(ev) => {
                    (ev.currentTarget.closest("details") as HTMLDetailsElement | null)?.removeAttribute("open");
                    props.onCreateFromExample?.(e.id);
                  }}
                  title={e.available ? e.summary : `${e.summary}\n\nNot runnable here: ${e.problem}`}
                >
                  <span className="name">{e.name}</span>
                  <span className="muted">
                    {e.interpreter ?? "default interpreter"}
                    {!e.available && " (not installed)"}
                  </span>
                </button>
              </li>
            ))}
          </ul>
        </details>
      )}
      <ul>
        {props.scripts.map((s) => (
          <li key={s.id}>
            <Link
              to={`/scripts/${s.id}`}
              className={s.id === props.selected ? "selected" : ""}
              aria-current={s.id === props.selected ? "page" : undefined}
              title={tooltip(s)}
            >
              <span className="ordering">{s.ordering}</span>
              <span className="name">{s.name || s.filename}</span>
              {result(s)}
            </Link>
          </li>
        ))}
      </ul>
    </nav>
  );
}
