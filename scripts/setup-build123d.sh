#!/usr/bin/env bash
# Creates the build123d interpreter environment (build/build123d): a venv on the
# machine's CPython with build123d from PyPI, installed with uv (~1 GB). Optional for
# `make run`; `make test` installs it. Skips the work when it is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=build/tools
venv=build/build123d
want="build123d==0.13.*"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.wanted" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
[ -x "$tools/bin/python" ] || python3 -m venv "$tools"
[ -x "$tools/bin/uv" ] || "$tools/bin/pip" install -q uv
base=$(command -v python3.11 || command -v python3)
"$tools/bin/uv" venv -q --allow-existing "$venv" --python "$base"
"$tools/bin/uv" pip install -q --python "$venv/bin/python" "$want"
echo "$want" > "$venv/.wanted"
echo "setup-build123d: $("$venv/bin/python" -c 'import importlib.metadata as m; print("build123d", m.version("build123d"))')"
