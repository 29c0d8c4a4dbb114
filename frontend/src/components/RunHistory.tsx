import { useState } from "react";
import { Link } from "react-router";
import { api, type RunRecord } from "../api";
import { errorMessage } from "../errors";
import { useScriptRuns } from "../queries";
import { statusLabel } from "./RunOutput";

const PAGE = 10;

/** "2 min ago" for a timestamp; the exact local time goes in the tooltip. */
export function relativeTime(iso: string | null, now = Date.now()): string {
  if (!iso) return "";
  const s = Math.round((now - Date.parse(iso)) / 1000);
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** The CSS class of a status: success, failure (failed, error, a limit), or neutral. */
export function statusClass(status: string): string {
  if (status === "succeeded") return "success";
  if (status === "failed" || status === "error") return "failure";
  return `neutral status-${status}`;
}

/**
 * A script's runs, newest first (who, version, interpreter, status, duration, when), for
 * editors and viewers alike; a click selects a run, whose output is shown below it.
 */
export function RunHistory(props: { scriptId: number; selected: number | null; onSelect: (run: RunRecord) => void }) {
  const first = useScriptRuns(props.scriptId, PAGE);
  const [older, setOlder] = useState<RunRecord[]>([]);
  const [end, setEnd] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const latest = Array.isArray(first.data) ? first.data : [];
  const runs = [...latest, ...older.filter((o) => !latest.some((r) => r.id === o.id))];
  if (!runs.length) return first.isLoading ? null : <p className="muted" data-testid="run-history-empty">No runs yet.</p>;

  async function more() {
    try {
      const page = await api.scriptRuns(props.scriptId, PAGE, runs[runs.length - 1].id);
      setOlder((o) => [...o, ...page]);
      if (page.length < PAGE) setEnd(true);
    } catch (e) {
      setError(errorMessage(e));
    }
  }

  return (
    <div className="run-history">
      <table aria-label="Run history">
        <thead>
          <tr>
            <th>run</th>
            <th>when</th>
            <th>by</th>
            <th>version</th>
            <th>interpreter</th>
            <th>status</th>
            <th>duration</th>
          </tr>
        </thead>
        <tbody>
          {runs.map((r) => (
            <tr key={r.id} className={r.id === props.selected ? "selected" : ""} onClick={() => props.onSelect(r)} aria-selected={r.id === props.selected}>
              <td>
                <Link to={`/runs/${r.id}`} onClick={(e) => e.stopPropagation()} title="This run's own page">
                  {r.id}
                </Link>
              </td>
              <td title={new Date(r.created_at).toLocaleString()}>{relativeTime(r.created_at)}</td>
              <td>{r.requested_by}</td>
              <td>{r.version}</td>
              <td>{r.interpreter}</td>
              <td className={`run-status ${statusClass(r.status)}`}>
                {statusLabel(r.status)}
                {r.limit ? ` (limit: ${r.limit})` : ""}
              </td>
              <td>{r.duration != null ? `${r.duration.toFixed(2)} s` : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {error && <p className="error">{error}</p>}
      {!end && latest.length >= PAGE && (
        <button className="link" onClick={more}>
          Older runs
        </button>
      )}
    </div>
  );
}
