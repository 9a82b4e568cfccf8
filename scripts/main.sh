#!/usr/bin/env bash
# Set up .venv if needed, prepare ml-100k-typed (from the recbole wheel: no download), then run the
# quick leaderboard (properties/benchmark/quick.yaml). Finished cells are kept: a re-run resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
.venv/bin/python -m recbole_gfm.data.prepare ml-100k-typed
exec .venv/bin/python run_recbole_gfm.py --benchmark properties/benchmark/quick.yaml "$@"
