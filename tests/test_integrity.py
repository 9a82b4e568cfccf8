"""Every binary file the plugin writes carries a content hash checked on read (issue 18).

Caches that fail the check are named in one warning and rebuilt (text embeddings, foundation
artifact); checkpoints and per-user results are refused with an error naming the file and what to
do, before ``torch.load`` reads a byte of a checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from recbole.trainer import Trainer

from conftest import typed_overrides
from recbole_gfm.config import ConfigError
from recbole_gfm.foundation.store import Foundation, read_cached
from recbole_gfm.artifacts import CorruptArtifactError, read_safetensors, write_safetensors
from recbole_gfm.checkpoint import load_checkpoint, save_checkpoint
from recbole_gfm.data import text
from recbole_gfm.data.text import encode_texts
from recbole_gfm.inference import Recommender, rebuild_run
from recbole_gfm.run.per_user import load_per_user, save_per_user
from recbole_gfm.quick_start import run


def truncate(path: str) -> None:
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def overwrite(path: str, offset: int, size: int) -> None:
    """Replace ``size`` bytes at ``offset`` (negative: from the end) with bytes they are not."""
    data = bytearray(open(path, "rb").read())
    start = offset % len(data)
    data[start : start + size] = bytes((b + 1) % 256 for b in data[start : start + size])
    open(path, "wb").write(bytes(data))


def warnings_naming(caplog, path: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and str(path) in r.getMessage()]


# --- the text-embedding cache -------------------------------------------------------------------


class CountingEncoder:
    """A deterministic stand-in for a SentenceTransformer that counts its calls."""

    calls = 0

    def encode(self, texts, batch_size, show_progress_bar, convert_to_tensor, normalize_embeddings):
        self.calls += 1
        return torch.tensor([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts])


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_text_cache_is_named_in_one_warning_and_encoded_again(tmp_path, monkeypatch, caplog, damage):
    encoder = CountingEncoder()
    monkeypatch.setattr(text, "load_text_encoder", lambda model, device: encoder)
    titles = ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)"]
    first = encode_texts(titles, cache_dir=str(tmp_path), show_progress=False)
    [name] = [f for f in os.listdir(tmp_path / "text_embeddings") if not f.startswith(".")]  # not its lock
    path = str(tmp_path / "text_embeddings" / name)
    truncate(path) if damage == "truncated" else overwrite(path, -8, 8)  # the last vector's bytes

    caplog.set_level(logging.WARNING)
    again = encode_texts(titles, cache_dir=str(tmp_path), show_progress=False)
    assert encoder.calls == 2, "the damaged cache must not be read"
    assert torch.equal(again, first)
    [warning] = warnings_naming(caplog, path)
    assert "truncated or damaged" in warning if damage == "truncated" else "does not match its sha256" in warning
    assert torch.equal(read_safetensors(path)[0]["embeddings"], first), "the cache was written again, whole"
    assert torch.equal(encode_texts(titles, cache_dir=str(tmp_path), show_progress=False), first)
    assert encoder.calls == 2, "and is read again"


def test_the_safetensors_hash_covers_the_header_too(tmp_path):
    path = str(tmp_path / "e.safetensors")
    write_safetensors(path, {"x": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, {"note": "a"})
    tensors, metadata = read_safetensors(path)
    assert tensors["x"].shape == (2, 3) and metadata["note"] == "a" and len(metadata["sha256"]) == 64
    data = open(path, "rb").read()
    open(path, "wb").write(data.replace(b'"shape":[2,3]', b'"shape":[3,2]'))  # still a valid file for safetensors
    with pytest.raises(CorruptArtifactError, match=rf"{path}: its content does not match its sha256"):
        read_safetensors(path)


# --- the foundation artifact ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def foundation_settings(typed_slice, tmp_path_factory) -> dict:
    """The typed slice with a cache of its own (the text embeddings copied): damage stays here."""
    cache = tmp_path_factory.mktemp("integrity-cache")
    shared = os.path.join(typed_slice["cache_dir"], "text_embeddings")
    if os.path.isdir(shared):
        shutil.copytree(shared, cache / "text_embeddings")
    return {**typed_slice, "cache_dir": str(cache)}


def gfm_run(settings: dict) -> dict:
    return run("GFM", settings["dataset"], config_dict=typed_overrides(settings))


@pytest.fixture(scope="module")
def clean_run(foundation_settings, tmp_path_factory) -> dict:
    """A GFM run on an intact cache, its checkpoint path made absolute."""
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("integrity-run"))
    try:
        record = gfm_run(foundation_settings)
        record["saved_model_file"] = os.path.abspath(record["saved_model_file"])
    finally:
        os.chdir(cwd)
    return record


@pytest.mark.parametrize(
    "name, damage",
    [("embeddings.safetensors", "truncated"), ("encoder.safetensors", "overwritten"), ("meta.json", "truncated")],
)
def test_a_damaged_foundation_is_named_moved_aside_and_trained_again_to_the_same_numbers(
    foundation_settings, clean_run, workdir, caplog, name, damage
):  # fmt: skip
    artifact = clean_run["foundation_path"]
    path = os.path.join(artifact, name)
    truncate(path) if damage == "truncated" else overwrite(path, -4096, 64)

    with pytest.raises(CorruptArtifactError, match=rf"{path}: .*damaged\. Run again: the run moves it aside") as error:
        Foundation.read(artifact)
    assert error.value.path == path
    assert os.path.isdir(artifact), "a reader of a given path refuses; it does not move the artifact"

    caplog.set_level(logging.WARNING)
    record = gfm_run(foundation_settings)
    [warning] = warnings_naming(caplog, path)
    assert "moved" in warning and ".corrupt-" in warning
    aside = [f for f in os.listdir(os.path.dirname(artifact)) if f.startswith(os.path.basename(artifact) + ".corrupt-")]
    assert aside and any(os.path.isfile(os.path.join(os.path.dirname(artifact), a, name)) for a in aside)
    assert record["foundation_path"] == artifact and read_cached(artifact) is not None
    assert record["best_valid_result"] == clean_run["best_valid_result"]
    assert record["test_result"] == clean_run["test_result"]


def test_a_foundation_file_from_another_artifact_is_refused(foundation_settings, clean_run, tmp_path):
    copy = tmp_path / "artifact"
    shutil.copytree(clean_run["foundation_path"], copy)
    tensors, _ = read_safetensors(str(copy / "embeddings.safetensors"))
    write_safetensors(str(copy / "embeddings.safetensors"), {"item_embeddings": tensors["item_embeddings"] * 2})
    with pytest.raises(CorruptArtifactError, match="embeddings.safetensors: is not the file meta.json lists"):
        Foundation.read(str(copy))


# --- checkpoints ------------------------------------------------------------------------------------


def weights_offset(path: str, tensor: torch.Tensor) -> int:
    """Where a tensor's bytes sit in a checkpoint file (torch stores them uncompressed)."""
    offset = open(path, "rb").read().find(tensor.numpy().tobytes())
    assert offset > 0
    return offset


@pytest.fixture(scope="module")
def serving(clean_run):
    """A Recommender, a trainer holding its model, and the test split, from the clean run's checkpoint."""
    rec = Recommender.load(clean_run["saved_model_file"])
    _, config, split = rebuild_run(clean_run["saved_model_file"])
    return rec, Trainer(config, rec.model), split.test_data


@pytest.mark.parametrize("part", ["weights", "optimizer"])
def test_a_damaged_checkpoint_is_refused_before_torch_load_reads_it(clean_run, serving, tmp_path, monkeypatch, part):
    rec, trainer, test_data = serving
    path = str(tmp_path / "GFM-copy.pth")
    shutil.copy(clean_run["saved_model_file"], path)
    shutil.copy(clean_run["saved_model_file"] + ".sha256", path + ".sha256")
    assert trainer.evaluate(test_data, load_best_model=True, model_file=path)  # the intact copy loads
    checkpoint = load_checkpoint(path)
    if part == "weights":  # 4 KB of the largest weight matrix
        weights = max(checkpoint["state_dict"].values(), key=torch.Tensor.numel)
        assert weights.numel() * weights.element_size() >= 4096
        overwrite(path, weights_offset(path, weights), 4096)
    else:  # 64 bytes of Adam's first moment of one parameter
        moment = max((s["exp_avg"] for s in checkpoint["optimizer"]["state"].values()), key=torch.Tensor.numel)
        overwrite(path, weights_offset(path, moment), 64)

    def no_load(*args, **kwargs):
        raise AssertionError("torch.load must not read a checkpoint that fails its check")

    monkeypatch.setattr(torch, "load", no_load)
    expected = rf"{path}: its content does not match {path}.sha256.*Train the model again, or restore the file"
    with pytest.raises(ConfigError, match=expected + r".*copy both"):  # serving: one line, what to do
        Recommender.load(path)
    with pytest.raises(CorruptArtifactError, match=expected):
        trainer.evaluate(test_data, load_best_model=True, model_file=path)
    with pytest.raises(CorruptArtifactError, match=expected):
        trainer.resume_checkpoint(path)


def test_a_checkpoint_without_its_hash_file_is_refused_and_the_hash_file_is_sha256sum_format(tmp_path):
    path = tmp_path / "BPR-x.pth"
    save_checkpoint({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, str(path))
    assert load_checkpoint(str(path))["epoch"] == 3
    check = subprocess.run(["sha256sum", "-c", "BPR-x.pth.sha256"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0 and "BPR-x.pth: OK" in check.stdout
    os.remove(f"{path}.sha256")
    with pytest.raises(CorruptArtifactError, match=rf"{path}: no BPR-x.pth.sha256 beside it.*Train the model again"):
        load_checkpoint(str(path))


# --- per-user results ----------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_per_user_file_is_refused_naming_it(tmp_path, damage):
    path = str(tmp_path / "cell.per_user.npz")
    values = np.linspace(0, 1, 300, dtype=np.float32)
    save_per_user(path, {"users": [str(u) for u in range(300)], "metrics": {"hit@10": values}})
    assert np.array_equal(load_per_user(path)["metrics"]["hit@10"], values)
    truncate(path) if damage == "truncated" else overwrite(path, len(open(path, "rb").read()) // 2, 64)
    with pytest.raises(CorruptArtifactError, match=rf"{path}: .*Run the evaluation that wrote it again"):
        load_per_user(path)


def test_a_per_user_file_whose_arrays_were_replaced_is_refused(tmp_path):
    """A well-formed .npz (zip CRCs intact) whose values changed: only the sha256 member tells."""
    path = str(tmp_path / "cell.per_user.npz")
    save_per_user(path, {"users": ["a", "b"], "metrics": {"hit@10": [1.0, 0.0]}})
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["metric:hit@10"] = np.array([1.0, 1.0], dtype=np.float32)
    np.savez_compressed(path, **arrays)
    with pytest.raises(CorruptArtifactError, match=rf"{path}: its arrays do not match its sha256"):
        load_per_user(path)


def test_a_lock_under_a_dangling_link_names_the_folder_and_the_fix(tmp_path):
    from recbole_gfm.artifacts import exclusive

    (tmp_path / ".cache").symlink_to(tmp_path / "gone")  # a cache folder linked to one that was removed
    with pytest.raises(FileNotFoundError, match=r"\.cache/foundation: cannot create this folder: a symbolic link"):
        with exclusive(str(tmp_path / ".cache" / "foundation" / "abc")):
            pass
