#!/usr/bin/env bash
# Installs the language server (python-lsp-server with the ruff plugin) into
# build/lsp with uv, from PyPI. Skips the work when it is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=build/tools
lsp=build/lsp
want="python-lsp-server==1.15.* python-lsp-ruff==2.*"
if [ -x "$lsp/bin/pylsp" ] && [ "$(cat "$lsp/.wanted" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
[ -x "$tools/bin/python" ] || python3 -m venv "$tools"
[ -x "$tools/bin/uv" ] || "$tools/bin/pip" install -q uv
# A plain CPython for the server itself (Debian's when present: no injected .pth files).
base=$(command -v python3.11 || command -v python3)
"$tools/bin/uv" venv -q --allow-existing "$lsp" --python "$base"
# shellcheck disable=SC2086
"$tools/bin/uv" pip install -q --python "$lsp/bin/python" $want
echo "$want" > "$lsp/.wanted"
echo "setup-lsp: $("$lsp/bin/pylsp" --version) with ruff $("$lsp/bin/ruff" --version | cut -d' ' -f2)"
