"""Serving a trained GFM run: users from any history given at call time, new items from their text.

The papers' serving layer (2403.07478, section 5): item vectors are computed once and indexed,
user vectors on the fly from recent history, and a new item is embedded from its text through
the inductive foundation encoder, so neither new users nor new items need retraining.

    rec = Recommender.load("saved/GFM-....pth")
    rec.recommend(["50", "172", "181"], k=10, item_type="kids")
    rec.add_items(["new-1"], ["Space Dogs (2026). Genres: Animation Children's"], ["kids"])
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Sequence

import torch
import torch.nn.functional as F
from recbole.utils import init_seed

from recbole_gfm.artifacts import CorruptArtifactError
from recbole_gfm.checkpoint import load_checkpoint
from recbole_gfm.config import MULTI_PROCESS_KEYS, Config, ConfigError
from recbole_gfm.data.text import encode_texts
from recbole_gfm.settings import is_whole
from recbole_gfm.foundation.store import read_cached
from recbole_gfm.model.gfm import GFM
from recbole_gfm.run.inputs import build_with_inputs, prepare_foundation
from recbole_gfm.run.stages import Split, prepare_data

PAD = "[PAD]"  # RecBole's padding token: internal item id 0, never an item
# Keys of a checkpoint's settings that choose its device: replaced when load() is given one.
_DEVICE_KEYS = ("use_gpu", "gpu_id", "device")


class Recommender:
    """A trained GFM with its catalogue: top-k for histories of item tokens, items added by text."""

    def __init__(self, model: GFM, config: Config, dataset):
        self.model, self.config = model.eval(), config
        self.device = torch.device(config["device"])
        self.types = dataset.item_type_names()
        self.tokens = [str(t) for t in dataset.field2id_token[dataset.iid_field]]
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def load(cls, checkpoint_file: str, device: str | None = None) -> "Recommender":
        """Rebuild the run a checkpoint came from (same settings, same split) and load its weights.

        The split is rebuilt through the plugin's protocol and checked against the one recorded at
        training time; the foundation is the artifact training recorded. Nothing is trained: a
        missing artifact is an error that names it and the command that makes it again.
        ``device``, any device string torch accepts (``"cpu"``, ``"cuda"``, ``"cuda:1"``) or a
        ``torch.device``, overrides the device the run's settings choose; a CUDA device on a machine
        without CUDA is a :class:`ConfigError`. A checkpoint travels with its ``.sha256`` file, which
        training writes beside it: one without it is refused, as it cannot be checked.
        """
        checkpoint, config, split = rebuild_run(checkpoint_file, device)
        settings = checkpoint["config"]
        foundation = None
        if settings.get("use_foundation"):
            path = settings.get("foundation_path")
            foundation = read_cached(path) if path else None
            if foundation is None:
                raise ConfigError(
                    f"{checkpoint_file} reads the foundation artifact '{path}', which is missing or incomplete. "
                    f"Make it again (nothing else is trained) with: python run_recbole_gfm.py --prepare_foundation={checkpoint_file}"
                )
            config["foundation_path"] = path
        model = build_with_inputs(config, split, foundation, seed=False)
        model.load_state_dict(checkpoint["state_dict"])
        return cls(model, config, split.train_data.dataset)

    @property
    def n_items(self) -> int:
        """Items in the catalogue, added ones included (the padding id not counted)."""
        return len(self.tokens) - 1

    def _ids(self, tokens: Sequence[str]) -> torch.Tensor:
        _check_tokens(tokens, "history")
        unknown = [t for t in tokens if t not in self.index]
        if unknown:
            raise KeyError(f"unknown item ids {unknown[:5]}: add new items with add_items() first")
        return torch.tensor([self.index[t] for t in tokens], dtype=torch.long, device=self.device)

    def recommend(
        self, history: Sequence[str], k: int = 10, item_type: str | None = None, exclude_history: bool = True
    ) -> list[tuple[str, float]]:
        """Top-k (item token, score) for a user known only by ``history``, optionally of one type.

        ``history``: item ids as the dataset's tokens (strings, e.g. ``["50", "172"]``); ``k`` in
        1 .. :attr:`n_items`. Fewer than ``k`` come back when fewer items are left to rank (of
        ``item_type``, outside the history).
        """
        if not is_whole(k, 1) or k > self.n_items:
            raise ValueError(f"k must be an integer in 1 .. {self.n_items} (the items in the catalogue), got {k!r}.")
        items = self._ids(history)
        scores = self.model.score_history(items)
        scores[0] = -torch.inf
        if exclude_history:
            scores[items] = -torch.inf
        if item_type is not None:
            if item_type not in self.types:
                raise KeyError(f"unknown item type '{item_type}': one of {self.types}")
            scores[self.model.item_type != self.types.index(item_type)] = -torch.inf
        top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum())))
        return [(self.tokens[i], float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist())]

    def add_items(self, tokens: Sequence[str], texts: Sequence[str], item_types: Sequence[str]) -> None:
        """Add items unseen in training: text -> text encoder -> inductive foundation -> item tower.

        ``tokens``: new item ids, strings like the dataset's, each once.
        """
        _check_tokens(tokens, "add_items")
        if not len(tokens) == len(texts) == len(item_types):
            raise ValueError("add_items needs one text and one item type per item")
        repeated = sorted(t for t, n in Counter(tokens).items() if n > 1)
        if repeated:
            raise ValueError(f"add_items: ids {repeated[:5]} are given more than once; give each new item one id.")
        unknown = sorted(set(item_types) - set(self.types))
        if unknown:
            raise ValueError(f"add_items: unknown item type(s) {unknown}; this catalogue's types are {self.types}")
        clash = [t for t in tokens if t in self.index]
        if clash:
            raise ValueError(f"items {clash[:5]} are already in the catalogue")
        text = encode_texts(
            list(texts),
            model=self.config["text_encoder"],
            batch_size=self.config["text_batch_size"],
            device=self.config["text_device"],
            cache_dir=self.config["cache_dir"],
            show_progress=False,
        ).to(self.device)
        parts = []
        if self.model.use_foundation:
            parts.append(self.model.foundation.embed_without_edges(text))
        if self.model.use_text:
            parts.append(F.normalize(text, dim=-1))
        type_ids = torch.tensor([self.types.index(t) for t in item_types], dtype=torch.long, device=self.device)
        new_ids = self.model.add_items(torch.cat(parts, dim=1), type_ids)
        for token, i in zip(tokens, new_ids.tolist()):
            self.index[token] = i
            self.tokens.append(token)


def _check_tokens(tokens: Sequence[str], what: str) -> None:
    """Item ids must be the dataset's tokens: strings, never the padding token."""
    if isinstance(tokens, (str, bytes)):
        raise TypeError(f"{what}: expected a list of item ids, got one string {tokens!r}; pass [{tokens!r}].")
    wrong = next((t for t in tokens if not isinstance(t, str)), None)
    if wrong is not None:
        raise TypeError(
            f"{what}: item ids are the dataset's tokens, strings; got {type(wrong).__name__} {wrong!r}. Pass {str(wrong)!r}."
        )
    if PAD in tokens:
        raise ValueError(f"{what}: '{PAD}' is RecBole's padding token, not an item; leave it out.")


def serving_settings(external_config: dict, device: str | torch.device | None = None) -> dict:
    """The settings a checkpoint's run is rebuilt with: its own, for one process, on ``device`` if given.

    ``device`` replaces the run's ``use_gpu`` / ``gpu_id`` / ``device`` with the config's ``device``
    key (``cuda:1``: gpu_id 1); anything torch does not take for a device is a ConfigError.
    """
    chosen = {}
    if device is not None:
        try:
            chosen = {"device": str(torch.device(device))}
        except (RuntimeError, TypeError):
            raise ConfigError(f"device {device!r} is not a device torch knows: use cpu, cuda or cuda:N.") from None
    # served by one process, whatever trained it (a rank's keys would start a process group)
    drop = MULTI_PROCESS_KEYS + (_DEVICE_KEYS if chosen else ())
    return {**{k: v for k, v in external_config.items() if k not in drop}, **chosen}


def rebuild_run(checkpoint_file: str, device: str | torch.device | None = None) -> tuple[dict, Config, Split]:
    """(checkpoint, config, split) of the run that wrote a GFM checkpoint.

    The split is rebuilt through the plugin's protocol and must be the one recorded at training time.
    ``device``: as in :meth:`Recommender.load`.
    """
    try:
        checkpoint = load_checkpoint(checkpoint_file)
    except FileNotFoundError:
        raise ConfigError(f"{checkpoint_file}: no such checkpoint file.") from None
    except CorruptArtifactError as e:
        raise ConfigError(f"{e} (A checkpoint travels with the .sha256 file training writes beside it: copy both.)") from None
    settings = checkpoint["config"]
    if settings["model"] != "GFM":
        raise ConfigError(f"{checkpoint_file} holds a {settings['model']} model; Recommender serves GFM runs.")
    config = Config("GFM", settings["dataset"], config_dict=serving_settings(checkpoint["external_config"], device))
    init_seed(config["seed"], config["reproducibility"])
    split = prepare_data(config)
    recorded, rebuilt = settings.get("split_fingerprint"), config["split_fingerprint"]
    if recorded != rebuilt:
        raise ConfigError(
            f"{checkpoint_file} was trained on another train split of '{settings['dataset']}' (fingerprint "
            f"{recorded}, rebuilt now: {rebuilt}): the data files or the split settings changed since. "
            "Serve it with the data it was trained on, or train it again."
        )
    return checkpoint, config, split


def rebuild_foundation(checkpoint_file: str) -> str:
    """Make the foundation artifact a GFM checkpoint reads again, from the run's own split and settings."""
    checkpoint, config, split = rebuild_run(checkpoint_file)
    path = prepare_foundation(config, split).path
    recorded = checkpoint["config"].get("foundation_path")
    if recorded and os.path.normpath(path) != os.path.normpath(recorded):
        raise ConfigError(
            f"The foundation made now ({path}) is not the one {checkpoint_file} was trained with ({recorded}): "
            "its settings, code or package versions changed since. Train the GFM model again."
        )
    return path
