"""A spare sandbox for warm starts (passed to the interpreter with -c).

Invoked as: python -I -u -c <this> MODULE... inside a sandbox made for a run that has
not been asked for yet. It imports the modules (their output goes to a log in the
private /tmp, never to a run's output), writes the ready marker on stdout, and waits
for one request on stdin: a JSON line {"cwd", "home", "argv", "cpu_seconds"}. Then it
runs argv as `python -I -u ARGV...` would: argv[0] as __main__, sys.argv = argv.

The CPU limit was raised at start-up by the import's allowance; here it is set to what
the import used plus the run's own `cpu_seconds`, so the run gets exactly its budget.
"""

import os
import sys

READY = b"\0scriptorium-warm-ready\n"
FAILED = b"\0scriptorium-warm-failed: "


def _warm_up(modules):
    import importlib

    saved = os.dup(1), os.dup(2)
    log = os.open("/tmp/.scriptorium-warm.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        for m in modules:
            importlib.import_module(m)
        problem = None
    except BaseException as e:  # noqa: BLE001 - any failure means: no warm start
        problem = f"{type(e).__name__}: {e}"
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    for fd in (*saved, log):
        os.close(fd)
    if problem is not None:
        os.write(1, FAILED + problem.replace("\n", " ").encode("utf-8", "replace") + b"\n")
        os._exit(1)


def _request():
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(0, 65536)
        if not chunk:
            os._exit(0)  # the server let the spare go
        line += chunk
    # The script sees an empty stdin, as in a cold run.
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    import json

    return json.loads(line)


def _run(req):
    import builtins
    import io
    import math
    import resource
    import types

    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = math.ceil(used.ru_utime + used.ru_stime)
    cpu = int(req["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (spent + cpu, spent + cpu + 1))
    os.chdir(req["cwd"])
    os.environ["HOME"] = req["home"]
    path = req["argv"][0]
    sys.argv = list(req["argv"])
    main = types.ModuleType("__main__")
    main.__dict__.update({"__file__": path, "__builtins__": builtins, "__cached__": None})
    sys.modules["__main__"] = main
    with io.open_code(path) as f:
        source = f.read()
    try:
        code = compile(source, path, "exec", dont_inherit=True)
        exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - reported as Python itself would
        # Without this runner's frame: the traceback starts in the script.
        tb = e.__traceback__.tb_next if e.__traceback__ else None
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        sys.exit(1)


_warm_up(sys.argv[1:])
os.write(1, READY)
_run(_request())
