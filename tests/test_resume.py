"""A stopped run goes on from its last validated epoch and gives the numbers of an unbroken run."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import quick_overrides, typed_overrides
from recbole_gfm.quick_start import run

RUN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_recbole_gfm.py")
# what must not change when a run is stopped and resumed
SAME = ("best_valid_score", "best_valid_result", "test_result", "per_user", "best_epoch", "epochs_trained", "stopped_early")


class Stop(Exception):
    """Stands for the kill: raised by the run's callback after a validation."""


def stop_after(epoch: int, error: type[BaseException] = KeyboardInterrupt):
    def callback(validated: int, score: float) -> None:
        if validated == epoch:
            raise error()

    return callback


def snapshots(folder: str = "saved") -> list[str]:
    return glob.glob(os.path.join(folder, "*-resume-*.pth"))


def settings(model: str, ml100k_slice: str, typed_slice: dict) -> tuple[str, dict]:
    if model == "GFM":
        return typed_slice["dataset"], typed_overrides(typed_slice, epochs=5, stopping_step=10)
    extra = {"MAX_ITEM_LIST_LENGTH": 10, "n_layers": 1} if model == "SASRec" else {}
    return "ml-100k-slice", quick_overrides(ml100k_slice, epochs=5, stopping_step=10, learning_rate=0.01, **extra)


@pytest.mark.parametrize("model", ["BPR", "LightGCN", "SASRec", "GFM"])
def test_a_stopped_run_resumes_with_the_numbers_of_an_unbroken_one(model, ml100k_slice, typed_slice, workdir):
    dataset, config = settings(model, ml100k_slice, typed_slice)
    unbroken = run(model, dataset, config_dict=config)
    assert unbroken["resumed_at_epoch"] is None and unbroken["epochs_trained"] == 5
    assert snapshots() == [], "training ended: no snapshot is left behind"

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C after validating epoch 1 (0-based)
        run(model, dataset, config_dict=config, callback_fn=stop_after(1))
    assert len(snapshots()) == 1

    seen: list[int] = []
    resumed = run(model, dataset, config_dict=config, callback_fn=lambda epoch, score: seen.append(epoch))
    assert resumed["resumed_at_epoch"] == 2
    assert seen == [0, 1, 2, 3, 4], "the curve so far is replayed, then training goes on"
    for key in SAME:  # compared as JSON: per-user values hold NaN where a metric does not apply
        assert json.dumps(resumed[key], sort_keys=True) == json.dumps(unbroken[key], sort_keys=True), key
    assert snapshots() == [] and glob.glob("saved/*-resume-*") == [], "training ended: the snapshot is removed"


def test_a_snapshot_of_other_settings_is_never_read(ml100k_slice, workdir):
    config = quick_overrides(ml100k_slice, epochs=4, stopping_step=10, learning_rate=0.01)
    with pytest.raises(KeyboardInterrupt):
        run("BPR", "ml-100k-slice", config_dict=config, callback_fn=stop_after(1))
    other = run("BPR", "ml-100k-slice", config_dict={**config, "learning_rate": 0.02})
    assert other["resumed_at_epoch"] is None and other["epochs_trained"] == 4
    assert len(snapshots()) == 1, "the first run's snapshot is still there for it"
    # where output goes and what is printed are not part of the key
    quiet = run("BPR", "ml-100k-slice", config_dict={**config, "state": "CRITICAL", "results_dir": "elsewhere"})
    assert quiet["resumed_at_epoch"] == 2


def test_a_failed_run_leaves_no_snapshot_and_resume_can_be_turned_off(ml100k_slice, workdir):
    config = quick_overrides(ml100k_slice, epochs=4, stopping_step=10)
    with pytest.raises(Stop):
        run("BPR", "ml-100k-slice", config_dict=config, callback_fn=stop_after(1, Stop))
    assert snapshots() == [], "a failure would repeat from the snapshot: it is removed"

    off = {**config, "resume_training": False}
    with pytest.raises(KeyboardInterrupt):
        run("BPR", "ml-100k-slice", config_dict=off, callback_fn=stop_after(1))
    assert snapshots() == []


def test_a_damaged_snapshot_is_moved_aside_and_training_starts_over(ml100k_slice, workdir):
    config = quick_overrides(ml100k_slice, epochs=4, stopping_step=10, learning_rate=0.01)
    unbroken = run("BPR", "ml-100k-slice", config_dict=config)
    with pytest.raises(KeyboardInterrupt):
        run("BPR", "ml-100k-slice", config_dict=config, callback_fn=stop_after(1))
    (path,) = snapshots()
    with open(path, "r+b") as f:  # one byte changed: the sha256 it starts with no longer matches
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    again = run("BPR", "ml-100k-slice", config_dict=config)
    assert again["resumed_at_epoch"] is None
    assert again["test_result"] == unbroken["test_result"]
    assert glob.glob(f"{path}.corrupt-*"), "kept for inspection"


def test_a_foundation_trainer_does_not_snapshot(typed_slice, workdir):
    config = typed_overrides(typed_slice, epochs=4, eval_step=1, stopping_step=10)
    with pytest.raises(KeyboardInterrupt):
        run("HGNN", typed_slice["dataset"], config_dict=config, callback_fn=stop_after(1))
    assert snapshots() == [], "its best encoder lives in memory: it trains from the start"


def result(out: str) -> dict:
    path = out.strip().splitlines()[-1].removeprefix("result file: ")
    with open(path) as f:
        return json.load(f)


def test_a_run_killed_with_sigkill_resumes_from_the_command_line(ml100k_slice, workdir):
    with open("run.yaml", "w") as f:
        json.dump(quick_overrides(ml100k_slice, epochs=6, stopping_step=10, MAX_ITEM_LIST_LENGTH=10, n_layers=1), f)  # JSON is YAML
    args = [sys.executable, RUN, "--model=SASRec", "--dataset=ml-100k-slice", "--config_files=run.yaml"]
    unbroken = result(subprocess.run(args, capture_output=True, text=True, check=True).stdout)

    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not snapshots() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert snapshots(), "the run was killed after a validation it could go on from"

    resumed = result(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    assert resumed["resumed_at_epoch"] >= 1
    for key in ("best_valid_score", "best_valid_result", "test_result", "best_epoch", "epochs_trained"):
        assert resumed[key] == unbroken[key], key
    assert snapshots() == []
