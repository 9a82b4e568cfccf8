"""Config layering, model lookup and clear errors."""

from __future__ import annotations

import logging

import pytest
from recbole.utils import ModelType

from recbole_gfm import config as config_module
from recbole_gfm.config import Config, ConfigError, get_model


def test_layers_user_file_over_plugin_over_recbole_and_command_line_over_all(tmp_path, monkeypatch):
    plugin_overall = tmp_path / "overall.yaml"
    plugin_overall.write_text("learning_rate: 0.5\nembedding_size: 32\nresults_dir: r\n")
    monkeypatch.setattr(config_module, "PROPERTIES_DIR", str(tmp_path))
    user = tmp_path / "user.yaml"
    user.write_text("embedding_size: 16\ntrain_batch_size: 7\n")
    config = Config("BPR", "ml-100k", [str(user)], cmd_overrides={"train_batch_size": "9"})
    assert config["learning_rate"] == 0.5  # plugin overall over RecBole's 0.001
    assert config["embedding_size"] == 16  # user file over plugin and over RecBole's model yaml
    assert config["train_batch_size"] == 9  # command line over the user file
    assert config["weight_decay"] == 0.0  # RecBole default untouched


def test_config_does_not_read_sys_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["prog", "--learning_rate=0.9"])
    assert Config("BPR", "ml-100k")["learning_rate"] == 0.001


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec"])
def test_sequential_ce_models_get_no_training_negatives(model):
    config = Config(model, "ml-100k")
    assert config["MODEL_TYPE"] == ModelType.SEQUENTIAL and config["loss_type"] == "CE"
    assert config["train_neg_sample_args"]["distribution"] == "none"


def test_sequential_bpr_keeps_its_negatives():
    config = Config("SASRec", "ml-100k", config_dict={"loss_type": "BPR"})
    assert config["train_neg_sample_args"]["distribution"] == "uniform"


def test_unknown_model_lists_close_matches():
    with pytest.raises(ConfigError, match="Did you mean: SASRec"):
        get_model("SasRek")


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlearning_rate: [0.1\nseed: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line 3"):
        Config("BPR", "ml-100k", [str(bad)])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml' does not exist"):
        Config("BPR", "ml-100k", [str(tmp_path / "nope.yaml")])


def test_unknown_key_warns_with_suggestion(caplog):
    with caplog.at_level(logging.WARNING):
        Config("BPR", "ml-100k", config_dict={"learning_rte": 0.1, "epochs": 2})
    messages = [r.getMessage() for r in caplog.records]
    assert any("'learning_rte'" in m and "learning_rate" in m for m in messages)
    assert not any("'epochs'" in m for m in messages)
