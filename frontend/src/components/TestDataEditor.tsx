import { useEffect, useState } from "react";
import { api } from "../api";
import { errorMessage } from "../errors";

/** The script's test data: what the runner passes as argv[1]. */
export function TestDataEditor({ scriptId, canEdit }: { scriptId: number; canEdit: boolean }) {
  const [data, setData] = useState("");
  const [saved, setSaved] = useState("");
  const [note, setNote] = useState<string | null>(null);

  useEffect(() => {
    api.testData(scriptId).then((d) => {
      setData(d);
      setSaved(d);
    });
  }, [scriptId]);

  async function save() {
    try {
      const r = await api.putTestData(scriptId, data);
      setSaved(data);
      setNote(r.changed ? "saved (a commit on your branch)" : "unchanged");
    } catch (e) {
      setNote(errorMessage(e));
    }
  }

  return (
    <section className="test-data" aria-label="Test data">
      <p className="muted">Written to a file whose path the script gets as sys.argv[1].</p>
      <textarea value={data} onChange={(e) => setData(e.target.value)} readOnly={!canEdit} rows={14} aria-label="Test data" />
      {canEdit && (
        <button onClick={save} disabled={data === saved}>
          Save test data
        </button>
      )}
      {note && <p className="muted">{note}</p>}
    </section>
  );
}
