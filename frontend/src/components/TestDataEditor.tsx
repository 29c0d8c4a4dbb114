import { useCallback, useEffect, useState } from "react";
import { api, ApiError, type TestDataConflict } from "../api";
import { errorMessage } from "../errors";
import { onNotice } from "../notices";
import { Hunks, ResolveDiff } from "./Team";

/** What to show for data that is not text. */
function shown(text: string | null): string {
  return text ?? "(binary data: not shown)";
}

/**
 * The script's test data: what the runner passes as argv[1]. A save names the data it
 * was loaded as (its ETag): if someone saved in between, the server merges the two; when
 * it cannot, both versions are shown side by side to resolve.
 */
export function TestDataEditor({ scriptId, canEdit }: { scriptId: number; canEdit: boolean }) {
  const [data, setData] = useState("");
  const [saved, setSaved] = useState("");
  const [etag, setEtag] = useState("");
  const [note, setNote] = useState<string | null>(null);
  const [conflict, setConflict] = useState<{ message: string; c: TestDataConflict } | null>(null);
  const [changedBy, setChangedBy] = useState<string | null>(null);

  const show = useCallback((d: { data: string; etag: string }) => {
    setData(d.data);
    setSaved(d.data);
    setEtag(d.etag);
    setChangedBy(null);
  }, []);
  const load = useCallback(() => api.testData(scriptId).then(show), [scriptId, show]);

  useEffect(() => {
    api.testData(scriptId).then(show, (e) => setNote(errorMessage(e)));
  }, [scriptId, show]);

  const dirty = data !== saved;
  // Someone else saved the test data: reload it when nothing is edited here; otherwise
  // say so (the save will merge).
  useEffect(
    () =>
      onNotice("test_data_saved", (n) => {
        if (n.script_id !== scriptId) return;
        if (dirty) setChangedBy(n.user as string);
        else load().catch((e) => setNote(errorMessage(e)));
      }),
    [scriptId, dirty, load],
  );

  async function save(content: string, base: string) {
    try {
      const r = await api.putTestData(scriptId, content, base);
      setConflict(null);
      setChangedBy(null);
      if (r.merged) {
        await load();
        setNote("saved, merged with the test data someone saved meanwhile (a commit on your branch)");
      } else {
        setData(content);
        setSaved(content);
        setEtag(`"${r.etag}"`);
        setNote(r.changed ? "saved (a commit on your branch)" : "unchanged");
      }
    } catch (e) {
      const c = e instanceof ApiError ? (e.body.conflict as TestDataConflict | undefined) : undefined;
      if (c) setConflict({ message: e instanceof Error ? e.message : "", c });
      else setNote(errorMessage(e));
    }
  }

  if (conflict) {
    const c = conflict.c;
    return (
      <section className="test-data conflict-view" aria-label="Test data conflict" data-testid="test-data-conflict">
        <p className="error">{conflict.message}</p>
        <Hunks hunks={c.hunks} />
        <p className="muted">Left: the test data saved meanwhile; right: yours — edit it into the data to keep, then save.</p>
        <ResolveDiff
          theirs={shown(c.theirs_content)}
          ours={shown(c.ours_content)}
          language="plaintext"
          label="Save resolution"
          onResolve={(content) => save(content, `"${c.theirs}"`)}
          onCancel={() => setConflict(null)}
        />
      </section>
    );
  }

  return (
    <section className="test-data" aria-label="Test data">
      <p className="muted">Written to a file whose path the script gets as sys.argv[1].</p>
      {changedBy && (
        <p className="team-notice" role="status">
          {changedBy} saved the test data meanwhile; saving merges your edit with theirs.
        </p>
      )}
      <textarea value={data} onChange={(e) => setData(e.target.value)} readOnly={!canEdit} rows={14} aria-label="Test data" />
      {canEdit && (
        <button onClick={() => save(data, etag)} disabled={!dirty}>
          Save test data
        </button>
      )}
      {note && <p className="muted">{note}</p>}
    </section>
  );
}
