"""One fingerprint policy: what can change a number changes the key; comments, docstrings and logs do not."""

from __future__ import annotations

import shutil

import pytest
from recbole.utils import init_seed

from conftest import typed_overrides
from recbole_gfm import artifacts
from recbole_gfm.foundation import store as foundation
from recbole_gfm.config import Config
from recbole_gfm.data.protocol import data_preparation, protocol_file
from recbole_gfm.registry import create_dataset


def test_code_fingerprint_ignores_comments_docstrings_and_log_lines_but_not_code(tmp_path, monkeypatch):
    copy = tmp_path / "package"
    shutil.copytree(artifacts.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "properties"))
    monkeypatch.setattr(artifacts, "PACKAGE_DIR", str(copy))
    before = artifacts.code_fingerprint("data/link_loader.py", "foundation/trainer.py")
    loader, trainer = copy / "data" / "link_loader.py", copy / "foundation/trainer.py"
    text = loader.read_text()
    loader.write_text(text.replace('"""Link-prediction batches', '"""Edited: link-prediction batches', 1) + "\n# a comment\n")
    trainer.write_text(trainer.read_text().replace("class HGNNTrainer(Trainer):", "class HGNNTrainer(Trainer):  # why"))
    assert artifacts.code_fingerprint("data/link_loader.py", "foundation/trainer.py") == before
    graph = copy / "data" / "graph.py"
    assert "logger.info(" in graph.read_text()
    base = artifacts.code_fingerprint("data/graph.py")
    graph.write_text(graph.read_text().replace("logger.info(", "logger.info('edited log line: ' + ", 1))
    assert artifacts.code_fingerprint("data/graph.py") == base
    loader.write_text(text.replace("rank < fanout", "rank <= fanout"))
    assert artifacts.code_fingerprint("data/link_loader.py", "foundation/trainer.py") != before


@pytest.fixture(scope="module")
def split(typed_slice):
    def make(protocol="temporal", **settings):
        config = Config("GFM", typed_slice["dataset"], [protocol_file(protocol)], typed_overrides(typed_slice, **settings))
        init_seed(config["seed"], config["reproducibility"])
        train_data, _, _ = data_preparation(config, create_dataset(config))
        return foundation.foundation_config(config), train_data.dataset

    return make


def test_the_foundation_key_follows_every_setting_that_can_change_it_and_nothing_else(split, monkeypatch):
    config, train = split()
    key = foundation.foundation_fingerprint(config, train)
    assert foundation.foundation_fingerprint(config, train) == key
    for name, value in [("state", "DEBUG"), ("show_progress", True), ("checkpoint_dir", "elsewhere")]:
        other, _ = split(foundation={"epochs": 1, "eval_step": 1, name: value})
        assert foundation.foundation_fingerprint(other, train) == key, name
    other, _ = split(eval_batch_size=7)  # the run's own setting (the foundation cannot override it)
    assert foundation.foundation_fingerprint(other, train) == key
    for name, value in [("learner", "sgd"), ("weight_decay", 0.01), ("margin", 0.5), ("exclude_target_edges", False)]:
        other, _ = split(foundation={"epochs": 1, "eval_step": 1, name: value})
        assert foundation.foundation_fingerprint(other, train) != key, name
    _, other_split = split("rs811")
    assert foundation.foundation_fingerprint(config, other_split) != key
    assert foundation.foundation_fingerprint(config, train, checkpoint="last") != key
    monkeypatch.setattr(foundation, "encoder_identity", lambda model: {"files_sha256": "another model"})
    assert foundation.foundation_fingerprint(config, train) != key


def test_result_keys_leave_out_the_code_that_only_presents_results(tmp_path, monkeypatch):
    copy = tmp_path / "package"
    shutil.copytree(artifacts.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "properties"))
    monkeypatch.setattr(artifacts, "PACKAGE_DIR", str(copy))
    before = artifacts.result_code_fingerprint()
    board = copy / "bench" / "report.py"
    board.write_text(board.read_text() + "\nLAYOUT = 'another table layout'\n")
    assert artifacts.result_code_fingerprint() == before
    model = copy / "model" / "gfm.py"
    model.write_text(model.read_text() + "\nSCALE = 2.0\n")
    assert artifacts.result_code_fingerprint() != before
