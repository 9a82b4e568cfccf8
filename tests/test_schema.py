"""One schema for every key: wrong types, ranges and choices are errors before any data is loaded.

The errors name where a value was given (a file, ``config_dict``, ``command line``, a benchmark
row), the key, what was expected and the fix. Unknown keys warn at a run's top level and are
errors inside nested sections and (through :func:`check_settings`) in benchmark rows.
"""

from __future__ import annotations

import glob
import logging
import os

import pytest

from recbole_gfm import cli
from recbole_gfm.config import PROPERTIES_DIR, Config, ConfigError, load_yaml
from recbole_gfm.quick_start import run
from recbole_gfm.schema import schema
from recbole_gfm.settings import SettingsError, check_settings, check_space


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if anything loads a dataset: the checks must come first."""

    def loaded(*args, **kwargs):
        raise AssertionError("data was loaded before the settings were checked")

    monkeypatch.setattr("recbole_gfm.quick_start.validate_atomic_files", loaded)
    monkeypatch.setattr("recbole_gfm.run.stages.create_dataset", loaded)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("--epochs=ten", "command line: 'epochs' must be an integer >= 1, got 'ten' (str). Write e.g. --epochs="),
        ("--learning_rate=fast", "command line: 'learning_rate' must be a number > 0, got 'fast' (str)"),
        ("--epochs=0", "command line: 'epochs' must be an integer >= 1, got 0 (int)"),
    ],
)
def test_a_wrong_value_on_the_command_line_is_one_line_before_any_data(override, expected, no_data, capsys):
    assert cli.main(["--model=BPR", "--dataset=ml-100k", override]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: " + expected) and error.count("\n") == 1


def test_values_of_the_right_type_written_as_strings_still_work():
    config = Config("BPR", "ml-100k", cmd_overrides={"epochs": "10", "learning_rate": "1e-3", "topk": "[10,20]"})
    assert (config["epochs"], config["learning_rate"], config["topk"]) == (10, 1e-3, [10, 20])


def test_a_typo_inside_foundation_is_an_error_with_the_closest_key(no_data, capsys):
    assert cli.main(["--model=GFM", "--dataset=ml-100k-typed", "--foundation={'epoch':1}"]) == 2
    error = capsys.readouterr().err
    assert "command line: 'foundation.epoch' is not a setting of HGNN (the foundation): did you mean 'epochs'?" in error


def test_nested_sections_are_checked_against_their_own_keys():
    with pytest.raises(SettingsError, match=r"'foundation.propagation_hops' must be an integer >= 0, got -1"):
        Config("GFM", "ml-100k", config_dict={"foundation": {"model": "Propagation", "propagation_hops": -1}})
    with pytest.raises(SettingsError, match=r"'foundation.model' is 'BPR', not a foundation encoder"):
        Config("GFM", "ml-100k", config_dict={"foundation": {"model": "BPR"}})
    with pytest.raises(SettingsError, match=r"'eval_args.oder' is not a key of eval_args: did you mean 'order'\?"):
        Config("BPR", "ml-100k", config_dict={"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "oder": "TO"}})
    with pytest.raises(SettingsError, match=r"'eval_args.mode' holds \['ful'\]"):
        Config("BPR", "ml-100k", config_dict={"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "mode": "ful"}})
    with pytest.raises(SettingsError, match=r"'train_neg_sample_args.distribution' must be one of uniform, popularity"):
        Config("BPR", "ml-100k", config_dict={"train_neg_sample_args": {"distribution": "uniformm"}})


def test_an_error_names_the_file_it_was_written_in(tmp_path):
    user = tmp_path / "my settings.yaml"
    user.write_text("epochs: 5\ndropout_prob: 1.5\n")
    with pytest.raises(SettingsError) as error:
        Config("NeuMF", "ml-100k", [str(user)])
    assert str(error.value).startswith(f"{user}: 'dropout_prob' must be a number in [0, 1], got 1.5 (float). Write e.g. dropout_prob: ")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"learner": "adm"}, "'learner' must be one of adam, adamw, sgd"),
        ({"topk": [10, 0]}, "'topk' must be an integer or a list of integers >= 1"),
        ({"metrics": ["Recall", "NDGC"]}, "'metrics' names no metric RecBole has: ['NDGC']"),
        ({"valid_metric": "NDGC@10"}, "'valid_metric' names no metric RecBole has (did you mean ndcg?)"),
        ({"valid_metric": "NDCG"}, "'valid_metric' needs its cut-off, e.g. NDCG@10"),
        ({"stopping_step": 0}, "'stopping_step' must be an integer >= 1"),
        ({"eval_step": -1}, "'eval_step' must be an integer >= 0"),
        ({"device": "gpu"}, "'device' is not a device torch knows"),
        ({"nproc": 1.5}, "'nproc' must be an integer >= 1, got 1.5 (float)"),
        ({"empty_history_prob": -0.1}, "'empty_history_prob' must be a number in [0, 1]"),
        ({"use_gpu": "yes"}, "'use_gpu' must be True or False"),
    ],
)
def test_types_ranges_and_choices(settings, message):
    with pytest.raises(SettingsError) as error:
        Config("GFM", "ml-100k", config_dict=settings)
    assert str(error.value).startswith(f"config_dict: {message}")


def test_a_valid_metric_that_is_not_computed_is_an_error_before_any_data(no_data):
    with pytest.raises(SettingsError, match=r"valid_metric NDCG@20 is not computed: topk is \[10\]. Add 20 to topk"):
        run("BPR", "ml-100k", config_dict={"valid_metric": "NDCG@20"})
    with pytest.raises(SettingsError, match=r"valid_metric MAP@10 is not computed: metrics are"):
        run("BPR", "ml-100k", config_dict={"valid_metric": "MAP@10"})
    Config("BPR", "ml-100k", config_dict={"topk": [1, 2]})  # a config that only evaluates needs no valid_metric


def test_an_unknown_top_level_key_of_a_run_warns_with_the_closest_match(caplog):
    with caplog.at_level(logging.WARNING):
        Config("BPR", "ml-100k", cmd_overrides={"learning_rte": "0.1"})
    assert "command line: 'learning_rte' is not a setting of BPR: did you mean 'learning_rate'?" in caplog.text


def test_check_settings_for_a_benchmark_row():
    where = "benchmarks/x/board.yaml, row 'LightGCN'"
    check_settings({"n_layers": 2, "learning_rate": 0.01, "foundation": {"epochs": 1}}, where, model="LightGCN")
    check_settings({"temperature": 0.1, "mlp_hidden_sizes": [128]}, where, model="GFM")
    with pytest.raises(SettingsError) as error:
        check_settings({"n_layer": 2, "learning_rate": "0.01"}, where, model="LightGCN")
    lines = str(error.value).splitlines()
    assert len(lines) == 2 and all(line.startswith(where + ": ") for line in lines)
    assert "'n_layer' is not a setting of LightGCN: did you mean 'n_layers'?" in lines[0]
    assert "'learning_rate' must be a number > 0, got '0.01' (str)" in lines[1]
    with pytest.raises(SettingsError, match=r"row 'BPR': 'foundation.epoch' is not a setting of HGNN"):
        check_settings({"foundation": {"epoch": 1}}, "row 'BPR'", model="BPR", unknown="ignore")
    with pytest.raises(SettingsError, match=r"'temperature' must be a number > 0"):  # GFM's key, typed by its file
        check_settings({"temperature": 0}, where, model="GFM")
    check_settings({"n_layer": 2}, where, model="LightGCN", unknown="ignore")
    with pytest.raises(ConfigError, match="Unknown model 'LightGNC'"):
        check_settings({}, where, model="LightGNC")


def test_without_a_model_every_models_keys_are_known():
    check_settings({"n_layers": 3, "temperature": 0.2, "reg_weight": [0.1, 0.1]}, "config")
    check_settings({"model": "GFM", "temperature": 0.2}, "row")  # the settings' model key counts
    with pytest.raises(SettingsError, match="'n_layers' is not a setting of GFM"):
        check_settings({"model": "GFM", "n_layers": 3}, "row")


def test_check_space():
    where = "x.yaml, search.spaces.GFM"
    check_space({"learning_rate": {"loguniform": [1e-4, 1e-2]}, "dropout_prob": {"uniform": [0.0, 0.3]},
                 "embedding_size": {"choice": [64, 128]}, "stopping_step": {"int": [1, 5]}}, where, model="GFM")  # fmt: skip
    cases = [
        ({"dropout_prob": {"uniform": [0.0, 1.5]}}, "'dropout_prob' must be a number in [0, 1], got 1.5"),
        ({"learning_rte": {"loguniform": [1e-4, 1e-2]}}, "'learning_rte' is not a setting of GFM: did you mean 'learning_rate'?"),
        ({"embedding_size": {"uniform": [32, 128]}}, "'embedding_size' takes an integer >= 1, but uniform draws fractions: use int or choice"),
        ({"aggregation": {"choice": ["max", "sum"]}}, "'aggregation' must be one of max, mean, attention, got 'sum'"),
        ({"learning_rate": {"normal": [0, 1]}}, "'learning_rate' must be one {kind: values}"),
    ]
    for space, message in cases:
        with pytest.raises(SettingsError) as error:
            check_space(space, where, model="HGNN" if "aggregation" in space else "GFM")
        assert str(error.value).startswith(f"{where}: {message}")


def test_every_shipped_properties_and_benchmark_file_passes():
    for folder in ("model", "dataset", "protocol"):
        for path in glob.glob(os.path.join(PROPERTIES_DIR, folder, "*.yaml")):
            model = os.path.basename(path)[:-5] if folder == "model" else None
            check_settings(load_yaml(path), path, model=model)
    check_settings(load_yaml(os.path.join(PROPERTIES_DIR, "overall.yaml")), "overall.yaml")
    row_keys = ("model", "max_epochs", "config_files")
    for path in glob.glob(os.path.join(PROPERTIES_DIR, "benchmark", "*.yaml")):
        spec = load_yaml(path)
        for label, row in spec["models"].items():
            model = (row or {}).get("model", label)
            for dataset, dataset_settings in spec["datasets"].items():
                settings = {**(spec.get("config") or {}), **(dataset_settings or {}), **(row or {})}
                check_settings({k: v for k, v in settings.items() if k not in row_keys}, f"{path}, row {label!r}", model=model)
        for label, space in ((spec.get("search") or {}).get("spaces") or {}).items():
            check_space(space, f"{path}, search.spaces.{label}", model=(spec["models"][label] or {}).get("model", label))


def test_floats_without_a_dot_are_floats_in_every_yaml_file(tmp_path):
    path = tmp_path / "board.yaml"
    path.write_text("learning_rate: 1e-3\n")
    assert load_yaml(str(path)) == {"learning_rate": 0.001}


def test_the_schema_is_derived_from_the_properties_files():
    rules = schema("SASRec")
    assert rules["loss_type"].choices == ("BPR", "CE")  # its comment: Range in ['BPR', 'CE']
    assert rules["hidden_dropout_prob"].describe() == "a number in [0, 1]"  # a probability, by its name
    assert schema("GFM")["mlp_hidden_sizes"].items == "int"  # (list of int)
    assert schema()["nproc"].describe() == "an integer >= 1"  # documented, commented out, in overall.yaml
    assert "amazon-books" not in schema()  # RecBole's url.yaml lists datasets, not keys


def test_the_foundation_encoders_are_the_stores():
    from recbole_gfm import schema as schema_module
    from recbole_gfm.foundation import store

    assert store.FOUNDATION_MODELS is schema_module.FOUNDATION_MODELS
