"""The benchmark scripts run end to end on tiny data and print their reports (no figure is checked here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", name), *args],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=600,
    )  # fmt: skip


def test_link_prediction_reports_both_settings_with_aucs_in_range(typed_slice):
    sets = [
        f"data_path={typed_slice['data_path']}", f"cache_dir={typed_slice['cache_dir']}",
        "load_col={inter: [user_id, item_id, rating, timestamp], item: [item_id, item_type]}",
        "item_type_field=item_type", "text_fields=[title, genres]", "epochs=2", "eval_step=1",
    ]  # fmt: skip
    out = script("link_prediction.py", "--dataset", typed_slice["dataset"], *[a for s in sets for a in ("--set", s)])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| quantity | exclude_target_edges: True | exclude_target_edges: False |" in out.stdout
    aucs = [float(v) for line in out.stdout.splitlines() if line.startswith("| AUC") for v in line.split("|")[2:4]]
    assert len(aucs) == 12 and all(0.0 <= v <= 1.0 for v in aucs)
    assert "Command: `" in out.stdout and "Versions:" in out.stdout


def test_scaling_runs_every_case_then_reuses_the_stored_ones(tmp_path):
    args = ["--sizes", "3e3", "6e3", "--models", "BPR", "GFM", "--nproc", "1", "2", "--max-steps", "2",
            "--eval-users", "50", "--threads", "1"]  # fmt: skip
    env = {"RECBOLE_GFM_SCALING_ROOT": str(tmp_path)}
    first = script("scaling.py", *args, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = [line for line in first.stdout.splitlines() if line.startswith("| scaling-")]
    # per set: BPR on 1 and 2 processes, the foundation once, GFM on 1 and 2 processes
    assert len(rows) == 10 and not any("error" in r for r in rows), "\n".join(rows)
    assert sorted(re.split(r"\s*\|\s*", r)[2] for r in rows) == sorted(["BPR"] * 4 + ["GFM-foundation"] * 2 + ["GFM"] * 4)
    exponents = [line for line in first.stdout.splitlines() if line.startswith("| BPR | 1 |") or line.startswith("| GFM | 2 |")]
    assert len(exponents) == 2  # two sizes: a fitted exponent per model and process count
    assert "command: `.venv/bin/python benchmarks/scaling.py --sizes 3e3 6e3" in first.stdout

    again = script("scaling.py", *args, env=env)
    assert again.returncode == 0 and again.stderr.count(": stored") == 10
    assert [line for line in again.stdout.splitlines() if line.startswith("| scaling-")] == rows
