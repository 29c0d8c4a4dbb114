// The one place that knows the server's routes. Components call these; none fetch.

// The API's own types, generated from the Rust types (src/api/bindings.rs): they cannot
// drift from what the server sends. Only what is not generated yet is written out below.
import type {
  ApiToken,
  CreateScriptRequest,
  CreateTokenRequest,
  DuplicateOf,
  Example,
  ExchangeRecord,
  ForkOrderings,
  ForkRequest,
  MergedFrom,
  OrderingRequest,
  PresenceRequest,
  PresenceState,
  PublishRequest,
  LoginRequest,
  Me,
  PassRecord,
  PassSummary,
  Proposal,
  RunRecord,
  ScriptDetail,
  SaveRequest,
  ScriptSummary,
  StartPassRequest,
  StartRunRequest,
  TestDataSaved,
  VersionInfo,
} from "./generated";

export type * from "./generated";
/** One row of a script's LLM log. */
export type Exchange = ExchangeRecord;
/** The latest run of a script, as the list shows it. */
export type LastRun = NonNullable<ScriptSummary["last_run"]>;

export interface Interpreter {
  id: string;
  kind: "native" | "wasi";
  implementation: string;
  version: string;
  backends: string[];
  default_backend: string;
  available: boolean;
  problem?: string;
  description?: string;
  /** Modules a spare sandbox imports ahead of a run (warm start). */
  warm?: string[];
  warm_state?: { state: "idle" | "warming" | "ready" | "failed"; problem?: string };
}

/** An error the server explained: `message` says what was wrong and what to do. */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public body: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** The body as JSON, or undefined when it is empty or not JSON. */
function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

async function request<T>(method: string, path: string, body?: unknown, raw = false, extra: Record<string, string> = {}): Promise<T> {
  const headers: Record<string, string> = { ...extra };
  const init: RequestInit = { method, credentials: "same-origin", headers };
  // The server takes changes only as JSON (an empty body included) or, for test data,
  // as raw bytes: the content type no other site can send without asking first.
  if (method !== "GET" && method !== "HEAD" && method !== "DELETE") {
    headers["content-type"] = raw ? "application/octet-stream" : "application/json";
  }
  if (body !== undefined) {
    init.body = raw ? (body as string) : JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  const json = parseJson(text);
  if (!res.ok) {
    const b = (json ?? {}) as Record<string, unknown>;
    throw new ApiError(res.status, (b.error as string) ?? `${res.status} ${res.statusText}`, b);
  }
  return (json ?? text) as T;
}

export const api = {
  login: (username: string, password: string) => request<Me>("POST", "/api/login", { username, password } satisfies LoginRequest),
  logout: () => request<unknown>("POST", "/api/logout"),
  me: () => request<Me>("GET", "/api/me"),
  scripts: () => request<ScriptSummary[]>("GET", "/api/scripts"),
  script: (id: number) => request<ScriptDetail>("GET", `/api/scripts/${id}`),
  create: (content?: string) => request<ScriptDetail>("POST", "/api/scripts", content === undefined ? undefined : ({ content } satisfies CreateScriptRequest)),
  save: (id: number, content: string, base_version: string, exchange_id?: number) =>
    request<{ version: string; changed: boolean; merged: MergedFrom | null; duplicate_of: DuplicateOf | null }>(
      "PUT", `/api/scripts/${id}`, { content, base_version, exchange_id } satisfies SaveRequest),
  bumpMajor: (id: number) => request<{ version: string }>("POST", `/api/scripts/${id}/bump-major`),
  relock: (id: number) => request<{ version: string; changed: boolean }>("POST", `/api/scripts/${id}/relock`),
  fork: (id: number, ordering?: string) =>
    request<ScriptDetail>("POST", `/api/scripts/${id}/fork`, ordering === undefined ? undefined : ({ ordering } satisfies ForkRequest)),
  forkOrdering: (id: number) => request<ForkOrderings & { default: string }>("GET", `/api/scripts/${id}/fork-ordering`),
  /** Publishes `version`, the one the editor looked at (409 if the script moved since). */
  publish: (id: number, version: string, message?: string) =>
    request<{ published_version: string; changed: boolean }>("POST", `/api/scripts/${id}/publish`, { version, message: message || undefined } satisfies PublishRequest),
  /** The script this tab (its events stream's `tab`) has open (null: none), and whether it has unsaved edits. */
  presence: (tab: number, script_id: number | null, state?: PresenceState) =>
    request<unknown>("POST", "/api/presence", (script_id === null ? { tab } : { tab, script_id, state }) satisfies PresenceRequest),
  eventsUrl: "/api/events",
  /** Moves a script to another ordering number (its group is the integer part). */
  setOrdering: (id: number, ordering: string) => request<ScriptSummary>("PUT", `/api/scripts/${id}/ordering`, { ordering } satisfies OrderingRequest),
  /** Archives a script (out of the queue and of Run all; history kept) or restores it. */
  setArchived: (id: number, archived: boolean) =>
    request<{ changed: boolean; script: ScriptSummary }>("POST", `/api/scripts/${id}/${archived ? "archive" : "unarchive"}`),
  versions: (id: number) => request<VersionInfo[]>("GET", `/api/scripts/${id}/versions`),
  version: (id: number, v: string) => request<{ content: string }>("GET", `/api/scripts/${id}/versions/${v}`),
  /** The test data and its ETag (send it back when saving an edit of it). */
  testData: async (id: number): Promise<{ data: string; etag: string }> => {
    const res = await fetch(`/api/scripts/${id}/test-data`, { credentials: "same-origin" });
    if (!res.ok) {
      const b = (parseJson(await res.text()) ?? {}) as Record<string, unknown>;
      throw new ApiError(res.status, (b.error as string) ?? `${res.status} ${res.statusText}`, b);
    }
    return { data: await res.text(), etag: res.headers.get("etag") ?? "" };
  },
  /** Saves test data edited from the data with ETag `etag`: merged if it changed since, 409 `{conflict}` if it cannot be. */
  putTestData: (id: number, data: string, etag: string) =>
    request<TestDataSaved>("PUT", `/api/scripts/${id}/test-data`, data, true, etag ? { "if-match": etag } : {}),
  interpreters: () => request<{ default: string | null; interpreters: Interpreter[] }>("GET", "/api/interpreters"),
  startRun: (script_id: number, interpreter?: string, backend?: string) =>
    request<{ run_id: number }>("POST", "/api/runs", { script_id, interpreter, backend } satisfies StartRunRequest),
  run: (id: number) => request<RunRecord>("GET", `/api/runs/${id}`),
  cancelRun: (id: number) => request<unknown>("POST", `/api/runs/${id}/cancel`),
  startPass: (on_failure: "stop" | "continue") => request<{ pass_id: number }>("POST", "/api/passes", { on_failure } satisfies StartPassRequest),
  pass: (id: number) => request<PassRecord>("GET", `/api/passes/${id}`),
  latestPass: () => request<PassRecord>("GET", "/api/passes/latest"),
  /** The pass running now (404 when none runs). */
  currentPass: () => request<PassRecord>("GET", "/api/passes/current"),
  /** Past passes, newest first, with their outcome. */
  passes: (limit: number, before?: number) => request<PassSummary[]>("GET", `/api/passes?limit=${limit}${before ? `&before=${before}` : ""}`),
  /** A script's runs, newest first; `before` pages to older ones. */
  scriptRuns: (scriptId: number, limit: number, before?: number) =>
    request<RunRecord[]>("GET", `/api/runs?script_id=${scriptId}&limit=${limit}${before ? `&before=${before}` : ""}`),
  rejectExchange: (scriptId: number, exchangeId: number) =>
    request<unknown>("POST", `/api/scripts/${scriptId}/exchanges/${exchangeId}/reject`, {}),
  cancelPass: (id: number) => request<unknown>("POST", `/api/passes/${id}/cancel`),
  examples: () => request<Example[]>("GET", "/api/examples"),
  fromExample: (id: string) => request<ScriptDetail>("POST", `/api/examples/${encodeURIComponent(id)}`),
  tokens: () => request<ApiToken[]>("GET", "/api/tokens"),
  createToken: (name: string) => request<ApiToken & { token: string; note: string }>("POST", "/api/tokens", { name } satisfies CreateTokenRequest),
  revokeToken: (id: number) => request<unknown>("DELETE", `/api/tokens/${id}`),
  exchanges: (id: number) => request<Exchange[]>("GET", `/api/scripts/${id}/exchanges`),
  artifactUrl: (run: number, name: string) => `/api/runs/${run}/artifacts/${name.split("/").map(encodeURIComponent).join("/")}`,
  runEventsUrl: (id: number) => `/api/runs/${id}/events`,
  passEventsUrl: (id: number) => `/api/passes/${id}/events`,
  /** The language-server socket; with `scriptId` the type server also sees that
   * script's dependency environment. */
  lspUrl: (interpreter?: string, scriptId?: number) => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams();
    if (interpreter) q.set("interpreter", interpreter);
    if (scriptId !== undefined) q.set("script", String(scriptId));
    const qs = q.toString();
    return `${proto}//${location.host}/api/lsp${qs ? `?${qs}` : ""}`;
  },
};

/** Streams an LLM proposal: `onEvent` gets status/delta/tool events, then it resolves. */
export async function streamPrompt(
  id: number,
  instruction: string,
  code: string,
  onEvent: (kind: string, data: Record<string, unknown>) => void,
): Promise<Proposal> {
  const res = await fetch(`/api/scripts/${id}/prompt`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", accept: "text/event-stream" },
    body: JSON.stringify({ instruction, code }),
  });
  if (!res.ok || !res.body) {
    const b = await res.json().catch(() => ({}));
    throw new ApiError(res.status, b.error ?? res.statusText, b);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let kind = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (!data) continue;
      const parsed = JSON.parse(data);
      if (kind === "proposal") return parsed as Proposal;
      if (kind === "error") throw new ApiError(502, parsed.error as string);
      onEvent(kind, parsed);
    }
  }
  throw new ApiError(502, "the answer ended without a proposal");
}
