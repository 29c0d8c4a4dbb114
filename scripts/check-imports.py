#!/usr/bin/env python3
"""Import circles and layering inside the `actors` crate.

Every `crate::…` and `super::…` path in `actors/src` (in `use` lines and inline) is
resolved to the module file it names; the check fails when

- two files import each other, directly or through others (a circle), or
- a capability imports one above it. Imports flow one way:
  domain ← error/db ← scripts ← runs ← llm; lsp stands alone; supervisor and lib.rs
  sit on top.

Usage: scripts/check-imports.py [actors/src]   (exit status 1 on a finding)
"""

import os
import re
import sys

LAYER = {"domain": 0, "error": 1, "db": 1, "scripts": 2, "runs": 3, "llm": 4,
         "lsp": 2, "supervisor": 9, "lib": 9}


def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    return tuple(rel) if rel != ["lib"] else ()


def strip_tests_and_comments(text):
    # Drop `#[cfg(test)] mod tests { … }` (test code may import anything of its file)
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#"(.*?)"#', '""', text, flags=re.S)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def expand(path):
    """`a::{b, c::{d}}` → [a::b, a::c::d] (enough for module resolution)."""
    m = re.match(r"^([^{]*)\{(.*)\}$", path.strip(), flags=re.S)
    if not m:
        return [path.strip()]
    head, body = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            out += expand(head + p.strip())
    return out


def references(module, text):
    """Absolute module paths (tuples) this file's code names."""
    refs = []
    for stmt in re.findall(r"\buse\s+([^;]+);", text):
        refs += expand(" ".join(stmt.split()))
    refs += re.findall(r"\b((?:crate|super)(?:::\w+)+)", text)
    out = []
    for r in refs:
        segs = [s.strip() for s in r.split("::") if s.strip()]
        if not segs:
            continue
        if segs[0] == "crate":
            out.append(tuple(segs[1:]))
        elif segs[0] == "super":
            base = list(module[:-1])
            segs = segs[1:]
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
            out.append(tuple(base + segs))
    return out


def resolve(modules, path):
    """The longest prefix of `path` that is a module file."""
    for n in range(len(path), 0, -1):
        if path[:n] in modules:
            return path[:n]
    return None


def cycles(graph):
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "actors/src"
    files = {}
    for d, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                p = os.path.join(d, name)
                files[module_of(root, p)] = p
    graph = {m: set() for m in files}
    for m, p in files.items():
        text = strip_tests_and_comments(open(p, encoding="utf-8").read())
        for ref in references(m, text):
            target = resolve(files, ref)
            # A file naming its own submodules (`mod x;` + `x::…`) or itself is no edge.
            if target and target[: len(m)] != m:
                graph[m].add(target)
    problems = []
    for c in cycles(graph):
        problems.append("circle: " + " -> ".join("::".join(x) or "lib" for x in c))
    for m, targets in sorted(graph.items()):
        lm = LAYER.get(m[0] if m else "lib")
        for t in sorted(targets):
            lt = LAYER.get(t[0])
            if lm is None or lt is None:
                problems.append(f"unknown capability: {'::'.join(m)} -> {'::'.join(t)}")
            elif m[0] != t[0] and lt > lm:
                problems.append(f"upward import: {'::'.join(m)} -> {'::'.join(t)}")
            elif m and m[0] == "lsp" and t[0] not in ("lsp", "domain", "error", "db"):
                problems.append(f"lsp imports another capability: {'::'.join(t)}")
    edges = sum(len(v) for v in graph.values())
    for p in problems:
        print(p)
    print(f"{len(files)} files, {edges} imports between them, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
