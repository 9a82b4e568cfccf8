"""One-epoch end-to-end runs of RecBole's baselines through run_recbole_gfm.py's pipeline."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from recbole.data import data_preparation
from recbole.utils import init_seed

from conftest import quick_overrides
from recbole_gfm.cli import main
from recbole_gfm.config import Config
from recbole_gfm.quick_start import run
from recbole_gfm.registry import create_dataset, get_trainer

BASELINES = ["Pop", "ItemKNN", "BPR", "LightGCN", "NGCF", "SASRec", "GRU4Rec"]


@pytest.mark.parametrize("model", BASELINES)
def test_one_epoch_run_saves_reloads_and_evaluates(model, ml100k_slice, workdir):
    record = run(model, "ml-100k-slice", config_dict=quick_overrides(ml100k_slice))
    for split in ("best_valid_result", "test_result"):
        base = {"recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10"}
        assert base <= set(record[split])
        # beyond the metrics themselves only group keys of them: items by their train history on this slice
        assert {key.split("[")[0] for key in record[split]} == base
        buckets = {"items=warm]", "items=cold]", "items=1-4]", "items=5-19]", "items=20+]"}
        assert {key.split("[", 1)[1] for key in record[split] if "[" in key} <= buckets
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in record[split].values())
    assert record["test_result"]["hit@10"] > 0, "a trained model should hit something among 80 users"

    # the best checkpoint holds plain data only: it loads under torch's safe default
    checkpoint = torch.load(record["saved_model_file"], weights_only=True)
    assert checkpoint["config"]["model"] == model

    # and it is what the test evaluation used: a fresh model loaded from it scores the same
    config = Config(model, "ml-100k-slice", config_dict=quick_overrides(ml100k_slice))
    init_seed(config["seed"], config["reproducibility"])  # the same random split as the run
    _, _, test_data = data_preparation(config, create_dataset(config))
    fresh = config.model_class(config, test_data._dataset)
    trainer = get_trainer(config)(config, fresh)
    again = trainer.evaluate(test_data, load_best_model=True, model_file=record["saved_model_file"])
    assert dict(again) == {k: v for k, v in record["test_result"].items() if k in again}  # the run adds group keys

    with open(record["result_file"]) as f:
        stored = json.load(f)
    assert stored["test_result"] == record["test_result"]
    assert stored["config"]["model"] == model and stored["seed"] == 2020
    assert stored["versions"]["recbole"] == "1.2.1"


def test_same_seed_gives_identical_metrics(ml100k_slice, workdir):
    first = run("BPR", "ml-100k-slice", config_dict=quick_overrides(ml100k_slice, epochs=2))
    second = run("BPR", "ml-100k-slice", config_dict=quick_overrides(ml100k_slice, epochs=2))
    assert first["best_valid_result"] == second["best_valid_result"]
    assert first["test_result"] == second["test_result"]
    other = run("BPR", "ml-100k-slice", config_dict=quick_overrides(ml100k_slice, epochs=2, seed=7))
    assert other["test_result"] != first["test_result"], "the seed must matter"


def test_the_record_names_the_tested_epoch_and_the_time_it_took(ml100k_slice, workdir):
    record = run("BPR", "ml-100k-slice", config_dict=quick_overrides(ml100k_slice, epochs=4, learning_rate=0.05))
    checkpoint = torch.load(record["saved_model_file"], weights_only=True)
    assert record["best_epoch"] == checkpoint["epoch"] and record["best_valid_score"] == checkpoint["best_valid_score"]
    assert 0 < record["train_time_to_best_s"] <= record["train_time_s"]


def test_cli_runs_a_model_with_overrides(ml100k_slice, workdir, capsys):
    code = main(
        [
            "--model=BPR",
            "--dataset=ml-100k-slice",
            f"--data_path={ml100k_slice}",
            "--epochs=1",
            "--state=ERROR",
            "--show_progress=False",
            "--embedding_size=16",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    result_file = out.strip().splitlines()[-1].removeprefix("result file: ")
    with open(result_file) as f:
        stored = json.load(f)
    assert stored["config"]["embedding_size"] == 16


def test_cli_reports_missing_dataset_with_the_path_searched(workdir, capsys):
    assert main(["--model=BPR", "--dataset=no-such-data", "--data_path=nowhere"]) == 2
    err = capsys.readouterr().err
    assert "nowhere/no-such-data/no-such-data.inter" in err


def test_cli_suggests_close_model_names(workdir, capsys):
    assert main(["--model=LightGNC", "--dataset=ml-100k"]) == 2
    assert "LightGCN" in capsys.readouterr().err


def test_run_recbole_gfm_never_imports_recbole_quick_start(ml100k_slice, workdir):
    run("Pop", "ml-100k-slice", config_dict=quick_overrides(ml100k_slice))
    assert "recbole.quick_start" not in sys.modules
    assert "ray" not in sys.modules
