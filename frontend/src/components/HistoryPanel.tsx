import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { api } from "../api";
import { errorMessage } from "../errors";
import { keys, useVersions } from "../queries";
import { DiffView } from "./DiffView";

/** Version history; pick two versions to see their diff. */
export function HistoryPanel({ scriptId, version }: { scriptId: number; version: string }) {
  const listed = useVersions(scriptId, version);
  const versions = listed.data ?? [];
  // Until the user picks, the newest version against the one before it.
  const [picked, setPicked] = useState<{ a?: string; b?: string }>({});
  const b = picked.b ?? versions[0]?.version ?? "";
  const a = picked.a ?? versions[1]?.version ?? b;
  // A version's content never changes once saved.
  const contentOf = (v: string) => ({
    queryKey: [...keys.versions(scriptId), "content", v],
    queryFn: () => api.version(scriptId, v),
    enabled: v !== "",
    staleTime: Infinity,
  });
  const from = useQuery(contentOf(a));
  const to = useQuery(contentOf(b));
  const texts = from.data && to.data ? [from.data.content, to.data.content] : null;
  const error = listed.error ?? from.error ?? to.error;

  return (
    <section className="history" aria-label="History">
      {error && <p className="error" role="alert">{errorMessage(error)}</p>}
      <table>
        <thead>
          <tr><th>Version</th><th>Kind</th><th>By</th><th>When</th><th>Commit</th><th /></tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr key={v.version}>
              <td>{v.version}</td>
              <td>{v.kind}</td>
              <td>{v.committer}</td>
              <td>{v.created_at}</td>
              <td><code>{v.commit.slice(0, 10)}</code></td>
              <td>{v.published ? "on prod" : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="diff-pick">
        Diff
        <select value={a} onChange={(e) => setPicked({ a: e.target.value, b })} aria-label="From version">
          {versions.map((v) => <option key={v.version}>{v.version}</option>)}
        </select>
        →
        <select value={b} onChange={(e) => setPicked({ a, b: e.target.value })} aria-label="To version">
          {versions.map((v) => <option key={v.version}>{v.version}</option>)}
        </select>
      </div>
      {texts && <DiffView original={texts[0]} modified={texts[1]} />}
    </section>
  );
}
