#!/usr/bin/env bash
# Builds Scriptorium for Windows (x86_64-pc-windows-gnu, with Debian's mingw-w64) and
# runs its tests under Wine (Debian's wine64), as `make test` does:
#   1. sandbox/tests/windows.rs: the job-object backend attacked by a small Windows
#      program (scriptorium-job-probe), each limit checked against the run record;
#   2. the server binary: `interpreters`, `exec` with the wasi backend (CPython for WASI
#      needs no Windows Python), and `serve`: /api/health, login, save (syntax checked
#      with CPython for WASI), a run through the API, git and SQLite in the data
#      directory, no server secret in a script's environment.
# Fails when any check fails. Set up first: scripts/setup.sh --test, make wasi.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
CARGO=${CARGO:-cargo}
tgt=${CARGO_TARGET_DIR:-target}
wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
[ -x "$wine" ] || { echo "test-windows: wine64 is missing; run scripts/setup.sh --test" >&2; exit 1; }
export WINEDEBUG=-all
# A prefix of our own, kept between runs (creating one takes seconds).
export WINEPREFIX=${WINEPREFIX:-$HOME/.cache/scriptorium/wine}
mkdir -p "$(dirname "$WINEPREFIX")"
[ -f "$WINEPREFIX/system.reg" ] || "$wine" wineboot --init >/dev/null 2>&1
# Wine 8.0 lacks bcryptprimitives.dll (Rust's std imports its ProcessPrng): a stand-in
# built from scripts/wine/ goes into the prefix (only there; Windows has the real one).
shim="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$shim" ] || [ scripts/wine/bcryptprimitives.c -nt "$shim" ]; then
  x86_64-w64-mingw32-gcc -O2 -shared -o "$shim" scripts/wine/bcryptprimitives.c \
    scripts/wine/bcryptprimitives.def -lbcrypt
fi
# cargo starts the Windows test binaries through Wine.
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$wine"

step() { echo "test-windows: $*"; }
fail() { echo "test-windows: FAILED: $*" >&2; exit 1; }

step "building for $target"
started=$(date +%s)
$CARGO build --target $target --bin scriptorium
# The same packages as the build, so features (and the wasmtime build) are shared.
$CARGO test --target $target -p scriptorium -p scriptorium-sandbox --test windows --no-run
step "built in $(( $(date +%s) - started )) s"

step "job-object tests under $("$wine" --version)"
# One test at a time: under load, Wine 8.0 has failed a CreateProcess with
# ERROR_INTERNAL_ERROR (1359) while another test was starting processes.
timeout 300 $CARGO test --target $target -p scriptorium -p scriptorium-sandbox --test windows -- --test-threads=1 --nocapture

exe="$tgt/$target/debug/scriptorium.exe"
[ -f "$exe" ] || fail "no $exe"
winpath() { echo "Z:$(realpath "$1")" | tr / '\\'; }

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The component is copied: the Windows engine compiles its own `.cwasm` beside it (a
# Linux one does not load on Windows), kept in the target directory between runs.
[ -f build/wasi/cpython.wasm ] || fail "no build/wasi/cpython.wasm; run make wasi"
cache="$tgt/$target/wasi"
mkdir -p "$cache"
cmp -s build/wasi/cpython.wasm "$cache/cpython.wasm" || cp -p build/wasi/cpython.wasm "$cache/cpython.wasm"
cat > "$work/interpreters.toml" <<TOML
default = "wasi-cpython-3.14"
[limits]
wall_seconds = 30
memory_mib = 256
[detect]
enabled = false
[[interpreter]]
id = "wasi-cpython-3.14"
kind = "wasi"
component = '$(winpath "$cache/cpython.wasm")'
backends = ["wasi"]
TOML
toml=$(winpath "$work/interpreters.toml")

step "scriptorium interpreters"
out=$("$wine" "$exe" interpreters --file "$toml" 2>&1) || fail "interpreters: $out"
echo "$out"
grep -q "wasi-cpython-3.14" <<<"$out" || fail "the WASI interpreter is not listed"

step "scriptorium exec (wasi backend)"
printf 'first line\r\nsecond line\r\n' > "$work/input.txt"
cat > "$work/hello.py" <<'PY'
"""Reads its input, writes an artifact."""
import os, sys
lines = open(sys.argv[1]).read().splitlines()
print("lines:", lines)
print("secret:", os.environ.get("OPENROUTER_API_KEY", "absent"))
open("out.txt", "w").write("done\n")
PY
out=$(OPENROUTER_API_KEY=sk-or-test-secret "$wine" "$exe" exec --interpreters "$toml" --backend wasi \
  "$(winpath "$work/hello.py")" "$(winpath "$work/input.txt")" 2>&1) || fail "exec: $out"
echo "$out"
grep -q "lines: \['first line', 'second line'\]" <<<"$out" || fail "the script did not read its input"
grep -q "secret: absent" <<<"$out" || fail "a server secret reached the script"

cat > "$work/loop.py" <<'PY'
while True:
    pass
PY
set +e
out=$("$wine" "$exe" exec --interpreters "$toml" --backend wasi --timeout 3 "$(winpath "$work/loop.py")" 2>&1)
code=$?
set -e
echo "$out" | tail -2
[ $code = 124 ] || fail "an endless loop ended with $code, not the limit's 124"
grep -q "time limit" <<<"$out" || fail "the time limit is not named"

cat > "$work/hog.py" <<'PY'
blocks = [bytearray(16 << 20) for _ in range(64)]
print("allocated", len(blocks))
PY
set +e
out=$("$wine" "$exe" exec --interpreters "$toml" --backend wasi --memory 64 "$(winpath "$work/hog.py")" 2>&1)
code=$?
set -e
echo "$out" | tail -2
[ $code = 124 ] && grep -q "memory limit" <<<"$out" || fail "1 GiB in a 64 MiB guest: exit $code"

step "scriptorium serve"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data="$work/data"
mkdir -p "$data"
OPENROUTER_API_KEY=sk-or-test-secret SCRIPTORIUM_INTERPRETERS="$toml" \
  "$wine" "$exe" serve --data "$(winpath "$data")" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
  curl -sf "$base/api/health" >"$work/health.json" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; fail "the server exited"; }
  sleep 0.5
done
cat "$work/health.json" && echo
grep -q '"status"' "$work/health.json" || { tail -20 "$work/server.log"; fail "no /api/health answer"; }

jar="$work/cookies"
api() { # METHOD PATH [JSON]
  curl -s -b "$jar" -c "$jar" -X "$1" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} -w '\n%{http_code}' "$base$2"
}
body() { sed '$d' <<<"$1"; }
status() { tail -n1 <<<"$1"; }
r=$(api POST /api/login '{"username":"ed1","password":"1editor"}')
[ "$(status "$r")" = 200 ] || fail "login: $r"

# CRLF line endings, as a Windows editor saves them.
content=$(printf '"""Windows run."""\r\nimport os, sys\r\nprint("input:", open(sys.argv[1]).read().strip())\r\nprint("secret:", os.environ.get("OPENROUTER_API_KEY", "absent"))\r\nopen("result.txt", "w").write("ok")\r\n')
script=$(python3 -c 'import json,sys; print(json.dumps({"content": sys.argv[1]}))' "$content")
r=$(api POST /api/scripts "$script")
[ "$(status "$r")" = 201 ] || { tail -20 "$work/server.log"; fail "create: $r"; }
id=$(body "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
version=$(body "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
r=$(api PUT "/api/scripts/$id" "{\"content\":\"def f(:\\n\",\"base_version\":\"$version\"}")
[ "$(status "$r")" = 422 ] || fail "invalid Python was not refused: $r"
r=$(curl -s -b "$jar" -X PUT -H 'Content-Type: application/octet-stream' --data 'test data' \
  -w '\n%{http_code}' "$base/api/scripts/$id/test-data")
[ "$(status "$r")" = 200 ] || fail "test data: $r"
r=$(api POST /api/runs "{\"script_id\":$id,\"backend\":\"wasi\"}")
[ "$(status "$r")" = 202 ] || fail "run: $r"
run=$(body "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
for _ in $(seq 1 120); do
  r=$(api GET "/api/runs/$run")
  body "$r" | grep -q '"status":"\(succeeded\|failed\|cancelled\|interrupted\)"' && break
  sleep 0.5
done
shown=$(body "$r"); echo "${shown:0:1500}"
body "$r" | grep -q '"status":"succeeded"' || { tail -20 "$work/server.log"; fail "the run did not succeed"; }
r=$(api GET "/api/runs/$run/artifacts")
body "$r" | grep -q 'result.txt' || fail "no artifact: $r"
# The log, as the run's events kept it.
events=$(curl -s -b "$jar" -m 10 "$base/api/runs/$run/events" || true)
grep -q 'input: test data' <<<"$events" || fail "the run's log lacks its input: $events"
grep -q 'secret: absent' <<<"$events" || fail "a server secret reached the script: $events"

# The data directory, as the ordinary tools on the other side see it.
# (`-3`, not `| head`: under pipefail, git killed by SIGPIPE would fail the script.)
git --git-dir "$data/repo" log --oneline -3 ed1
git --git-dir "$data/repo" show "ed1:scripts/" >/dev/null || fail "git cannot read the repository"
[ -s "$data/scriptorium.db" ] || fail "no SQLite database"

kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
step "all Windows checks passed"
