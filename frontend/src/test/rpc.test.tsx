import { afterEach, describe, expect, it, vi } from "vitest";
import { RpcClosed, RpcConnection, RpcTimeout, within } from "../rpc";

/** A socket that records what was sent and never answers by itself. */
function socket() {
  const sent: unknown[] = [];
  return { sent, send: (d: string) => sent.push(JSON.parse(d)), close: () => undefined };
}

afterEach(() => vi.useRealTimers());

describe("the language-server connection", () => {
  it("settles a request with the server's answer", async () => {
    const s = socket();
    const rpc = new RpcConnection(s);
    const answer = rpc.call("textDocument/hover", { x: 1 });
    expect(s.sent[0]).toMatchObject({ jsonrpc: "2.0", id: 1, method: "textDocument/hover" });
    expect(rpc.settle({ jsonrpc: "2.0", id: 1, result: { contents: "doc" } })).toBe(true);
    await expect(answer).resolves.toMatchObject({ result: { contents: "doc" } });
    expect(rpc.waiting).toBe(0);
  });

  it("gives up on an unanswered request after its timeout and cancels it", async () => {
    vi.useFakeTimers();
    const s = socket();
    const rpc = new RpcConnection(s);
    const answer = rpc.call("textDocument/formatting", {}, 2000);
    const seen = expect(answer).rejects.toBeInstanceOf(RpcTimeout);
    vi.advanceTimersByTime(2000);
    await seen;
    expect(s.sent[1]).toMatchObject({ method: "$/cancelRequest", params: { id: 1 } });
    expect(rpc.waiting).toBe(0);
  });

  it("rejects waiting and later requests when the socket closes", async () => {
    const s = socket();
    const rpc = new RpcConnection(s);
    const waiting = rpc.call("textDocument/completion", {});
    rpc.fail("the server stopped");
    await expect(waiting).rejects.toThrow("the language server connection closed: the server stopped");
    await expect(rpc.call("textDocument/formatting", {})).rejects.toBeInstanceOf(RpcClosed);
    expect(s.sent).toHaveLength(1);
  });

  it("does not take a server's request or notification for an answer", () => {
    const rpc = new RpcConnection(socket());
    expect(rpc.settle({ id: 7, method: "workspace/configuration", params: {} })).toBe(false);
    expect(rpc.settle({ method: "textDocument/publishDiagnostics", params: {} })).toBe(false);
  });
});

describe("within", () => {
  it("falls back when the promise takes too long or fails", async () => {
    vi.useFakeTimers();
    const never = new Promise<string>(() => undefined);
    const late = within(never, 2000, "fallback");
    vi.advanceTimersByTime(2000);
    await expect(late).resolves.toBe("fallback");
    vi.useRealTimers();
    await expect(within(Promise.reject(new Error("x")), 2000, "fallback")).resolves.toBe("fallback");
    await expect(within(Promise.resolve("formatted"), 2000, "fallback")).resolves.toBe("formatted");
  });
});
