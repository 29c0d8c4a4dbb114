// Monaco, bundled from node_modules (no CDN, no runtime download): the editor with its
// features and language definitions, and the editor worker. Only Python models are
// created, so no language worker is needed.
import * as monaco from "monaco-editor";
import EditorWorker from "monaco-editor/editor/editor.worker?worker";

(self as unknown as { MonacoEnvironment: monaco.Environment }).MonacoEnvironment = { getWorker: () => new EditorWorker() };

export { monaco };
