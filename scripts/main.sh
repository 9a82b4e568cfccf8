#!/usr/bin/env bash
# Set up .venv if needed, then run the main job: short LightGCN and SASRec runs on ml-100k.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
for model in LightGCN SASRec; do
  .venv/bin/python run_recbole_gfm.py --model=$model --dataset=ml-100k --epochs=2 --state=WARNING "$@"
done
