import { useEffect, useState } from "react";
import { api, type VersionInfo } from "../api";
import { DiffView } from "./DiffView";

/** Version history; pick two versions to see their diff. */
export function HistoryPanel({ scriptId, version }: { scriptId: number; version: string }) {
  const [versions, setVersions] = useState<VersionInfo[]>([]);
  const [a, setA] = useState("");
  const [b, setB] = useState("");
  const [texts, setTexts] = useState<[string, string] | null>(null);

  useEffect(() => {
    api.versions(scriptId).then((vs) => {
      setVersions(vs);
      setB(vs[0]?.version ?? "");
      setA(vs[1]?.version ?? vs[0]?.version ?? "");
    });
  }, [scriptId, version]);

  useEffect(() => {
    if (!a || !b) return;
    Promise.all([api.version(scriptId, a), api.version(scriptId, b)]).then(([x, y]) => setTexts([x.content, y.content]));
  }, [scriptId, a, b]);

  return (
    <section className="history" aria-label="History">
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
        <select value={a} onChange={(e) => setA(e.target.value)} aria-label="From version">
          {versions.map((v) => <option key={v.version}>{v.version}</option>)}
        </select>
        →
        <select value={b} onChange={(e) => setB(e.target.value)} aria-label="To version">
          {versions.map((v) => <option key={v.version}>{v.version}</option>)}
        </select>
      </div>
      {texts && <DiffView original={texts[0]} modified={texts[1]} />}
    </section>
  );
}
