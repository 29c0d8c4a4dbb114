import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, render, screen, waitFor } from "@testing-library/react";
import { QueryClientProvider } from "@tanstack/react-query";
import { createMemoryRouter, RouterProvider } from "react-router";
import { routes } from "../routes";
import { makeQueryClient } from "../queries";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

/** The whole app at `url`, with the server's answers given per path. */
function renderAt(url: string, answer: (path: string) => Response) {
  vi.stubGlobal("fetch", vi.fn(async (path: string) => answer(path)));
  const router = createMemoryRouter(routes, { initialEntries: [url] });
  render(
    <QueryClientProvider client={makeQueryClient()}>
      <RouterProvider router={router} />
    </QueryClientProvider>,
  );
  return router;
}

const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status });
const signedIn = (path: string) =>
  path === "/api/me" ? json({ username: "mo1", roles: ["viewer"] }) : path === "/api/scripts" ? json([]) : json({ error: `no ${path}` }, 404);

describe("routes", () => {
  it("says an id that is not a number does not exist, with a way back", async () => {
    renderAt("/runs/abc", signedIn);
    await waitFor(() => expect(screen.getByText("Run “abc” does not exist.")).toBeTruthy());
    expect(screen.getByRole("link", { name: "Back to the scripts" }).getAttribute("href")).toBe("/scripts");
  });

  it("shows the server's word for a run that does not exist", async () => {
    vi.stubGlobal("EventSource", class { addEventListener() {} close() {} });
    renderAt("/runs/77", signedIn);
    await waitFor(() => expect(screen.getByRole("alert").textContent).toContain("no /api/runs/77"));
  });

  it("sends / to the script list and marks the screen in the header", async () => {
    const router = renderAt("/", signedIn);
    await waitFor(() => expect(router.state.location.pathname).toBe("/scripts"));
    await waitFor(() => expect(screen.getByText("Select a script.")).toBeTruthy());
    expect(screen.getByRole("link", { name: "Scripts" }).className).toContain("active");
  });

  it("a session that ends shows the sign-in and keeps the URL", async () => {
    let expired = false;
    const router = renderAt("/tokens", (path) => (expired ? json({ error: "sign in first" }, 401) : path === "/api/tokens" ? ((expired = true), json({ error: "sign in first" }, 401)) : signedIn(path)));
    await waitFor(() => expect(screen.getByRole("form", { name: "Sign in" })).toBeTruthy());
    expect(router.state.location.pathname).toBe("/tokens");
  });
});
