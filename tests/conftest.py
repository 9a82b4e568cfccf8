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


TYPED_SLICE_USERS = 50  # users 1..50 of ml-100k-typed, items seen by >= 3 of them: ~500 items to embed


@pytest.fixture(scope="session")
def typed_slice(tmp_path_factory) -> dict:
    """Settings for ``ml-100k-typed-slice``: five genre-derived item types, titles as text.

    The text embeddings are cached in a session folder, so MiniLM encodes the ~500 titles once.
    """
    from recbole_gfm.data.prepare import prepare

    root = tmp_path_factory.mktemp("typed")
    source = prepare("ml-100k-typed", out=str(root / "full"))
    name = "ml-100k-typed-slice"
    folder = root / "data" / name
    folder.mkdir(parents=True)
    inter = pd.read_csv(os.path.join(source, "ml-100k-typed.inter"), sep="\t")
    inter = inter[inter["user_id:token"] <= TYPED_SLICE_USERS]
    popular = inter["item_id:token"].value_counts()
    inter = inter[inter["item_id:token"].isin(popular[popular >= 3].index)]
    inter.to_csv(folder / f"{name}.inter", sep="\t", index=False)
    item = pd.read_csv(os.path.join(source, "ml-100k-typed.item"), sep="\t")
    item[item["item_id:token"].isin(inter["item_id:token"])].to_csv(folder / f"{name}.item", sep="\t", index=False)
    user = pd.read_csv(os.path.join(source, "ml-100k-typed.user"), sep="\t")
    user[user["user_id:token"] <= TYPED_SLICE_USERS].to_csv(folder / f"{name}.user", sep="\t", index=False)
    return {
        "dataset": name,
        "data_path": str(root / "data"),
        "cache_dir": str(tmp_path_factory.mktemp("cache")),
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "item_type"]},
        "item_type_field": "item_type",
        "text_fields": ["title", "genres"],
    }


def typed_overrides(typed: dict, **extra) -> dict:
    """One-epoch settings on the typed slice; the HGNN a foundation run trains is tiny too."""
    settings = quick_overrides(**{k: v for k, v in typed.items() if k != "dataset"})
    settings.update({"per_type_eval": False, "foundation": {"epochs": 1, "eval_step": 1}})
    settings.update(extra)
    return settings


# Test tiers: a test that requests one of these fixtures, or lives in one of these modules, runs the
# pipeline on data (RecBole's dataset, a split, a training run, a subprocess): it is marked e2e. The fast tier is
# `bash scripts/test.sh -m "not e2e"`; `bash scripts/test.sh` runs everything (CI).
PIPELINE_FIXTURES = frozenset({
    "workdir", "ml100k_slice", "typed_slice", "typed_data", "genre_slice", "planted", "temporal_run", "clean_run",
    "foundation_settings", "split", "tiny", "tiny_new_user",
})  # fmt: skip


PIPELINE_MODULES = frozenset({"test_benchmark_scripts"})  # every test runs a benchmark script in a subprocess


def pytest_collection_modifyitems(items):
    for item in items:
        runs_pipeline = PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())) or item.module.__name__ in PIPELINE_MODULES
        if runs_pipeline or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.e2e)
