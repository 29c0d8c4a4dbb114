import { useEffect, useState } from "react";
import { api } from "../api";
import { errorMessage } from "../errors";
import { DiffView } from "./DiffView";

/**
 * Publishing deliberately: what goes to `prod` (the saved version) against what `prod`
 * has now, as a diff; publishing happens only on the confirm button.
 */
export function PublishDialog(props: {
  scriptId: number;
  version: string;
  published: string | null;
  /** The saved content of `version`. */
  content: string;
  /** Unsaved edits in the editor (they are not published). */
  dirty: boolean;
  /** Publish, with the optional note for the commit message. */
  onConfirm: (message: string) => void;
  onCancel: () => void;
}) {
  const [prod, setProd] = useState<string | null>(props.published ? null : "");
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState("");
  useEffect(() => {
    if (!props.published) return;
    api.version(props.scriptId, props.published).then(
      (v) => setProd(v.content),
      (e) => setError(errorMessage(e)),
    );
  }, [props.scriptId, props.published]);
  const same = prod !== null && prod === props.content && props.published === props.version;
  return (
    <section className="publish-dialog" role="dialog" aria-label="Publish to prod">
      <h3>
        Publish version {props.version} to prod{" "}
        <span className="muted">({props.published ? `prod has ${props.published}` : "not on prod yet"})</span>
      </h3>
      {props.dirty && <p className="error">Your unsaved edits are not published: save first to publish them.</p>}
      {error && <p className="error" role="alert">{error}</p>}
      {prod !== null && (same ? <p className="muted">Prod has this version already.</p> : <DiffView original={prod} modified={props.content} height={260} />)}
      <label className="publish-note">
        Note for the commit on prod (optional)
        <textarea rows={2} maxLength={2000} value={message} onChange={(e) => setMessage(e.target.value)} />
      </label>
      <div className="dialog-actions">
        <button className="primary" onClick={() => props.onConfirm(message)} disabled={prod === null}>
          Publish {props.version}
        </button>
        <button onClick={props.onCancel}>Cancel</button>
      </div>
    </section>
  );
}
