// The team's notices (`GET /api/events`): one stream per browser tab, shared by every
// part of the page that listens. The server numbers each stream (`tab` in its `hello`);
// presence is reported for that tab, so a second tab of the same user is a presence of
// its own and closing one tab ends only its own.

import { api } from "./api";

export type Handler = (data: Record<string, unknown>) => void;

// `hello` is always listened to: it carries this tab's number.
const handlers = new Map<string, Set<Handler>>([["hello", new Set()]]);
let source: EventSource | null = null;
let users = 0;
let tab: number | null = null;

function listen(kind: string) {
  source?.addEventListener(kind, (e) => {
    const data = JSON.parse((e as MessageEvent).data) as Record<string, unknown>;
    if (kind === "hello") tab = (data.tab as number | undefined) ?? null;
    for (const h of handlers.get(kind) ?? []) h(data);
  });
}

/** Calls `handler` with each notice of `kind` (`hello` on every (re)connect); returns the unsubscribe. */
export function onNotice(kind: string, handler: Handler): () => void {
  // Notices are an addition: where a browser has no EventSource, the page works without.
  if (typeof EventSource === "undefined") return () => undefined;
  if (!handlers.has(kind)) {
    handlers.set(kind, new Set());
    listen(kind);
  }
  handlers.get(kind)!.add(handler);
  users += 1;
  if (!source) {
    source = new EventSource(api.eventsUrl);
    for (const k of handlers.keys()) listen(k);
  }
  return () => {
    handlers.get(kind)?.delete(handler);
    users -= 1;
    if (users === 0) {
      source?.close();
      source = null;
      tab = null;
    }
  };
}

/** This tab's number, once the stream said hello (null before, or without a stream). */
export function currentTab(): number | null {
  return tab;
}
