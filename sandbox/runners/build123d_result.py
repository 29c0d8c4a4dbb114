"""Runs a build123d script, then exports its top-level `result`.

Invoked as: python build123d_result.py SCRIPT [INPUT [ARGS...]]. The script runs as
__main__ with sys.argv = [SCRIPT, INPUT, ...], in the run directory. Afterwards a
top-level `result` (a Shape, Part, Compound, or a list of them) is written as
result.stl (export_stl) and result.glb (export_gltf, binary: part names and colours of a
Compound(children=[...]) are kept). Files the script writes itself stay as they are.
"""

import sys

# Nothing else at start-up: `traceback` alone (linecache, tokenize, re) costs more than
# a bare interpreter start, and is needed only when the script fails.


def fail(message: str, code: int = 3) -> None:
    print(f"scriptorium: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def notice(message: str) -> None:
    """The runner's own information: on stdout, so it does not read as an error."""
    print(f"scriptorium: {message}", flush=True)


def quiet_libraries() -> None:
    """joblib runs serially: it would otherwise warn, on stderr, that it has to."""
    import os

    os.environ.setdefault("JOBLIB_MULTIPROCESSING", "0")


def main() -> None:
    quiet_libraries()
    if len(sys.argv) < 2:
        fail("usage: build123d_result.py SCRIPT [INPUT [ARGS...]]", 2)
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    scope = {"__name__": "__main__", "__file__": script, "__builtins__": __builtins__}
    with open(script, encoding="utf-8") as f:
        code = compile(f.read(), script, "exec")
    try:
        exec(code, scope)
    except SystemExit as e:
        if e.code not in (None, 0):
            raise
    except BaseException:
        # The script's own error, shown without this runner's frames.
        import traceback

        etype, value, tb = sys.exc_info()
        traceback.print_exception(etype, value, tb.tb_next if tb else None)
        sys.exit(1)
    if "result" not in scope:
        notice(
            "the script defines no top-level `result`; nothing to export "
            "(assign the shape to `result` to see it in the viewer)"
        )
        return
    result = scope["result"]
    from build123d import Compound, Shape, export_gltf, export_stl

    if isinstance(result, (list, tuple)):
        parts = list(result)
        if not parts or not all(isinstance(p, Shape) for p in parts):
            fail(f"`result` must be a build123d shape or a list of shapes; got a list of {sorted({type(p).__name__ for p in parts})}")
        result = Compound(children=parts)
    elif not isinstance(result, Shape):
        fail(f"`result` must be a build123d Shape, Part, Compound or a list of them; got {type(result).__name__}")
    export_stl(result, "result.stl")
    export_gltf(result, "result.glb", binary=True)
    notice("exported result.stl and result.glb")


if __name__ == "__main__":
    main()
