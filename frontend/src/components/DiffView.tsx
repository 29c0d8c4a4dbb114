import { useEffect, useRef } from "react";
import { monaco } from "../monaco";

/** A side-by-side diff (Monaco's diff editor). */
export function DiffView({ original, modified, height = 320 }: { original: string; modified: string; height?: number }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const editor = monaco.editor.createDiffEditor(host.current!, { readOnly: true, automaticLayout: true, renderSideBySide: true });
    const a = monaco.editor.createModel(original, "python");
    const b = monaco.editor.createModel(modified, "python");
    editor.setModel({ original: a, modified: b });
    return () => {
      editor.dispose();
      a.dispose();
      b.dispose();
    };
  }, [original, modified]);
  return <div className="diff" ref={host} style={{ height }} data-testid="diff" />;
}
