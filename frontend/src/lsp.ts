// A small LSP client for Monaco over the server's WebSocket bridge: document sync,
// completion, hover, diagnostics (as markers) and formatting.

import { monaco } from "./monaco";
import { RpcConnection, within, type Json } from "./rpc";

/** How long a save waits for formatting before it saves the text as it is. */
const FORMAT_TIMEOUT_MS = 2000;

export interface Diagnostic {
  line: number;
  column: number;
  severity: "error" | "warning" | "info";
  message: string;
  source?: string;
  /** The rule or error code (`F401`, `missing-import`). */
  code?: string;
}

const KIND: Record<number, monaco.languages.CompletionItemKind> = {
  2: monaco.languages.CompletionItemKind.Method,
  3: monaco.languages.CompletionItemKind.Function,
  4: monaco.languages.CompletionItemKind.Constructor,
  5: monaco.languages.CompletionItemKind.Field,
  6: monaco.languages.CompletionItemKind.Variable,
  7: monaco.languages.CompletionItemKind.Class,
  9: monaco.languages.CompletionItemKind.Module,
  10: monaco.languages.CompletionItemKind.Property,
  14: monaco.languages.CompletionItemKind.Keyword,
};

export class LspClient {
  private ws: WebSocket;
  private rpc: RpcConnection;
  private ready: Promise<void>;
  private uri = "";
  private version = 1;
  private disposables: monaco.IDisposable[] = [];
  readOnly = false;
  /** The servers of this session (type server first), from the bridge. */
  servers: string[] = [];
  interpreter = "";

  constructor(
    url: string,
    private model: monaco.editor.ITextModel,
    private onDiagnostics: (d: Diagnostic[]) => void,
    private onStatus: (s: string) => void,
  ) {
    this.ws = new WebSocket(url);
    this.rpc = new RpcConnection(this.ws);
    let failed: (e: Error) => void = () => undefined;
    this.ready = new Promise((resolve, reject) => {
      failed = reject;
      this.ws.onerror = () => reject(new Error("the language server connection failed"));
      this.ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data as string) as Json;
        if (msg.method === "scriptorium/session") {
          this.uri = `${msg.params.rootUri}/script.py`;
          this.readOnly = !!msg.params.readOnly;
          this.servers = (msg.params.servers as string[]) ?? [];
          this.interpreter = (msg.params.interpreter as string) ?? "";
          this.start().then(resolve, reject);
          return;
        }
        this.dispatch(msg);
      };
    });
    // Nothing may wait on a closed connection (a save waits for formatting).
    this.ready.catch(() => undefined);
    this.ws.onclose = (ev) => {
      this.rpc.fail(ev.reason);
      failed(new Error("the language server connection closed"));
      this.onStatus(ev.reason ? `language server: ${ev.reason}` : "language server disconnected");
    };
  }

  private dispatch(msg: Json) {
    if (this.rpc.settle(msg)) {
      return;
    } else if (msg.method === "textDocument/publishDiagnostics") {
      this.showDiagnostics(msg.params.diagnostics as Json[]);
    } else if (msg.method === "window/showMessage") {
      this.onStatus(msg.params.message);
    } else if (msg.id !== undefined) {
      // A request from the server (configuration, capabilities): answer it.
      this.rpc.respond(msg.id, null);
    }
  }

  private send(method: string, params: Json) {
    this.rpc.notify(method, params);
  }

  private call(method: string, params: Json, timeoutMs?: number): Promise<Json> {
    return this.rpc.call(method, params, timeoutMs);
  }

  private async start() {
    await this.call("initialize", {
      processId: null,
      rootUri: null,
      capabilities: {
        textDocument: {
          hover: { contentFormat: ["markdown", "plaintext"] },
          completion: { completionItem: { snippetSupport: false, documentationFormat: ["markdown", "plaintext"] } },
          publishDiagnostics: {},
        },
      },
    });
    this.send("initialized", {});
    this.send("textDocument/didOpen", {
      textDocument: { uri: this.uri, languageId: "python", version: this.version, text: this.model.getValue() },
    });
    this.disposables.push(
      this.model.onDidChangeContent(() => {
        this.version += 1;
        this.send("textDocument/didChange", {
          textDocument: { uri: this.uri, version: this.version },
          contentChanges: [{ text: this.model.getValue() }],
        });
      }),
    );
    const isMine = (m: monaco.editor.ITextModel) => m === this.model;
    this.disposables.push(
      monaco.languages.registerCompletionItemProvider("python", {
        triggerCharacters: ["."],
        provideCompletionItems: async (model, position) => {
          if (!isMine(model)) return { suggestions: [] };
          const r = await this.call("textDocument/completion", {
            textDocument: { uri: this.uri },
            position: { line: position.lineNumber - 1, character: position.column - 1 },
          });
          const items = (Array.isArray(r.result) ? r.result : (r.result?.items ?? [])) as Json[];
          const word = model.getWordUntilPosition(position);
          const range = new monaco.Range(position.lineNumber, word.startColumn, position.lineNumber, word.endColumn);
          return {
            suggestions: items.map((i) => ({
              label: i.label as string,
              kind: KIND[i.kind as number] ?? monaco.languages.CompletionItemKind.Text,
              insertText: (i.insertText as string) ?? (i.label as string).replace(/\(.*$/, ""),
              detail: i.detail as string,
              documentation: typeof i.documentation === "string" ? i.documentation : i.documentation?.value,
              sortText: i.sortText as string,
              range,
            })),
          };
        },
      }),
      monaco.languages.registerHoverProvider("python", {
        provideHover: async (model, position) => {
          if (!isMine(model)) return null;
          const r = await this.call("textDocument/hover", {
            textDocument: { uri: this.uri },
            position: { line: position.lineNumber - 1, character: position.column - 1 },
          });
          const c = r.result?.contents;
          if (!c) return null;
          const parts = (Array.isArray(c) ? c : [c]).map((p: Json | string) =>
            typeof p === "string" ? { value: p } : { value: p.value ?? "" },
          );
          return { contents: parts };
        },
      }),
    );
    const names = this.servers.length ? this.servers.join(" + ") : "language server";
    this.onStatus(`${names} ready${this.interpreter ? ` · ${this.interpreter}` : ""}`);
  }

  private showDiagnostics(list: Json[]) {
    const markers = list.map((d) => ({
      startLineNumber: d.range.start.line + 1,
      startColumn: d.range.start.character + 1,
      endLineNumber: d.range.end.line + 1,
      endColumn: Math.max(d.range.end.character + 1, d.range.start.character + 2),
      message: `${d.message}${d.code ? ` (${d.code})` : ""}`,
      severity: d.severity === 1 ? monaco.MarkerSeverity.Error : d.severity === 2 ? monaco.MarkerSeverity.Warning : monaco.MarkerSeverity.Info,
      source: d.source,
    }));
    monaco.editor.setModelMarkers(this.model, "lsp", markers);
    this.onDiagnostics(
      list.map((d) => ({
        line: d.range.start.line + 1,
        column: d.range.start.character + 1,
        severity: d.severity === 1 ? "error" : d.severity === 2 ? "warning" : "info",
        message: d.message,
        source: d.source,
        code: d.code === undefined ? undefined : String(d.code),
      })),
    );
  }

  /**
   * The formatted text (ruff), or null when unchanged, not allowed, or the server did
   * not answer in time: a save never waits on the language server.
   */
  format(): Promise<string | null> {
    return within(this.formatNow(Date.now() + FORMAT_TIMEOUT_MS), FORMAT_TIMEOUT_MS, null);
  }

  private async formatNow(deadline: number): Promise<string | null> {
    await this.ready;
    if (this.readOnly) return null;
    const before = this.model.getVersionId();
    const r = await this.call(
      "textDocument/formatting",
      { textDocument: { uri: this.uri }, options: { tabSize: 4, insertSpaces: true } },
      FORMAT_TIMEOUT_MS,
    );
    const edits = (r.result ?? []) as Json[];
    // Too late (the save went on without it) or typed over since: not applied.
    if (!edits.length || Date.now() > deadline || this.model.getVersionId() !== before) return null;
    const model = this.model;
    model.pushEditOperations(
      [],
      edits.map((e) => ({
        range: new monaco.Range(e.range.start.line + 1, e.range.start.character + 1, e.range.end.line + 1, e.range.end.character + 1),
        text: e.newText as string,
      })),
      () => null,
    );
    return model.getValue();
  }

  dispose() {
    this.disposables.forEach((d) => d.dispose());
    monaco.editor.setModelMarkers(this.model, "lsp", []);
    this.ws.close();
  }
}
