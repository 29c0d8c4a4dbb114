# Scriptorium: `make run` sets up what is missing, builds and starts the app;
# `make test` sets up what the tests need and runs them all.

CARGO ?= cargo
DATA ?= data
LISTEN ?= 127.0.0.1:8080

.PHONY: run test soak bench setup setup-test build wasi lsp frontend build123d test-windows check-windows check clean ts-types

## Install what is missing, build, and start the server on http://$(LISTEN).
run: build wasi lsp frontend
	./target/release/scriptorium serve --data $(DATA) --listen $(LISTEN)

build: setup
	$(CARGO) build --release --bin scriptorium

## The CPython-for-WASI component (componentize-py from PyPI, via uv).
wasi: setup
	scripts/build-wasi.sh

## The language servers (pyrefly, ruff, ty, python-lsp-server; from PyPI via uv).
lsp: setup
	scripts/setup-lsp.sh

## The browser UI (React + Monaco + three.js, from npm), built into frontend/dist.
frontend: setup
	cd frontend && npm ci --no-audit --no-fund && npm run build

## Optional: the build123d interpreter (a uv venv with build123d from PyPI, ~1 GB).
build123d: setup
	scripts/setup-build123d.sh

## Install what the tests need and run every test.
test: setup-test wasi lsp frontend build123d
	$(MAKE) check
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) test-windows
	cd frontend && npm test && npm run e2e

## The load and fault suite, full size (minutes); its short form runs in `make test`.
soak: setup-test
	SCRIPTORIUM_SOAK=full $(CARGO) test --test tests soak:: -- --nocapture --test-threads=1

## The whole server built for Windows (x86_64-pc-windows-gnu, mingw-w64) and tested
## under Wine: the job-object sandbox attacked, exec and serve with the wasi backend.
test-windows: setup-test wasi
	CARGO="$(CARGO)" scripts/test-windows.sh

## Only type-check the Windows build (no Wine).
check-windows: setup-test
	$(CARGO) check --target x86_64-pc-windows-gnu --bin scriptorium

## Benchmarks; copy the tables into docs/benchmarks.md.
bench: setup wasi lsp build123d
	$(CARGO) bench --bench repo
	$(CARGO) bench --bench runs
	$(CARGO) bench --bench lsp
	$(CARGO) bench --bench build123d
	$(CARGO) bench --bench deps
	$(CARGO) bench -p scriptorium-sandbox --bench sandbox

## Rewrite frontend/src/generated from the Rust API types (a test fails while they differ).
ts-types:
	SCRIPTORIUM_WRITE_TS=1 $(CARGO) test -p scriptorium --lib api::bindings

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

## Formatting, lints and import layering: rustfmt, clippy with warnings as errors, no
## import circle inside `actors`, and the frontend's lint when it has one.
check:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	scripts/check-imports.py actors/src
	@if node -e "process.exit(require('./frontend/package.json').scripts?.lint ? 0 : 1)"; \
	then cd frontend && npm run lint; else echo "frontend: no lint script"; fi

clean:
	$(CARGO) clean
	rm -rf build
