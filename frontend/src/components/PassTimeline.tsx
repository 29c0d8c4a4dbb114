import { useEffect, useState } from "react";
import { Link } from "react-router";
import type { PassRecord, RunRecord, ScriptSummary } from "../api";
import { statusLabel } from "./RunOutput";

/** Where a run's bar starts and how long it is, in seconds from the pass's start. */
export function barOf(run: RunRecord, origin: number, now: number): { start: number; length: number } | null {
  if (!run.started_at) return null;
  const start = (Date.parse(run.started_at) - origin) / 1000;
  const end = run.ended_at ? Date.parse(run.ended_at) : now;
  return { start: Math.max(0, start), length: Math.max(0, (end - Date.parse(run.started_at)) / 1000) };
}

/** The time the pass started (its first run's start when the pass has none). */
function originOf(pass: PassRecord): number | null {
  const starts = pass.groups.flatMap((g) => g.runs.map((r) => r.started_at)).filter((s): s is string => !!s);
  const first = pass.started_at ?? starts.sort()[0];
  return first ? Date.parse(first) : null;
}

/**
 * The pass as a Gantt chart: one lane per group, one bar per run placed at its start
 * and as long as it ran (a running bar grows), labelled with the script and its duration;
 * a bar opens that run's log.
 */
export function PassTimeline({ pass, scripts }: { pass: PassRecord; scripts: ScriptSummary[] }) {
  const live = pass.status === "running" || pass.status === "queued";
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!live) return;
    const t = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(t);
  }, [live]);
  const origin = originOf(pass);
  const end = live ? now : pass.ended_at ? Date.parse(pass.ended_at) : now;
  const span = origin === null ? 1 : Math.max(1, (end - origin) / 1000);
  const name = (id: number) => {
    const s = scripts.find((x) => x.id === id);
    return s ? s.name || s.filename : `script ${id}`;
  };
  return (
    <section className="timeline" aria-label="Pass timeline">
      <div className="timeline-scale muted">
        <span>0 s</span>
        <span>{span.toFixed(1)} s</span>
      </div>
      {pass.groups.map((g) => (
        <div className="timeline-lane" key={g.group} data-testid="pipeline-group" role="group" aria-label={`Group ${g.group}`}>
          <h4>Group {g.group}</h4>
          <div className="timeline-track">
            {g.runs.map((r) => {
              const bar = origin === null ? null : barOf(r, origin, now);
              const left = bar ? (bar.start / span) * 100 : 0;
              const width = bar ? Math.max(0.5, (bar.length / span) * 100) : 0;
              const seconds = r.duration ?? bar?.length ?? null;
              return (
                <Link
                  key={r.id}
                  to={`/runs/${r.id}`}
                  className={`bar ${r.status}${bar ? "" : " waiting"}`}
                  style={bar ? { marginLeft: `${Math.min(left, 99)}%`, width: `${Math.min(width, 100 - Math.min(left, 99))}%` } : undefined}
                  title={`${r.ordering} ${name(r.script_id)} · run ${r.id} · ${statusLabel(r.status)}${seconds !== null ? ` · ${seconds.toFixed(2)} s` : ""}`}
                  data-testid="timeline-bar"
                >
                  <span className="bar-label">
                    {r.ordering} {name(r.script_id)} · {statusLabel(r.status)}
                    {seconds !== null && ` · ${seconds.toFixed(1)} s`}
                  </span>
                </Link>
              );
            })}
          </div>
        </div>
      ))}
    </section>
  );
}
