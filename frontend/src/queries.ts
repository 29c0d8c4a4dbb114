// Server data for the components, through TanStack Query: one key per resource, one hook
// per read, and `invalidate` after every change so each screen shows what the server has.

import { useMemo } from "react";
import { QueryCache, QueryClient, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError } from "./api";

export const keys = {
  me: ["me"] as const,
  scripts: ["scripts"] as const,
  script: (id: number) => ["scripts", id] as const,
  versions: (id: number) => ["scripts", id, "versions"] as const,
  exchanges: (id: number) => ["scripts", id, "exchanges"] as const,
  examples: ["examples"] as const,
  interpreters: ["interpreters"] as const,
  run: (id: number) => ["runs", id] as const,
  runs: ["runs"] as const,
  pass: (id: number | "latest") => ["passes", id] as const,
  passes: ["passes"] as const,
  tokens: ["tokens"] as const,
};

export function makeQueryClient(): QueryClient {
  const client: QueryClient = new QueryClient({
    // A 401 on any read means the session ended (expired, signed out elsewhere): show
    // the sign-in, which keeps the URL, rather than an error on every screen.
    queryCache: new QueryCache({
      onError: (e) => {
        if (e instanceof ApiError && e.status === 401) client.setQueryData(keys.me, null);
      },
    }),
    defaultOptions: {
      queries: {
        // A 4xx answer is the server's word (not found, forbidden): asking again changes nothing.
        retry: (count, e) => !(e instanceof ApiError && e.status < 500) && count < 2,
        staleTime: 2_000,
      },
    },
  });
  return client;
}

/** The signed-in user; `null` when nobody is (401). */
export function useMe() {
  return useQuery({
    queryKey: keys.me,
    queryFn: () =>
      api.me().catch((e) => {
        if (e instanceof ApiError && e.status === 401) return null;
        throw e;
      }),
    staleTime: Infinity,
  });
}

export function useScripts(enabled = true) {
  return useQuery({ queryKey: keys.scripts, queryFn: api.scripts, enabled });
}

export function useExamples(enabled = true) {
  return useQuery({ queryKey: keys.examples, queryFn: api.examples, enabled, staleTime: Infinity });
}

export function useInterpreters() {
  return useQuery({ queryKey: keys.interpreters, queryFn: api.interpreters });
}

export function useVersions(id: number, version: string) {
  return useQuery({ queryKey: [...keys.versions(id), version], queryFn: () => api.versions(id) });
}

export function useExchanges(id: number) {
  return useQuery({ queryKey: keys.exchanges(id), queryFn: () => api.exchanges(id) });
}

export function useRun(id: number, enabled = true) {
  return useQuery({ queryKey: keys.run(id), queryFn: () => api.run(id), enabled });
}

/** A pass by id, or the latest full pass (`null` when none has run yet). */
export function usePass(id: number | "latest") {
  return useQuery({
    queryKey: keys.pass(id),
    queryFn: () =>
      id === "latest"
        ? // The running pass first, so a page opened (or reloaded) during a pass finds it.
          api
            .currentPass()
            .catch((e) => {
              if (e instanceof ApiError && e.status === 404) return api.latestPass();
              throw e;
            })
            .catch((e) => {
              if (e instanceof ApiError && e.status === 404) return null;
              throw e;
            })
        : api.pass(id),
  });
}

/** A script's runs, newest first: the first page (older pages are fetched on demand). */
export function useScriptRuns(scriptId: number, limit: number) {
  return useQuery({ queryKey: [...keys.runs, "script", scriptId, limit], queryFn: () => api.scriptRuns(scriptId, limit) });
}

export function useTokens() {
  return useQuery({ queryKey: keys.tokens, queryFn: api.tokens });
}

/**
 * What to refresh after a change; each returns at once (the refetch runs on its own).
 * The functions are stable for a client, so effects may depend on them.
 */
export function useInvalidate() {
  const client = useQueryClient();
  return useMemo(() => invalidators(client), [client]);
}

function invalidators(client: QueryClient) {
  return {
    /** A script changed (saved, bumped, forked, published, created): the list and it. */
    scripts: () => void client.invalidateQueries({ queryKey: keys.scripts }),
    /** A run or pass ended: its record, the list's last results, the passes. */
    runs: () => {
      void client.invalidateQueries({ queryKey: keys.runs });
      void client.invalidateQueries({ queryKey: keys.passes });
      void client.invalidateQueries({ queryKey: keys.scripts });
    },
    tokens: () => void client.invalidateQueries({ queryKey: keys.tokens }),
    exchanges: (id: number) => void client.invalidateQueries({ queryKey: keys.exchanges(id) }),
    /** Signed in or out: everything cached belonged to the previous user. */
    session: () => client.resetQueries(),
  };
}
