#!/usr/bin/env bash
# Builds the CPython-for-WASI component (build/wasi/cpython.wasm) with componentize-py,
# against the WASI WIT of the wasmtime-wasi crate the server uses, so guest and host
# agree. Skips the work when the inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

out=build/wasi
# The runner reports the exit status with `wasi:cli/exit.exit-with-code` (WASI 0.2.12);
# the name differs from the earlier `python.wasm`, whose runner
# wrote a status file, so a host of either kind never loads the other's component.
comp=cpython
tools=build/tools
mkdir -p "$out"

# componentize-py from PyPI, installed with uv into the tools environment.
if [ ! -x "$tools/bin/componentize-py" ]; then
  [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
  [ -x "$tools/bin/uv" ] || "$tools/bin/pip" install -q uv
  "$tools/bin/uv" pip install -q --python "$tools/bin/python" componentize-py==0.25.1
fi

# The WIT that wasmtime-wasi ships, one folder per package as componentize-py wants.
wasi_dir=$(cargo metadata --format-version 1 2>/dev/null | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in meta["packages"] if p["name"] == "wasmtime-wasi"))')
deps="$wasi_dir/src/p2/wit/deps"
[ -d "$deps" ] || { echo "build-wasi: no WIT at $deps" >&2; exit 1; }
rm -rf "$out/wit" && mkdir -p "$out/wit/deps"
for f in "$deps"/*.wit; do
  name=$(basename "$f" .wit)
  mkdir -p "$out/wit/deps/$name" && cp "$f" "$out/wit/deps/$name/$name.wit"
done
cli_version=$(sed -n 's/^package wasi:cli@\([0-9.]*\);/\1/p' "$deps/cli.wit")
cat > "$out/wit/world.wit" <<WIT
package scriptorium:runner;

world runner {
  include wasi:cli/command@$cli_version;
}
WIT

stamp=$( (cat sandbox/wasi/runner.py scripts/build-wasi.sh; ls -l "$deps"; "$tools/bin/componentize-py" --version) | sha256sum | cut -c1-16)
if [ -f "$out/$comp.wasm" ] && [ "$(cat "$out/$comp.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
echo "build-wasi: building $out/$comp.wasm (wasi:cli@$cli_version)"
rm -rf "$out/bindings"
"$tools/bin/componentize-py" -d "$out/wit" -w runner componentize runner -p sandbox/wasi -o "$out/$comp.wasm.tmp"
mv "$out/$comp.wasm.tmp" "$out/$comp.wasm"
# The exact CPython version, as the interpreter embeds it in its version string.
version=$(grep -aoE '3\.1[0-9]\.[0-9]+ \(' "$out/$comp.wasm" | head -n1 | cut -d' ' -f1 || true)
echo "${version:-3.14}" > "$out/$comp.version"
echo "$stamp" > "$out/$comp.stamp"
echo "build-wasi: CPython ${version:-3.14} for WASI, $(du -h "$out/$comp.wasm" | cut -f1)"
