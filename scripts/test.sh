#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite on two workers (extra arguments go to pytest; -n 0: one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # two workers on two cores: idle torch threads sleep, not spin
exec .venv/bin/python -m pytest -q -n "${TEST_WORKERS:-2}" "$@"
