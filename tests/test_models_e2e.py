"""End-to-end runs of this plugin's models (HGNN, LLMKNN, GFM) on a typed slice of ml-100k."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from conftest import typed_overrides
from recbole_gfm.quick_start import run


def finite_metrics(result: dict) -> bool:
    return all(math.isfinite(v) and 0 <= v <= 1 for v in result.values())


def artifacts(cache_dir: str) -> set[str]:
    folder = os.path.join(cache_dir, "foundation")
    return {d for d in os.listdir(folder) if not d.startswith(".")} if os.path.isdir(folder) else set()


def test_hgnn_trains_and_writes_its_foundation_artifact(typed_slice, workdir):
    record = run("HGNN", typed_slice["dataset"], config_dict=typed_overrides(typed_slice, epochs=2, eval_step=1))
    assert finite_metrics(record["test_result"]) and record["test_result"]["hit@10"] > 0
    root = os.path.join(typed_slice["cache_dir"], "foundation")
    name = max(artifacts(typed_slice["cache_dir"]), key=lambda d: os.path.getmtime(os.path.join(root, d)))  # this run's
    folder = os.path.join(typed_slice["cache_dir"], "foundation", name)
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    assert meta["dataset"] == typed_slice["dataset"] and meta["item_tokens"][0] == "[PAD]"
    assert meta["versions"]["recbole"] == "1.2.1" and meta["config"]["epochs"] == 2
    from safetensors.torch import load_file

    embeddings = load_file(os.path.join(folder, "embeddings.safetensors"))["item_embeddings"]
    assert embeddings.shape == (len(meta["item_tokens"]), 128)
    assert torch.allclose(embeddings[1:].norm(dim=1), torch.ones(len(embeddings) - 1), atol=1e-5)


def test_hgnn_training_is_reproducible(typed_slice, workdir):
    settings = typed_overrides(typed_slice, epochs=2, eval_step=1, balanced_sampling=False)
    first = run("HGNN", typed_slice["dataset"], config_dict=settings)
    second = run("HGNN", typed_slice["dataset"], config_dict=settings)
    assert first["best_valid_result"] == second["best_valid_result"]
    assert first["test_result"] == second["test_result"]


def test_hgnn_early_stopping_does_not_count_a_tie_as_progress(typed_slice, workdir):
    # a learning rate too small to move a float32 weight: the encoder never changes, so every validation ties the first. RecBole's
    # early_stopping (value >= best is a new best) would train all 8 epochs; a tie is no progress,
    # so training stops after the first validation plus stopping_step more, and keeps epoch 0.
    settings = typed_overrides(typed_slice, epochs=8, eval_step=1, stopping_step=2, learning_rate=1e-30)
    record = run("HGNN", typed_slice["dataset"], config_dict=settings)
    assert record["epochs_trained"] == 4 and record["stopped_early"]
    assert record["best_epoch"] == 0
    assert record["best_valid_score"] == record["best_valid_result"]["ndcg@10"] > 0  # the true best, not a raised bar


def test_llmknn_scores_with_raw_text_vectors(typed_slice, workdir):
    record = run("LLMKNN", typed_slice["dataset"], config_dict=typed_overrides(typed_slice))
    assert finite_metrics(record["test_result"]) and record["test_result"]["hit@10"] > 0


def test_gfm_trains_its_foundation_once_then_reuses_it(typed_slice, workdir, monkeypatch):
    before = artifacts(typed_slice["cache_dir"])
    settings = typed_overrides(typed_slice, foundation={"epochs": 1, "eval_step": 1, "margin": 0.2})
    first = run("GFM", typed_slice["dataset"], config_dict=settings)
    assert finite_metrics(first["test_result"]) and first["test_result"]["hit@10"] > 0
    assert len(artifacts(typed_slice["cache_dir"]) - before) == 1, "one new foundation for the new settings"

    def no_second_foundation_run(*args, **kwargs):
        raise AssertionError("the cached foundation should have been reused")

    monkeypatch.setattr("recbole_gfm.run.inputs.train_foundation", no_second_foundation_run)
    second = run("GFM", typed_slice["dataset"], config_dict=settings)
    assert second["test_result"] == first["test_result"], "same seed, same numbers, cache warm or cold"


def test_infonce_link_loss_is_the_softmax_over_in_batch_and_random_candidates(typed_slice, workdir):
    from recbole.utils import init_seed

    from recbole_gfm.config import Config
    from recbole_gfm.registry import training_data
    from recbole_gfm.run.inputs import build_with_inputs
    from recbole_gfm.run.stages import prepare_data

    config = Config("HGNN", typed_slice["dataset"], config_dict=typed_overrides(
        typed_slice, link_loss="infonce", train_batch_size=32, num_negatives=3, aggregation="attention"))
    init_seed(config["seed"], config["reproducibility"])
    split = prepare_data(config)
    model = build_with_inputs(config, split)
    batch = next(iter(training_data(config, split.train_data, graph=model.graph)))
    z = model.encoder(model.text_features, batch.blocks)
    at = lambda ids: z[torch.searchsorted(batch.nodes, ids)]  # noqa: E731
    loss = 0.0
    for i in range(len(batch)):
        logits = []
        for j in range(len(batch)):  # the other rows' positives, minus copies of the own positive or the anchor
            if j == i or (batch.positive[j] != batch.positive[i] and batch.positive[j] != batch.anchor[i]):
                logits.append(float(at(batch.anchor[i]) @ at(batch.positive[j])) / 0.1 - float(model.log_positive_share[batch.positive[j]]))
        for n in batch.negative[i]:
            if n != batch.positive[i]:
                logits.append(float(at(batch.anchor[i]) @ at(n)) / 0.1 + math.log(model.n_items - 1))
        own = float(at(batch.anchor[i]) @ at(batch.positive[i])) / 0.1 - float(model.log_positive_share[batch.positive[i]])
        loss += -own + math.log(sum(math.exp(v) for v in logits))
    assert model.calculate_loss(batch).item() == pytest.approx(loss / len(batch), rel=1e-4)


def test_gfm_on_the_propagation_foundation_reads_the_smoothed_texts(typed_slice, workdir):
    from safetensors.torch import load_file

    settings = typed_overrides(typed_slice, foundation={"model": "Propagation", "propagation_hops": 1})
    record = run("GFM", typed_slice["dataset"], config_dict=settings)
    assert finite_metrics(record["test_result"]) and record["foundation_train_time_s"] < 60
    meta = json.load(open(os.path.join(record["foundation_path"], "meta.json")))
    assert meta["encoder_args"] == {"kind": "propagation", "n_layers": 1} and meta["embedding_shape"][1] == 384
    vectors = load_file(os.path.join(record["foundation_path"], "embeddings.safetensors"))["item_embeddings"]
    assert torch.allclose(vectors[1:].norm(dim=1)[vectors[1:].norm(dim=1) > 0], torch.tensor(1.0), atol=1e-5)


def test_item_embeddings_in_chunks_equal_one_pass_over_every_item(typed_slice, workdir, monkeypatch):
    """With every neighbour taken (fan-out 0) sampling is deterministic: chunking cannot change a vector."""
    from recbole.utils import init_seed

    from recbole_gfm.config import Config
    from recbole_gfm.model import hgnn
    from recbole_gfm.run.inputs import build_with_inputs
    from recbole_gfm.run.stages import prepare_data

    config = Config("HGNN", typed_slice["dataset"], config_dict=typed_overrides(typed_slice, inference_fanouts=[0, 0]))
    init_seed(config["seed"], config["reproducibility"])
    model = build_with_inputs(config, prepare_data(config)).eval()
    whole = model.item_embeddings()
    monkeypatch.setattr(hgnn, "INFERENCE_CHUNK", 7)
    chunked = model.item_embeddings()
    assert model.n_items > 7 * 10 and torch.allclose(whole, chunked, atol=1e-6)
    assert whole[1:].norm(dim=1).min() > 0.99  # every item embedded (unit vectors), padding zero
