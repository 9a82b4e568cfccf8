#!/usr/bin/env bash
# Create ./.venv with recbole-gfm installed from the tested pins in requirements/constraints.txt.
# Idempotent: does nothing when .venv was already made from the same constraints and pyproject.
# PYTHON=python3.12 picks another interpreter (>= 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.setup-fingerprint
want=$(cat requirements/constraints.txt pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "recbole-gfm needs Python >= 3.11"'
echo "setting up .venv with $("$PY" --version) (a few minutes the first time) ..."
"$PY" -m venv .venv
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build.
"${pip[@]}" install -c requirements/constraints.txt torch
# ray 2.6.3 (needed only by recbole.quick_start, which we never import) has no wheel for
# Python >= 3.12; pyproject requires recbole only below 3.12, so install it here without deps.
if .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
  "${pip[@]}" install --no-deps -c requirements/constraints.txt recbole
fi
"${pip[@]}" install -c requirements/constraints.txt -e ".[test]"
echo "$want" > "$stamp"
