#!/usr/bin/env bash
# Set up .venv and run the test suite (ruff, then pytest) on the real datasets.
# Arguments go to pytest; without any it runs every test, as CI does.
# The fast tier, to run after each change: scripts/test.sh -m "not slow"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup_venv.sh
export CRYSTALRL_DATA_DIR="${CRYSTALRL_DATA_DIR:-$root/../shared/datasets}"
.venv/bin/ruff check src tests scripts benchmarks
.venv/bin/python -m pytest "$@"
