"""The run goes one way: one dataset and split per run, the foundation prepared before the model."""

from __future__ import annotations

import os

import pytest

import recbole_gfm.quick_start as quick_start
import recbole_gfm.run.inputs as inputs
import recbole_gfm.run.stages as stages
from conftest import typed_overrides
from recbole_gfm.foundation import store
from recbole_gfm.config import ConfigError
from recbole_gfm.model.gfm import GFM
from recbole_gfm.quick_start import run


def test_a_gfm_run_loads_and_splits_the_data_once_and_prepares_its_foundation_first(typed_slice, workdir, monkeypatch):
    calls = []
    for name in ("create_dataset", "data_preparation"):
        original = getattr(stages, name)
        monkeypatch.setattr(stages, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    built = []
    init = GFM.__init__

    def record_init(self, config, dataset, text, foundation=None):
        built.append((config["foundation_path"], foundation.path))
        init(self, config, dataset, text, foundation)

    monkeypatch.setattr(GFM, "__init__", record_init)
    settings = typed_overrides(typed_slice, foundation={"epochs": 1, "eval_step": 1, "margin": 0.11})  # a new foundation
    record = run("GFM", typed_slice["dataset"], config_dict=settings, saved=False)
    assert calls == ["create_dataset", "data_preparation"]
    path = record["foundation_path"]
    assert built == [(path, path)] and os.path.isdir(path)  # prepared before the model was built


def test_the_foundation_artifact_is_read_once_per_run_trained_or_cached(typed_slice, workdir, monkeypatch):
    reads = []
    original = store._read_artifact
    monkeypatch.setattr(store, "_read_artifact", lambda path: reads.append(path) or original(path))
    settings = typed_overrides(typed_slice, foundation={"epochs": 1, "eval_step": 1, "margin": 0.13})
    trained = run("GFM", typed_slice["dataset"], config_dict=settings, saved=False)
    assert reads == [trained["foundation_path"]], "trained now, then read once"
    reads.clear()
    cached = run("GFM", typed_slice["dataset"], config_dict=settings, saved=False)
    assert cached["foundation_path"] == trained["foundation_path"] and reads == [cached["foundation_path"]]


def test_gfm_is_built_from_prepared_inputs_without_touching_a_file(typed_slice, workdir, monkeypatch):
    from recbole.utils import init_seed

    from recbole_gfm.config import Config

    settings = typed_overrides(typed_slice, foundation={"epochs": 1, "eval_step": 1, "margin": 0.14}, cold_item_prob=0.5)
    config = Config("GFM", typed_slice["dataset"], config_dict=settings)
    init_seed(config["seed"], True)
    split = stages.prepare_data(config)
    foundation = inputs.prepare_foundation(config, split)
    dataset = split.train_data.dataset
    text = inputs.item_text_embeddings(config, dataset)

    def no_file(*args, **kwargs):
        raise AssertionError(f"GFM's constructor touched a file: {args[:1]}")

    for name in ("open", "stat", "listdir", "scandir", "lstat"):
        monkeypatch.setattr(os, name, no_file)
    monkeypatch.setattr("builtins.open", no_file)
    model = GFM(config, dataset, text, foundation)
    monkeypatch.undo()
    assert model.content.shape[0] == dataset.item_num and hasattr(model, "cold_content")


def test_nosave_writes_no_checkpoint_for_the_model_or_its_foundation(typed_slice, workdir):
    settings = typed_overrides(typed_slice, foundation={"epochs": 1, "eval_step": 1, "margin": 0.12})
    record = run("GFM", typed_slice["dataset"], config_dict=settings, saved=False)
    assert record["saved_model_file"] is None
    assert not os.path.exists("saved") or os.listdir("saved") == []
    assert [f for f in os.listdir("results") if not f.startswith("GFM-")] == []  # no HGNN result file either


def test_a_multi_process_run_that_cannot_start_is_a_clear_error_before_anything_runs(typed_slice, workdir, monkeypatch):
    monkeypatch.setattr(quick_start, "spawn", lambda *a: pytest.fail("nothing may be spawned"))
    with pytest.raises(ConfigError, match="world_size=1, nproc=2"):
        run("BPR", typed_slice["dataset"], config_dict=typed_overrides(typed_slice, nproc=2, world_size=1))
