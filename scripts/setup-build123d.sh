#!/usr/bin/env bash
# The build123d interpreter environment (~1 GB), in build/build123d. Optional for
# `make run`; `make test` installs it.
exec "$(dirname "$0")/uv-venv.sh" build/build123d "build123d==0.13.*"
