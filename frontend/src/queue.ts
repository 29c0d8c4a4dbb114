// Moving a script in the queue: the ordering number a drop or a move up/down gives it.
// Ordering numbers are exact decimals (`3.01`): the integer part is the group, the
// fraction the place in it; a new number is found between two others as digit strings,
// never as floats.

import type { ScriptSummary } from "./api";
import { compareOrdering, groupOf } from "./components/PassPreview";

function fracOf(ordering: string): string {
  return (ordering.split(".")[1] ?? "").replace(/0+$/, "");
}

/** The shortest fraction strictly between `lo` and `hi` (null: no upper bound), or null. */
export function fracBetween(lo: string, hi: string | null): string | null {
  for (let len = 1; len <= Math.max(lo.length, hi?.length ?? 0) + 1; len++) {
    const low = BigInt(lo.padEnd(len, "0").slice(0, len) || "0");
    const high = hi === null ? 10n ** BigInt(len) : BigInt(hi.padEnd(len, "0").slice(0, len) || "0");
    if (lo.length > len || (hi !== null && hi.length > len)) continue;
    if (high - low >= 2n) {
      const mid = ((low + high) / 2n).toString().padStart(len, "0").replace(/0+$/, "");
      return mid;
    }
  }
  return null;
}

function ordering(group: string, frac: string): string {
  return `${group}.${frac || "0"}`;
}

/** `scripts` without `moving`, in queue order. */
function others(scripts: ScriptSummary[], moving: number): ScriptSummary[] {
  return scripts.filter((s) => s.id !== moving && !s.archived).sort((a, b) => compareOrdering(a.ordering, b.ordering));
}

/** Dropped on `target`: the moved script joins `target`'s group right after it. */
export function orderingAfter(scripts: ScriptSummary[], moving: number, target: number): string | null {
  const rest = others(scripts, moving);
  const at = rest.findIndex((s) => s.id === target);
  if (at < 0) return null;
  const t = rest[at];
  const next = rest[at + 1];
  const sameGroup = next && groupOf(next.ordering) === groupOf(t.ordering) ? fracOf(next.ordering) : null;
  const frac = fracBetween(fracOf(t.ordering), sameGroup);
  return frac === null ? null : ordering(groupOf(t.ordering), frac);
}

/** One place down: after the next script, in its group. */
export function orderingDown(scripts: ScriptSummary[], moving: number): string | null {
  const all = [...scripts].filter((s) => !s.archived).sort((a, b) => compareOrdering(a.ordering, b.ordering));
  const next = all[all.findIndex((s) => s.id === moving) + 1];
  return next ? orderingAfter(scripts, moving, next.id) : null;
}

/** One place up: before the previous script, in its group (or at the end of the group before). */
export function orderingUp(scripts: ScriptSummary[], moving: number): string | null {
  const all = [...scripts].filter((s) => !s.archived).sort((a, b) => compareOrdering(a.ordering, b.ordering));
  const at = all.findIndex((s) => s.id === moving);
  if (at <= 0) return null;
  const prev = all[at - 1];
  const before = all[at - 2];
  const group = groupOf(prev.ordering);
  if (before && groupOf(before.ordering) === group) return orderingAfter(scripts, moving, before.id);
  const frac = fracOf(prev.ordering);
  if (frac !== "") return ordering(group, fracBetween("", frac) ?? "");
  // The previous script opens its group: go to the end of the group before it.
  if (before) return orderingAfter(scripts, moving, before.id);
  const g = BigInt(group);
  return g > 0n ? ordering((g - 1n).toString(), "") : null;
}
