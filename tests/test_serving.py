"""Serving a GFM checkpoint: the run's own split rebuilt, nothing trained, new users and new items."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from recbole.trainer import Trainer

from conftest import typed_overrides
from recbole_gfm.artifacts import read_safetensors
from recbole_gfm.checkpoint import save_checkpoint
from recbole_gfm.config import ConfigError
from recbole_gfm.data.graph import build_cointeraction_graph
from recbole_gfm.data.text import item_text_embeddings
from recbole_gfm.encoders import embed_without_edges
from recbole_gfm.inference import Recommender, rebuild_foundation, rebuild_run
from recbole_gfm.data.protocol import protocol_file
from recbole_gfm.quick_start import run


def train(typed: dict, protocol: str) -> dict:
    settings = typed_overrides(typed, per_type_eval=False)
    return run("GFM", typed["dataset"], [protocol_file(protocol)], config_dict=settings)


@pytest.fixture(scope="module")
def temporal_run(typed_slice, tmp_path_factory):
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("serving"))
    try:
        yield train(typed_slice, "temporal")
    finally:
        os.chdir(cwd)


def no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("serving must not train anything")

    monkeypatch.setattr(torch.optim.Optimizer, "step", fail)
    monkeypatch.setattr(Trainer, "fit", fail)
    monkeypatch.setattr("recbole_gfm.run.stages.train_foundation", fail)


@pytest.mark.parametrize("protocol", ["temporal", "rs811", "loo"])
def test_a_loaded_checkpoint_scores_the_test_split_exactly_as_the_run_did_and_trains_nothing(typed_slice, workdir, monkeypatch, protocol):
    record = train(typed_slice, protocol)
    no_training(monkeypatch)
    rec = Recommender.load(record["saved_model_file"])
    _, config, _, _, test_data = rebuild_run(record["saved_model_file"])
    result = Trainer(config, rec.model).evaluate(test_data, load_best_model=False)
    assert dict(result) == {k: v for k, v in record["test_result"].items() if k in result}


def test_a_changed_split_or_a_missing_foundation_is_a_clear_error_and_the_foundation_can_be_made_again(temporal_run, tmp_path, monkeypatch):
    checkpoint_file = temporal_run["saved_model_file"]
    checkpoint = torch.load(checkpoint_file, weights_only=True)
    checkpoint["config"]["split_fingerprint"] = "0123456789abcdef"
    other = tmp_path / "other-split.pth"
    save_checkpoint(checkpoint, str(other))  # hashed as the trainer writes it: the split check, not the hash, refuses it
    with pytest.raises(ConfigError, match="another train split"):
        Recommender.load(str(other))

    foundation = temporal_run["foundation_path"]
    backup = tmp_path / "foundation"
    shutil.copytree(foundation, backup)
    shutil.rmtree(foundation)
    with monkeypatch.context() as patch:
        no_training(patch)
        with pytest.raises(ConfigError, match=rf"{foundation}.*--prepare_foundation={checkpoint_file}"):
            Recommender.load(checkpoint_file)
    assert rebuild_foundation(checkpoint_file) == foundation  # the same fingerprint: the same folder
    for name in ("embeddings.safetensors", "encoder.safetensors"):
        # compared as content: safetensors orders its header's metadata differently from run to run
        (before, before_meta), (after, after_meta) = read_safetensors(str(backup / name)), read_safetensors(f"{foundation}/{name}")
        assert before_meta == after_meta and before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before), "retrained bit for bit"
    Recommender.load(checkpoint_file)


def test_serving_new_users_and_new_items(temporal_run):
    rec = Recommender.load(temporal_run["saved_model_file"])
    history = rec.tokens[1:6]
    top = rec.recommend(history, k=5)
    assert len(top) == 5 and not set(history) & {t for t, _ in top}
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    kids = rec.recommend(history, k=3, item_type="kids")
    assert all(rec.model.item_type[rec.index[t]] == rec.types.index("kids") for t, _ in kids)
    assert rec.recommend(rec.tokens[-5:], k=5) != top  # the history matters
    with pytest.raises(ValueError, match=r"unknown item type\(s\) \['vinyl'\]"):
        rec.add_items(["x"], ["X"], ["vinyl"])

    # An item added by text gets the vector the encoder gives an item without edges: the same
    # as a catalogue item that has no train edge and the same text and type, so the same score.
    _, config, train_data, _, _ = rebuild_run(temporal_run["saved_model_file"])
    graph = build_cointeraction_graph(config, train_data.dataset)
    degree = torch.bincount(graph.edge_index[0], minlength=graph.num_items)
    texts = train_data.dataset.item_texts()
    lonely = next(i for i in range(1, graph.num_items) if degree[i] == 0 and texts[i])
    item_type = rec.types[int(rec.model.item_type[lonely])]
    rec.add_items(["twin"], [texts[lonely]], [item_type])
    scores = rec.model.score_history(rec._ids(history))
    assert torch.allclose(scores[rec.index["twin"]], scores[lonely], atol=1e-5)
    raw_text = item_text_embeddings(config, train_data.dataset)[lonely]
    expected = embed_without_edges(rec.model.foundation.encoder(), raw_text[None])[0]
    assert torch.allclose(rec.model.content[rec.index["twin"]], torch.cat([expected, F.normalize(raw_text, dim=0)]), atol=1e-5)
