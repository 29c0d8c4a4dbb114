#!/usr/bin/env bash
# Creates (or keeps) a venv DIR on the machine's CPython with the given packages from
# PyPI, installed with uv (itself from PyPI, in build/tools). Skips the work when DIR
# already has exactly these packages.
#   scripts/uv-venv.sh DIR PACKAGE_SPEC...
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: scripts/uv-venv.sh DIR PACKAGE_SPEC..." >&2; exit 2; }
venv=$1
shift
want="$*"
tools=build/tools
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.wanted" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
[ -x "$tools/bin/python" ] || python3 -m venv "$tools"
[ -x "$tools/bin/uv" ] || "$tools/bin/pip" install -q uv
base=$(command -v python3.11 || command -v python3)
"$tools/bin/uv" venv -q --allow-existing "$venv" --python "$base"
"$tools/bin/uv" pip install -q --python "$venv/bin/python" "$@"
echo "$want" > "$venv/.wanted"
echo "uv-venv: $venv has $want"
