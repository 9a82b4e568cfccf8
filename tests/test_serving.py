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
from recbole_gfm.data.protocol import protocol_file
from recbole_gfm.inference import Recommender, rebuild_foundation, rebuild_run, serving_settings
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
    monkeypatch.setattr("recbole_gfm.run.inputs.train_foundation", fail)


@pytest.mark.parametrize("protocol", ["temporal", "rs811", "loo"])
def test_a_loaded_checkpoint_scores_the_test_split_exactly_as_the_run_did_and_trains_nothing(typed_slice, workdir, monkeypatch, protocol):
    record = train(typed_slice, protocol)
    no_training(monkeypatch)
    rec = Recommender.load(record["saved_model_file"])
    _, config, split = rebuild_run(record["saved_model_file"])
    test_data = split.test_data
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
    _, config, split = rebuild_run(temporal_run["saved_model_file"])
    train_data = split.train_data
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


def test_bad_input_is_refused_with_what_to_do(temporal_run):
    rec = Recommender.load(temporal_run["saved_model_file"])
    history, kind = rec.tokens[1:4], rec.types[0]
    with pytest.raises(TypeError, match=r"item ids are the dataset's tokens, strings; got int 50. Pass '50'"):
        rec.recommend([50], k=5)
    with pytest.raises(TypeError, match=r"got one string '50'; pass \['50'\]"):
        rec.recommend("50", k=5)
    with pytest.raises(ValueError, match=r"'\[PAD\]' is RecBole's padding token, not an item"):
        rec.recommend(["[PAD]", *history], k=5)
    for k in (0, -1, rec.n_items + 1, 2.5, True):
        with pytest.raises(ValueError, match=rf"k must be an integer in 1 \.\. {rec.n_items}"):
            rec.recommend(history, k=k)
    assert len(rec.recommend(history, k=rec.n_items)) == rec.n_items - len(history)
    with pytest.raises(ValueError, match=r"ids \['dup'\] are given more than once"):
        rec.add_items(["dup", "new", "dup"], ["A", "B", "C"], [kind] * 3)
    with pytest.raises(TypeError, match="strings; got int 7"):
        rec.add_items([7], ["A"], [kind])
    with pytest.raises(ValueError, match="padding token"):
        rec.add_items(["[PAD]"], ["A"], [kind])
    assert rec.n_items == len(rec.index) - 1 and "dup" not in rec.index  # nothing was added


def test_load_takes_any_device_torch_accepts(temporal_run):
    checkpoint_file = temporal_run["saved_model_file"]
    with pytest.raises(ConfigError, match="device 'gpu' is not a device torch knows"):
        Recommender.load(checkpoint_file, device="gpu")
    assert Recommender.load(checkpoint_file, device=torch.device("cpu")).device == torch.device("cpu")
    # the run's own device keys give way to the one asked for: cuda:1 is gpu_id 1
    stored = {"use_gpu": True, "gpu_id": "0", "nproc": 2, "epochs": 3}
    assert serving_settings(stored, "cuda:1") == {"epochs": 3, "device": "cuda:1"}
    assert serving_settings(stored) == {"use_gpu": True, "gpu_id": "0", "epochs": 3}
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available on this machine .*device=cuda:1 asks for it"):
            Recommender.load(checkpoint_file, device="cuda:1")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_load_on_the_second_gpu(temporal_run):
    rec = Recommender.load(temporal_run["saved_model_file"], device="cuda:1")
    assert rec.config["gpu_id"] == "1" and rec.device.type == "cuda"
    assert len(rec.recommend(rec.tokens[1:4], k=5)) == 5


def test_a_checkpoint_without_its_hash_file_is_refused_naming_it(temporal_run, tmp_path):
    alone = tmp_path / "GFM-alone.pth"
    shutil.copy(temporal_run["saved_model_file"], alone)
    with pytest.raises(ConfigError, match=r"no GFM-alone.pth.sha256 beside it.*copy both"):
        Recommender.load(str(alone))
