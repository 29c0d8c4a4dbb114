#!/usr/bin/env bash
# Installs what Scriptorium needs and the machine lacks. Idempotent: a second run only
# checks. System packages come from Debian (apt) when running as root.
#   scripts/setup.sh          what running the app needs
#   scripts/setup.sh --test   and what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v git >/dev/null || missing+=(git)
command -v cc >/dev/null || missing+=(gcc)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v npm >/dev/null || missing+=(npm)
if [ "${1:-}" = "--test" ]; then
  # The end-to-end tests drive Debian's chromium; some tests use curl like a user would.
  command -v chromium >/dev/null || missing+=(chromium)
  command -v curl >/dev/null || missing+=(curl)
  # The Windows build (scripts/test-windows.sh): mingw-w64 links it (wasmtime's fibers,
  # SQLite, libgit2 and ring compile C for the target), wine64 runs its tests.
  command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(mingw-w64)
  command -v wine64 >/dev/null || [ -x /usr/lib/wine/wine64 ] || missing+=(wine64)
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "setup: please install: ${missing[*]}" >&2
    exit 1
  fi
fi
command -v cargo >/dev/null || { echo "setup: Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }

if [ "${1:-}" = "--test" ]; then
  # The Windows build and its tests under Wine (scripts/test-windows.sh).
  if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
    rustup target add x86_64-pc-windows-gnu
  fi
fi
