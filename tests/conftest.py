"""Shared fixtures: a small deterministic slice of ml-100k (read from the recbole wheel, never committed)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import recbole_gfm  # noqa: F401  (applies the compatibility fixes)

ML100K = os.path.join(os.path.dirname(__import__("recbole").__file__), "dataset_example", "ml-100k")
SLICE_USERS = 80  # users 1..80: ~8k interactions, 1.4k items; one SASRec epoch takes seconds


@pytest.fixture(scope="session")
def ml100k_slice(tmp_path_factory) -> str:
    """``data_path`` holding ``ml-100k-slice/ml-100k-slice.{inter,item}``: users 1..80 of ml-100k."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "ml-100k-slice"
    folder.mkdir()
    inter = pd.read_csv(os.path.join(ML100K, "ml-100k.inter"), sep="\t")
    inter = inter[inter["user_id:token"] <= SLICE_USERS]
    inter.to_csv(folder / "ml-100k-slice.inter", sep="\t", index=False)
    item = pd.read_csv(os.path.join(ML100K, "ml-100k.item"), sep="\t")
    item[item["item_id:token"].isin(inter["item_id:token"])].to_csv(
        folder / "ml-100k-slice.item", sep="\t", index=False
    )
    return str(root)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a fresh folder: RecBole writes log/, log_tensorboard/ and saved/ relative to the cwd."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def quick_overrides(data_path: str, **extra) -> dict:
    """Settings for a one-epoch run on the slice, quiet, with all outputs in the cwd."""
    settings = {
        "data_path": data_path,
        "epochs": 1,
        "state": "ERROR",
        "show_progress": False,
        "checkpoint_dir": "saved",
        "results_dir": "results",
        "eval_batch_size": 4096,
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
    }
    settings.update(extra)
    return settings
