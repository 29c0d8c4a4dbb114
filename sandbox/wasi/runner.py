"""Runs one user script inside the CPython-for-WASI component.

The host passes argv as: [component, SCRIPT, INPUT, ARGS...], with the run directory
preopened at /run. The script runs as __main__ with sys.argv = [SCRIPT, INPUT, ...] and
the run directory as its working directory. Its exit status goes to the host through
`wasi:cli/exit.exit-with-code` (the wasi:cli/run export can only say ok or error). No
file carries it: the host never reads back a path the script could have replaced.

componentize-py bundles only the modules imported while this module initialises, so the
commonly used standard library is imported here.
"""

import importlib
import sys

COMMON = [
    "abc", "argparse", "array", "base64", "binascii", "bisect", "calendar", "cmath", "codecs",
    "collections", "collections.abc", "colorsys", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "enum", "fnmatch", "fractions", "functools", "getopt",
    "glob", "gzip", "hashlib", "heapq", "hmac", "html", "html.parser", "io", "ipaddress",
    "itertools", "json", "keyword", "locale", "logging", "math", "numbers", "operator", "os",
    "os.path", "pathlib", "pprint", "random", "re", "reprlib", "secrets", "shlex", "shutil",
    "statistics", "string", "struct", "tempfile", "textwrap", "time", "timeit", "tomllib",
    "traceback", "types", "typing", "unicodedata", "uuid", "warnings", "zipfile", "zlib",
    "xml.etree.ElementTree", "urllib.parse", "email", "email.message", "bz2", "lzma", "queue",
    "sqlite3", "graphlib", "weakref", "inspect", "dis", "ast", "tokenize", "platform",
    # runpy needs these to run a script by path.
    "pkgutil", "importlib.util", "importlib.machinery", "zipimport",
    # Present so scripts get a clear error from them, not a missing module.
    "socket", "select", "selectors", "signal", "threading", "subprocess",
]
for _name in COMMON:
    try:
        importlib.import_module(_name)
    except Exception:  # not available in this WASI build
        pass

import os  # noqa: E402
import runpy  # noqa: E402
import traceback  # noqa: E402

from wit_world import exports  # noqa: E402
from wit_world.imports import exit as wasi_exit  # noqa: E402

RUN_DIR = "/run"


class Run(exports.Run):
    def run(self) -> None:
        args = sys.argv[1:]
        code = 0
        try:
            os.chdir(RUN_DIR)
            sys.argv = args
            runpy.run_path(args[0], run_name="__main__")
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
        # As a native process would: the status is one byte (sys.exit(256) is 0).
        wasi_exit.exit_with_code(code & 0xFF)
