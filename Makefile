# Scriptorium: `make run` sets up what is missing, builds and starts the app;
# `make test` sets up what the tests need and runs them all.

CARGO ?= cargo
DATA ?= data
LISTEN ?= 127.0.0.1:8080

.PHONY: run test bench setup build check clean

## Install what is missing (system packages), build, and start the server.
run: setup build
	./target/release/scriptorium serve --data $(DATA) --listen $(LISTEN)

build: setup
	$(CARGO) build --release --bin scriptorium

## Install what the tests need and run every test.
test: setup
	$(CARGO) test --workspace --no-fail-fast

## Benchmarks (figures go to docs/benchmarks.md by hand after a run).
bench: setup
	$(CARGO) bench --bench repo

setup:
	@scripts/setup.sh

check:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
