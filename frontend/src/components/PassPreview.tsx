import { Link } from "react-router";
import type { ScriptSummary } from "../api";

/** Why a script is or is not in the next pass (archived scripts are counted apart). */
export type PreviewState = "runs" | "unpublished";

export interface PreviewGroup {
  group: string;
  scripts: { script: ScriptSummary; state: PreviewState }[];
}

/** The integer part of an ordering number: its group. */
export function groupOf(ordering: string): string {
  return ordering.split(".")[0];
}

/**
 * What Run all would do now, group by group in order: a pass runs each script's
 * published version (the server's rule: published, not archived); the others are listed
 * as left out, with the reason.
 */
export function previewGroups(scripts: ScriptSummary[]): PreviewGroup[] {
  const groups = new Map<string, PreviewGroup>();
  const sorted = [...scripts].sort((a, b) => compareOrdering(a.ordering, b.ordering));
  for (const script of sorted.filter((s) => !s.archived)) {
    const g = groupOf(script.ordering);
    const state: PreviewState = script.published_version ? "runs" : "unpublished";
    if (!groups.has(g)) groups.set(g, { group: g, scripts: [] });
    groups.get(g)!.scripts.push({ script, state });
  }
  return [...groups.values()];
}

/** Orders `3.01` before `3.1` before `10.0` (exact decimals, compared as digits). */
export function compareOrdering(a: string, b: string): number {
  const [ai, af = ""] = a.split(".");
  const [bi, bf = ""] = b.split(".");
  if (ai.length !== bi.length) return ai.length - bi.length;
  if (ai !== bi) return ai < bi ? -1 : 1;
  return af === bf ? 0 : af < bf ? -1 : 1;
}

const stateText: Record<PreviewState, string> = {
  runs: "runs",
  unpublished: "not published: left out",
};

/** The preview of the next pass: groups in order, which scripts run (and which version). */
export function PassPreview({ scripts }: { scripts: ScriptSummary[] }) {
  const groups = previewGroups(scripts);
  const archived = scripts.filter((s) => s.archived).length;
  const running = groups.reduce((n, g) => n + g.scripts.filter((s) => s.state === "runs").length, 0);
  return (
    <section className="pass-preview" aria-label="Run all preview">
      <h3>
        Run all will run {running} script{running === 1 ? "" : "s"}
        {running > 0 && ` in ${groups.filter((g) => g.scripts.some((s) => s.state === "runs")).length} group(s), one group after another`}
      </h3>
      {running === 0 && <p className="muted">Nothing is published yet: publish a script to put it on prod.</p>}
      {archived > 0 && (
        <p className="muted" data-testid="preview-archived">
          {archived} archived script{archived === 1 ? "" : "s"} left out (the script list's Archived section restores them).
        </p>
      )}
      <ol className="preview-groups">
        {groups.map((g) => (
          <li key={g.group} data-testid="preview-group">
            <strong>Group {g.group}</strong>
            <span className="muted"> · scripts in a group run at the same time</span>
            <ul>
              {g.scripts.map(({ script, state }) => (
                <li key={script.id} className={`preview-${state}`} data-state={state}>
                  <span className="ordering">{script.ordering}</span>{" "}
                  <Link to={`/scripts/${script.id}`}>{script.name || script.filename}</Link>{" "}
                  {state === "runs" ? (
                    <span className="badge published">published {script.published_version}</span>
                  ) : (
                    <span className="muted">{stateText[state]}</span>
                  )}
                </li>
              ))}
            </ul>
          </li>
        ))}
      </ol>
    </section>
  );
}
