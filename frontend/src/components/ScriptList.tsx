import { useState } from "react";
import { Link } from "react-router";
import type { Example, ScriptSummary } from "../api";
import { orderingAfter, orderingDown, orderingUp } from "../queue";
import { statusClass } from "./RunHistory";
import { statusLabel } from "./RunOutput";

/** The tooltip: version, last modified (0.01 s), the full docstring. */
export function tooltip(s: ScriptSummary): string {
  const published = s.published_version ? `published ${s.published_version} on prod` : "not published (draft)";
  return [`version ${s.version}`, published, `last modified ${s.last_modified}`, s.description || "(no docstring)"].join("\n");
}

/** Published (what prod has), draft (never published) or edited since publishing. */
function Badge({ s }: { s: ScriptSummary }) {
  if (!s.published_version) return <span className="badge draft">draft</span>;
  if (s.published_version === s.version) return <span className="badge published">published</span>;
  return (
    <span className="badge published" title={`prod has ${s.published_version}; ${s.version} is not published`}>
      published {s.published_version} · edited
    </span>
  );
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
  /** Gives a script a new ordering number (drag and drop, move up/down). */
  onMove?: (id: number, ordering: string) => void;
  /** Archives (true) or restores a script. */
  onArchive?: (id: number, archived: boolean) => void;
}) {
  const [dragging, setDragging] = useState<number | null>(null);
  const queue = props.scripts.filter((s) => !s.archived);
  const archived = props.scripts.filter((s) => s.archived);
  const canMove = props.canEdit && props.onMove !== undefined;
  const move = (id: number, ordering: string | null) => {
    if (ordering !== null) props.onMove?.(id, ordering);
  };
  return (
    <nav className="script-list" id="script-list" aria-label="Scripts">
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
      <ul aria-label="Queue">
        {queue.map((s) => (
          <li
            key={s.id}
            draggable={canMove}
            className={dragging === s.id ? "dragging" : ""}
            data-script={s.id}
            onDragStart={(e) => {
              setDragging(s.id);
              e.dataTransfer.setData("text/plain", String(s.id));
              e.dataTransfer.effectAllowed = "move";
            }}
            onDragEnd={() => setDragging(null)}
            onDragOver={(e) => {
              if (canMove && dragging !== null && dragging !== s.id) e.preventDefault();
            }}
            onDrop={(e) => {
              e.preventDefault();
              const id = Number(e.dataTransfer.getData("text/plain")) || dragging;
              setDragging(null);
              if (id && id !== s.id) move(id, orderingAfter(props.scripts, id, s.id));
            }}
          >
            <Link
              to={`/scripts/${s.id}`}
              className={s.id === props.selected ? "selected" : ""}
              aria-current={s.id === props.selected ? "page" : undefined}
              title={tooltip(s) + (canMove ? "\n\nDrag onto another script, or Alt+↑/↓, to move it" : "")}
              aria-keyshortcuts={canMove ? "Alt+ArrowUp Alt+ArrowDown" : undefined}
              onKeyDown={(e) => {
                if (!canMove || !e.altKey || (e.key !== "ArrowUp" && e.key !== "ArrowDown")) return;
                e.preventDefault();
                move(s.id, e.key === "ArrowUp" ? orderingUp(props.scripts, s.id) : orderingDown(props.scripts, s.id));
              }}
            >
              <span className="ordering">{s.ordering}</span>
              <span className="name">{s.name || s.filename}</span>
              <span className="row-meta">
                <Badge s={s} /> {result(s)}
              </span>
            </Link>
            {canMove && s.id === props.selected && (
              <div className="row-actions">
                <button onClick={() => move(s.id, orderingUp(props.scripts, s.id))} aria-label={`Move ${s.ordering} up`} title="Alt+↑">
                  ↑
                </button>
                <button onClick={() => move(s.id, orderingDown(props.scripts, s.id))} aria-label={`Move ${s.ordering} down`} title="Alt+↓">
                  ↓
                </button>
                {props.onArchive && (
                  <button onClick={() => props.onArchive?.(s.id, true)} title="Out of the queue and of Run all; history kept">
                    Archive
                  </button>
                )}
              </div>
            )}
          </li>
        ))}
      </ul>
      {archived.length > 0 && (
        <details className="archived">
          <summary>Archived ({archived.length})</summary>
          <ul aria-label="Archived scripts">
            {archived.map((s) => (
              <li key={s.id}>
                <Link to={`/scripts/${s.id}`} title={tooltip(s)}>
                  <span className="ordering">{s.ordering}</span>
                  <span className="name">{s.name || s.filename}</span>
                  <span className="row-meta">
                    <span className="badge archived">archived</span>
                  </span>
                </Link>
                {props.canEdit && props.onArchive && (
                  <div className="row-actions">
                    <button onClick={() => props.onArchive?.(s.id, false)}>Restore</button>
                  </div>
                )}
              </li>
            ))}
          </ul>
        </details>
      )}
    </nav>
  );
}
