# Scriptorium: `make run` sets up what is missing, builds and starts the app;
# `make test` sets up what the tests need and runs them all.

CARGO ?= cargo
DATA ?= data
LISTEN ?= 127.0.0.1:8080

.PHONY: run test soak bench setup setup-test build wasi lsp frontend build123d test-windows check-windows check clean

## Install what is missing, build, and start the server on http://$(LISTEN).
run: build wasi lsp frontend
	./target/release/scriptorium serve --data $(DATA) --listen $(LISTEN)

build: setup
	$(CARGO) build --release --bin scriptorium

## The CPython-for-WASI component (componentize-py from PyPI, via uv).
wasi: setup
	scripts/build-wasi.sh

## The language server (python-lsp-server + ruff, from PyPI via uv).
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
	$(CARGO) bench -p scriptorium-sandbox --bench sandbox

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

check:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf build
