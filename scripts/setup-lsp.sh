#!/usr/bin/env bash
# The language server: python-lsp-server with the ruff plugin, in build/lsp.
exec "$(dirname "$0")/uv-venv.sh" build/lsp "python-lsp-server==1.15.*" "python-lsp-ruff==2.*"
