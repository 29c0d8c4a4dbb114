// The workbench's layout, remembered per user in this browser (localStorage): whether
// the script list is shown, and where the editor | output split sits.

import { useCallback, useState } from "react";

export interface Layout {
  /** The script list (sidebar) is collapsed. */
  sidebarHidden: boolean;
  /** The editor's share of the split, in percent (20–80). */
  split: number;
}

const defaults: Layout = { sidebarHidden: false, split: 55 };

function storageKey(user: string): string {
  return `scriptorium.layout.${user}`;
}

/** The stored layout of `user`, with defaults for whatever is missing or malformed. */
export function loadLayout(user: string): Layout {
  try {
    const raw = JSON.parse(localStorage.getItem(storageKey(user)) ?? "{}") as Partial<Layout>;
    return {
      sidebarHidden: typeof raw.sidebarHidden === "boolean" ? raw.sidebarHidden : defaults.sidebarHidden,
      split: typeof raw.split === "number" && raw.split >= 20 && raw.split <= 80 ? raw.split : defaults.split,
    };
  } catch {
    return { ...defaults };
  }
}

/** The layout and a setter that stores it (storage may be unavailable: the page still works). */
export function useLayout(user: string): [Layout, (change: Partial<Layout>) => void] {
  const [layout, setLayout] = useState(() => loadLayout(user));
  const update = useCallback(
    (change: Partial<Layout>) =>
      setLayout((old) => {
        // Other parts of the page keep their own parts of the layout: start from what is stored.
        const next = { ...old, ...loadLayout(user), ...change };
        try {
          localStorage.setItem(storageKey(user), JSON.stringify(next));
        } catch {
          /* private mode or full: the layout lasts for this page only */
        }
        return next;
      }),
    [user],
  );
  return [layout, update];
}

/** The script's docstring first line replaced by `name` (a docstring added when there is none). */
export function withName(content: string, name: string): string {
  const clean = name.replace(/["\\\r\n]/g, " ").trim();
  const m = /^((?:#[^\n]*\n|\s*\n)*)([ \t]*)([rRuU]?)("""|''')([\s\S]*?)\4/.exec(content);
  if (!m) return `"""${clean}"""\n${content}`;
  const [whole, head, indent, prefix, quote, body] = m;
  const rest = body.replace(/^[^\n]*/, "");
  return head + indent + prefix + quote + clean + rest + quote + content.slice(whole.length);
}
