#!/usr/bin/env bash
# The language servers, in build/lsp: pyrefly (the default type-aware server), ruff (its
# `ruff server` runs beside it for lint, format and fixes), ty (a configurable
# alternative) and python-lsp-server with the ruff plugin (the old default, kept as the
# benchmark's baseline and as a configurable alternative).
exec "$(dirname "$0")/uv-venv.sh" build/lsp "pyrefly==1.4.*" "ruff==0.17.*" "ty==0.0.*" \
  "python-lsp-server==1.15.*" "python-lsp-ruff==2.*"
