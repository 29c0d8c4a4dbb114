// JSON-RPC 2.0 over a WebSocket, as the language-server bridge speaks it: requests
// that always settle (an answer, a timeout, or the socket closing), notifications,
// and a handler for whatever else the server sends.

export type Json = Record<string, any>;

/** The part of a WebSocket the connection uses (a test passes its own). */
export interface Socket {
  send(data: string): void;
  close(): void;
}

export class RpcTimeout extends Error {
  constructor(method: string, ms: number) {
    super(`the language server did not answer ${method} within ${ms} ms`);
  }
}

export class RpcClosed extends Error {
  constructor(reason: string) {
    super(`the language server connection closed${reason ? `: ${reason}` : ""}`);
  }
}

interface Pending {
  resolve: (v: Json) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export class RpcConnection {
  private next = 1;
  private pending = new Map<number, Pending>();
  private closed: RpcClosed | null = null;

  constructor(private socket: Socket) {}

  /** A request; settles with the server's message, or rejects on timeout or close. */
  call(method: string, params: Json, timeoutMs?: number): Promise<Json> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.pending.delete(id);
              this.notify("$/cancelRequest", { id });
              reject(new RpcTimeout(method, timeoutMs));
            }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  notify(method: string, params: Json) {
    if (!this.closed) this.socket.send(JSON.stringify({ jsonrpc: "2.0", method, params }));
  }

  /** Answers a request from the server. */
  respond(id: unknown, result: unknown) {
    if (!this.closed) this.socket.send(JSON.stringify({ jsonrpc: "2.0", id, result }));
  }

  /** A message from the server: true when it answered one of our requests. */
  settle(msg: Json): boolean {
    if (msg.id === undefined || msg.method !== undefined) return false;
    const p = this.pending.get(msg.id as number);
    if (!p) return true;
    this.pending.delete(msg.id as number);
    clearTimeout(p.timer);
    p.resolve(msg);
    return true;
  }

  /** The socket closed: every waiting request rejects, later ones too. */
  fail(reason: string) {
    this.closed = new RpcClosed(reason);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.closed);
    }
    this.pending.clear();
  }

  get waiting(): number {
    return this.pending.size;
  }
}

/** `promise`, or `fallback` once `ms` have passed or it rejects. */
export function within<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(fallback), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      () => {
        clearTimeout(timer);
        resolve(fallback);
      },
    );
  });
}
