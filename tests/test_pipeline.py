"""The run goes one way: one dataset and split per run, the foundation prepared before the model."""

from __future__ import annotations

import os

import pytest

import recbole_gfm.quick_start as quick_start
from conftest import typed_overrides
from recbole_gfm.config import ConfigError
from recbole_gfm.model.gfm import GFM
from recbole_gfm.quick_start import run


def test_a_gfm_run_loads_and_splits_the_data_once_and_prepares_its_foundation_first(typed_slice, workdir, monkeypatch):
    calls = []
    for name in ("create_dataset", "data_preparation"):
        original = getattr(quick_start, name)
        monkeypatch.setattr(quick_start, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    built = []
    init = GFM.__init__

    def record_init(self, config, dataset):
        built.append(config["foundation_path"])
        init(self, config, dataset)

    monkeypatch.setattr(GFM, "__init__", record_init)
    settings = typed_overrides(typed_slice, foundation={"epochs": 1, "eval_step": 1, "margin": 0.11})  # a new foundation
    record = run("GFM", typed_slice["dataset"], config_dict=settings, saved=False)
    assert calls == ["create_dataset", "data_preparation"]
    assert built == [record["foundation_path"]] and os.path.isdir(built[0])  # set before the model was built


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
