"""Per-user, new-user, per-type and warm/cold metrics: hand-computed examples, and equality with RecBole's own numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType, init_seed

from conftest import quick_overrides
from recbole_gfm.config import Config
from recbole_gfm.run.evaluation import evaluate_full
from recbole_gfm.data.protocol import data_preparation, protocol_file
from recbole_gfm.quick_start import run
from recbole_gfm.registry import create_dataset, get_trainer

# Items a1..a3 are of type A, b1..b3 of type B. Pre-split (benchmark_filename) so the split is known.
TYPES = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "b3": "B"}
SCORES = {"a1": 6.0, "a2": 5.0, "a3": 4.0, "b1": 3.0, "b2": 2.0, "b3": 1.0}  # same for every user
SPLIT = {
    "train": [("u1", "a1"), ("u1", "b1"), ("u2", "a2"), ("u3", "b2")],
    "valid": [("u2", "b1"), ("u3", "a3")],
    "test": [("u1", "a2"), ("u1", "b2"), ("u2", "a3"), ("u2", "b3"), ("u3", "a1"), ("u3", "b3")],
}


class FixedScores(GeneralRecommender):
    """Scores every item by SCORES, whoever the user."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        scores = torch.full((self.n_items,), -1.0)
        for token, score in SCORES.items():
            scores[dataset.field2token_id[self.ITEM_ID][token]] = score
        self.register_buffer("scores", scores)

    def full_sort_predict(self, interaction):
        return self.scores.repeat(len(interaction[self.USER_ID]))


def write_tiny(root, split: dict) -> str:
    folder = root / "tiny"
    folder.mkdir()
    for part, rows in split.items():
        pd.DataFrame(rows, columns=["user_id:token", "item_id:token"]).to_csv(
            folder / f"tiny.{part}.inter", sep="\t", index=False
        )
    pd.DataFrame(list(TYPES.items()), columns=["item_id:token", "item_type:token"]).to_csv(
        folder / "tiny.item", sep="\t", index=False
    )
    return str(root)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return write_tiny(tmp_path_factory.mktemp("tiny"), SPLIT)


@pytest.fixture(scope="module")
def tiny_new_user(tmp_path_factory) -> str:
    """SPLIT plus u4, seen only in test (a1): a new user."""
    split = {**SPLIT, "test": SPLIT["test"] + [("u4", "a1")]}
    return write_tiny(tmp_path_factory.mktemp("tiny_new"), split)


def evaluate_tiny(data_path: str, per_user: bool = False):
    config = Config(
        FixedScores,
        "tiny",
        config_dict={
            "data_path": data_path,
            "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id", "item_type"]},
            "topk": [1, 2],
            "metrics": ["Hit", "MRR", "NDCG", "Recall", "Precision"],
            "state": "ERROR",
        },
    )
    train, _, test = data_preparation(config, create_dataset(config))
    trainer = get_trainer(config)(config, FixedScores(config, train._dataset))
    ours = evaluate_full(trainer, train, test)
    recbole = trainer.evaluate(test, load_best_model=False)
    if per_user:
        return ours
    return ours.metrics, ours.cases, dict(recbole)


def test_per_type_metrics_match_a_hand_computed_example(tiny):
    metrics, cases, recbole = evaluate_tiny(tiny)
    ndcg_rank2 = 1 / math.log2(3)
    # Test masks train + valid items. Type A, ranked among a1 > a2 > a3 only:
    #   u1 (a1 masked) [a2, a3], positive a2 -> rank 1; u2 (a2 masked) [a1, a3], a3 -> rank 2;
    #   u3 (a3 masked) [a1, a2], a1 -> rank 1.
    expected_a = {"hit@1": 2 / 3, "hit@2": 1.0, "mrr@2": 2.5 / 3, "ndcg@2": (2 + ndcg_rank2) / 3,
                  "recall@2": 1.0, "precision@1": 2 / 3, "precision@2": 0.5}
    # Type B, b1 > b2 > b3: u1 (b1 masked) [b2, b3], b2 -> 1; u2 (b1 masked) [b2, b3], b3 -> 2;
    #   u3 (b2 masked) [b1, b3], b3 -> 2.
    expected_b = {"hit@1": 1 / 3, "hit@2": 1.0, "mrr@2": 2 / 3, "ndcg@2": (1 + 2 * ndcg_rank2) / 3}
    for key, value in expected_a.items():
        assert metrics[f"{key}[type=A]"] == pytest.approx(value, abs=1e-4), key
    for key, value in expected_b.items():
        assert metrics[f"{key}[type=B]"] == pytest.approx(value, abs=1e-4), key
    # every type-ranked list holds all 3 items of the type at k=2; at k=1: {a2, a1} and {b2, b1}
    assert metrics["itemcoverage@2[type=A]"] == 1.0 and metrics["itemcoverage@1[type=B]"] == pytest.approx(2 / 3, abs=1e-4)
    # overall: u1 [a2, a3] of {a2, b2}; u2 [a1, a3] of {a3, b3}; u3 [a1, a2] of {a1, b3}
    assert metrics["hit@1"] == pytest.approx(2 / 3, abs=1e-4) and metrics["recall@2"] == 0.5
    # RecBole's ItemCoverage: {a1, a2, a3} over 7 ids (RecBole counts the padding id)
    assert metrics["itemcoverage@2"] == pytest.approx(3 / 7, abs=1e-4)
    assert {k: metrics[k] for k in recbole} == recbole


def test_warm_and_cold_users_are_split_by_train_interactions_of_the_type(tiny):
    metrics, cases, _ = evaluate_tiny(tiny)
    # A: u3 has no train A item (its a3 is in valid, which does not count) -> cold; u1, u2 warm.
    # B: u2 has no train B item (b1 only in valid) -> cold; u1, u3 warm.
    assert cases == {"all": 3, "type=A": 3, "type=A,warm": 2, "type=A,cold": 1,
                     "type=B": 3, "type=B,warm": 2, "type=B,cold": 1, "items=warm": 2, "items=cold": 2,
                     "items=1-4": 2}  # every warm item has one train interaction
    assert metrics["hit@1[type=A,cold]"] == 1.0 and metrics["mrr@2[type=A,warm]"] == 0.75
    assert metrics["ndcg@2[type=A,warm]"] == pytest.approx((1 + 1 / math.log2(3)) / 2, abs=1e-4)
    assert metrics["hit@1[type=B,cold]"] == 0.0 and metrics["mrr@2[type=B,cold]"] == 0.5
    assert metrics["hit@1[type=B,warm]"] == 0.5


@pytest.fixture(scope="module")
def genre_slice(ml100k_slice, tmp_path_factory) -> str:
    """A copy of the ml-100k slice whose items have an ``item_type`` token: the first genre of each movie."""
    import shutil

    root = tmp_path_factory.mktemp("genre")
    folder = root / "ml-100k-slice"
    shutil.copytree(f"{ml100k_slice}/ml-100k-slice", folder)  # the session's slice stays as it is
    item = pd.read_csv(folder / "ml-100k-slice.item", sep="\t")
    item["item_type:token"] = item["class:token_seq"].str.split(" ").str[0]
    item.to_csv(folder / "ml-100k-slice.item", sep="\t", index=False)
    return str(root)


TYPED_LOAD = {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "item_type"]}


def run_and_compare(model, protocol, genre_slice):
    """Train ``model`` one epoch, and check our numbers against RecBole's for the saved checkpoint."""
    small = {"n_layers": 1, "hidden_size": 16, "inner_size": 32, "MAX_ITEM_LIST_LENGTH": 10} if model == "SASRec" else {}
    settings = quick_overrides(genre_slice, load_col=TYPED_LOAD, **small)
    files = [protocol_file(protocol)]
    record = run(model, "ml-100k-slice", files, config_dict=settings)
    result = record["test_result"]
    assert "hit@10[type=Drama]" in result and "ndcg@10[type=Comedy,warm]" in result
    assert 0 < result["itemcoverage@10"] <= 1

    # our overall numbers are RecBole's, for the same trained model
    config = Config(model, "ml-100k-slice", files, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train, _, test = data_preparation(config, create_dataset(config))
    trainer = get_trainer(config)(config, config.model_class(config, train._dataset))
    trainer.evaluate(test, load_best_model=True, model_file=record["saved_model_file"])  # loads the weights
    recbole = dict(trainer.evaluate(test, load_best_model=False))
    full = evaluate_full(trainer, train, test)
    ours = full.metrics
    assert {k: ours[k] for k in recbole} == recbole
    assert {k: result[k] for k in recbole} == recbole
    assert {k: v for k, v in ours.items() if "[" in k} == {k: v for k, v in result.items() if "[" in k}

    # per-user vectors: their means are RecBole's numbers, and the run record holds the same ones
    per_user = full.per_user
    assert {k for k in per_user["metrics"] if "[" not in k} == set(recbole) - {"itemcoverage@10"}
    for key, values in ((k, v) for k, v in per_user["metrics"].items() if "[" not in k):
        assert values.dtype == np.float32 and len(values) == len(per_user["users"]) == full.cases["all"]
        assert abs(values.mean(dtype=np.float64) - recbole[key]) <= 0.5 * 10 ** -config["metric_decimal_place"] + 1e-7, key
    assert record["per_user"]["users"] == per_user["users"].tolist()
    assert np.array_equal(np.float32(record["per_user"]["metrics"]["ndcg@10"]), per_user["metrics"]["ndcg@10"])
    assert len(set(per_user["users"])) == len(per_user["users"])  # one case per user, also for SASRec
    return full


def test_per_user_values_and_new_user_keys_match_a_hand_computed_example(tiny, tiny_new_user):
    result = evaluate_tiny(tiny, per_user=True)
    # overall (see above): u1 [a2, a3] of {a2, b2}; u2 [a1, a3] of {a3, b3}; u3 [a1, a2] of {a1, b3}
    assert result.per_user["users"].tolist() == ["u1", "u2", "u3"]
    assert result.per_user["metrics"]["hit@1"].tolist() == [1, 0, 1]
    assert np.allclose(result.per_user["metrics"]["mrr@2"], [1, 0.5, 1])
    assert np.allclose(result.per_user["metrics"]["precision@2"], [0.5, 0.5, 0.5])
    assert not any("users=" in key for key in [*result.metrics, *result.cases])  # every user returning

    # u4 has no train interaction: ranked [a1, a2], positive a1 -> hit@1 1, recall@2 1
    result = evaluate_tiny(tiny_new_user, per_user=True)
    assert result.per_user["users"].tolist() == ["u1", "u2", "u3", "u4"]
    assert result.cases["users=new"] == 1 and result.cases["users=returning"] == 3
    assert result.metrics["hit@1[users=new]"] == 1.0 and result.metrics["recall@2[users=new]"] == 1.0
    assert result.metrics["hit@1[users=returning]"] == pytest.approx(2 / 3, abs=1e-4)
    assert result.metrics["recall@2[users=returning]"] == 0.5
    assert result.metrics["hit@1"] == 0.75


@pytest.mark.parametrize("model, protocol", [("LightGCN", "rs811"), ("SASRec", "loo")])
def test_overall_equals_recbole_test_result_and_run_reports_per_type(model, protocol, genre_slice, workdir):
    full = run_and_compare(model, protocol, genre_slice)
    assert not any("users=" in key for key in full.metrics)  # user-grouped splits: no new user


def test_temporal_split_reports_new_users_for_general_and_sequential_models_alike(genre_slice, workdir):
    general = run_and_compare("LightGCN", "temporal", genre_slice)
    sequential = run_and_compare("SASRec", "temporal", genre_slice)
    # one test set: the same users in the same order, the same new / returning groups
    assert general.per_user["users"].tolist() == sequential.per_user["users"].tolist()
    assert 0 < general.cases["users=new"] < general.cases["all"]
    assert general.cases == sequential.cases  # all, users=new / returning, type=..., type=...,warm / cold
    for full in (general, sequential):
        new = full.cases["users=new"]
        for key in ("hit@10", "ndcg@10"):
            assert f"{key}[users=returning]" in full.metrics
            weighted = (full.metrics[f"{key}[users=new]"] * new
                        + full.metrics[f"{key}[users=returning]"] * (full.cases["all"] - new)) / full.cases["all"]
            assert weighted == pytest.approx(full.metrics[key], abs=1e-3)


def test_no_type_field_skips_per_type_metrics_but_keeps_per_user_values(ml100k_slice, workdir, caplog):
    record = run("Pop", "ml-100k-slice", config_dict=quick_overrides(ml100k_slice))
    assert not any("[type=" in key or "coverage" in key for key in record["test_result"])
    assert len(record["per_user"]["metrics"]["hit@10"]) == len(record["per_user"]["users"]) > 0


def test_warm_and_cold_item_groups_match_a_hand_computed_example(tiny):
    result = evaluate_tiny(tiny, per_user=True)
    # warm items (with a train interaction): a1 b1 a2 b2; cold: a3 b3 (valid interactions do not count).
    # u1: positives a2 b2, both warm: ranked a2 a3 b2 b3 -> warm hit@1 1; no cold case.
    # u2: positives a3 b3, both cold: ranked a1 a3 b2 b3 -> cold hit@1 0, mrr@2 1/2; no warm case.
    # u3: a1 warm, b3 cold. warm: b3 masked, a1 first -> 1. cold: a1 masked, a2 b1 b3 -> b3 third: 0, 0.
    assert result.cases["items=warm"] == 2 and result.cases["items=cold"] == 2
    assert result.metrics["hit@1[items=warm]"] == 1.0
    assert result.metrics["hit@1[items=cold]"] == 0.0 and result.metrics["mrr@2[items=cold]"] == 0.25
    vectors = result.per_user["metrics"]
    assert np.array_equal(vectors["hit@1[items=warm]"], [1, np.nan, 1], equal_nan=True)
    assert np.array_equal(vectors["mrr@2[items=cold]"], [np.nan, 0.5, 0], equal_nan=True)


def test_item_history_buckets_match_a_hand_computed_example(tmp_path):
    # train interactions per item: a1 5 (bucket 5-19), b1 2 and a2 1 (1-4), a3 b2 b3 none (cold)
    split = {
        "train": [(f"u{u}", "a1") for u in range(1, 6)] + [("u6", "a2"), ("u5", "b1"), ("u4", "b1")],
        "valid": [("u1", "b2")],
        "test": [("u6", "a1"), ("u6", "a3"), ("u1", "a2"), ("u2", "b3")],
    }
    result = evaluate_tiny(write_tiny(tmp_path, split), per_user=True)
    # ranked a1 > a2 > a3 > b1 > b2 > b3, train and valid items masked:
    # u6 [a1 a3 b1 ...]: a1 first (a3 masked in 5-19), a3 first (a1 masked in cold);
    # u1 [a2 a3 b1 b3]: a2 first (1-4); u2 [a2 a3 b1 b2 b3]: b3 fifth (cold: hit@1 0, mrr@2 0)
    assert {k: v for k, v in result.cases.items() if k.startswith("items=")} == {
        "items=cold": 2, "items=1-4": 1, "items=5-19": 1, "items=warm": 2,
    }  # no item has 20+: no such key
    m = result.metrics
    assert m["hit@1[items=5-19]"] == 1.0 and m["hit@1[items=1-4]"] == 1.0 and m["hit@1[items=warm]"] == 1.0
    assert m["hit@1[items=cold]"] == 0.5 and m["mrr@2[items=cold]"] == 0.5
    assert not any("items=20+" in k for k in m)
    users = result.per_user["users"].tolist()
    cold = dict(zip(users, result.per_user["metrics"]["hit@1[items=cold]"].tolist()))
    assert cold["u6"] == 1.0 and cold["u2"] == 0.0 and math.isnan(cold["u1"])
