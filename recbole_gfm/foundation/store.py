"""The foundation artifact store: its settings, fingerprint, save / load, and inductive embedding.

The foundation (item embeddings from the co-interaction graph and the item texts) is trained
rarely and reused by every adapter run (2403.07478, section 3). Its artifact is a folder
``<cache_dir>/foundation/<dataset>-<fingerprint>/`` holding ``embeddings.safetensors``,
``encoder.safetensors`` and ``meta.json`` (fingerprint, item-id order, settings, versions, and the
sha256 of the two other files), written atomically. A run reads it once, every hash checked
(:mod:`recbole_gfm.artifacts`), into a :class:`Foundation` it hands to the model: the cache
(:func:`read_cached`) moves a damaged artifact aside with one warning, so the run trains it
again; :meth:`Foundation.read` of a given path raises :class:`CorruptArtifactError` naming the file.

The fingerprint follows the project's one policy (:mod:`recbole_gfm.artifacts`): every resolved
setting that can change a number, the train split and the item texts, the text encoder's identity
(its files' hash), the code as parsed and the versions that matter. A second run with the same
inputs reuses the artifact; a stale one is never read.

This module imports neither the pipeline nor the models: the run (:mod:`recbole_gfm.run.stages`)
trains a missing foundation before it builds the model that reads it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from logging import getLogger

import torch
from recbole.utils import set_color

from recbole_gfm.artifacts import (
    INTEGRITY_KEY,
    CorruptArtifactError,
    code_fingerprint,
    fingerprint,
    move_aside,
    package_versions,
    read_json,
    read_safetensors,
    settings_fingerprint,
    write_json,
    write_safetensors,
)
from recbole_gfm.checkpoint import to_plain
from recbole_gfm.config import PROPERTIES_DIR, Config, ConfigError, load_yaml
from recbole_gfm.data.protocol import dataset_fingerprint, item_tokens
from recbole_gfm.data.text import encoder_identity
from recbole_gfm.encoders import build_encoder, embed_without_edges
from recbole_gfm.schema import FOUNDATION_MODELS

# The code whose numerics shape the embeddings (relative to the package) and the packages that do.
FOUNDATION_CODE = (
    "foundation/", "encoders.py", "data/graph.py", "data/link_loader.py", "data/text.py",
    "model/hgnn.py", "model/propagation.py", "model/history_mean.py",
)  # fmt: skip
FOUNDATION_PACKAGES = ("torch", "torch-geometric", "recbole", "numpy", "scipy", "sentence-transformers")
# Keys of a downstream model that name its foundation rather than shape it.
_DOWNSTREAM_KEYS = ("foundation", "foundation_path")
# The artifact's files besides meta.json, whose sha256 meta.json lists under "files".
_TENSOR_FILES = ("embeddings.safetensors", "encoder.safetensors")
_DAMAGED = (
    "The foundation artifact {path} is damaged. Run again: the run moves it aside and trains the foundation "
    "again (or delete the folder; for a saved GFM checkpoint: python run_recbole_gfm.py --prepare_foundation=<checkpoint>)."
)


def foundation_config(config) -> Config:
    """The foundation's config for a downstream model (GFM): its data settings plus ``foundation`` overrides.

    ``foundation: {model: NAME, ...}`` picks the encoder (:data:`FOUNDATION_MODELS`; default HGNN).
    Training settings of the downstream model (learning_rate, epochs ...) and its own properties do
    not leak into the foundation; properties/model/<NAME>.yaml and the ``foundation`` dict decide those.
    The data, split and evaluation settings are the downstream run's, so both read one split.
    """
    training = set(config.parameters["Training"])
    own = set(load_yaml(os.path.join(PROPERTIES_DIR, "model", f"{config['model']}.yaml")))
    inherited = {
        k: v for k, v in config.external_config_dict.items() if k not in training | own | {"model", *_DOWNSTREAM_KEYS}
    }
    overrides = dict(config["foundation"] or {})
    model = overrides.pop("model", FOUNDATION_MODELS[0])
    if model not in FOUNDATION_MODELS:
        raise ConfigError(f"foundation: model '{model}' is not a foundation encoder; choose one of {', '.join(FOUNDATION_MODELS)}.")
    shared = set(config.parameters["Dataset"]) | set(config.parameters["Evaluation"]) | {"seed", "dataset", "data_path"}
    if shared & set(overrides):
        raise ConfigError(
            f"foundation: {sorted(shared & set(overrides))} would give the foundation another data split than the "
            "model it serves; set these keys for the whole run instead."
        )
    inherited.update(overrides)
    return Config(model, config["dataset"], config_dict=inherited)


def foundation_key(config, dataset, checkpoint: str = "best") -> dict:
    """Everything that decides the foundation's numbers; ``checkpoint``: best-validated or last epoch."""
    versions = package_versions()
    return {
        "data": dataset_fingerprint(dataset),
        "settings": settings_fingerprint(to_plain(config), also_ignore=_DOWNSTREAM_KEYS),
        "text_encoder": encoder_identity(config["text_encoder"]),
        "code": code_fingerprint(*FOUNDATION_CODE),
        "versions": {name: versions[name] for name in FOUNDATION_PACKAGES},
        "checkpoint": checkpoint,
    }


def foundation_fingerprint(config, dataset, checkpoint: str = "best") -> str:
    return fingerprint(foundation_key(config, dataset, checkpoint))


def artifact_dir(config, dataset, checkpoint: str = "best") -> str:
    """Where the foundation of ``config`` (a foundation config) on split ``dataset`` lives."""
    name = f"{config['dataset']}-{foundation_fingerprint(config, dataset, checkpoint)}"
    return os.path.join(config["cache_dir"], "foundation", name)


def save_foundation(
    config, dataset, embeddings: torch.Tensor, encoder: torch.nn.Module, encoder_args: dict,
    checkpoint: str = "best", extra: dict | None = None,
) -> str:  # fmt: skip
    """Write the artifact folder atomically (temp folder, then rename) and return its path.

    Besides the item embeddings it keeps the encoder's weights and arguments, so items that did
    not exist at training time can be embedded from their text (:func:`embed_new_items`).
    """
    path = artifact_dir(config, dataset, checkpoint)
    meta = {
        "fingerprint": os.path.basename(path).rsplit("-", 1)[-1],
        "dataset": config["dataset"],
        "dataset_fingerprint": dataset_fingerprint(dataset),
        "item_tokens": item_tokens(dataset),
        "embedding_shape": list(embeddings.shape),
        "encoder_args": encoder_args,
        "key": foundation_key(config, dataset, checkpoint),
        "config": settings_fingerprint(to_plain(config), also_ignore=_DOWNSTREAM_KEYS),
        "versions": package_versions(),
        **(extra or {}),
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        tensors = {
            "embeddings.safetensors": {"item_embeddings": embeddings.detach().cpu().contiguous()},
            "encoder.safetensors": {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()},
        }
        meta["files"] = {name: write_safetensors(os.path.join(tmp, name), tensors[name]) for name in _TENSOR_FILES}
        write_json(os.path.join(tmp, "meta.json"), to_plain(meta))
        if read_cached(path) is not None:  # an identical artifact from a concurrent or earlier run (a damaged one is moved aside)
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    getLogger().info(set_color("foundation artifact", "blue") + f": {path}")
    return path


def _read_artifact(path: str) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """(meta, tensors of each file) of an artifact folder, every file checked against its hash.

    Raises :class:`CorruptArtifactError` naming the first file that is missing, truncated, changed,
    or not the one ``meta.json`` lists.
    """
    meta_file = os.path.join(path, "meta.json")
    if not os.path.isfile(meta_file):
        raise CorruptArtifactError(meta_file, "missing")
    meta = read_json(meta_file)
    files = meta.get("files")
    if not isinstance(files, dict) or set(files) != set(_TENSOR_FILES):
        raise CorruptArtifactError(meta_file, f"lists no sha256 of {', '.join(_TENSOR_FILES)}")
    tensors = {}
    for name in _TENSOR_FILES:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            raise CorruptArtifactError(file, "missing")
        tensors[name], metadata = read_safetensors(file)
        if metadata[INTEGRITY_KEY] != files[name]:
            raise CorruptArtifactError(file, "is not the file meta.json lists (another sha256)")
    return meta, tensors


@dataclass
class Foundation:
    """A foundation artifact, read once with every file checked: the item embeddings, the encoder that
    embeds items the graph does not know, and ``meta.json``. What the run hands to the models that read it."""

    path: str
    meta: dict
    embeddings: torch.Tensor  # [n_items, d], in the artifact's catalogue order (meta["item_tokens"])
    encoder_state: dict[str, torch.Tensor]

    @classmethod
    def read(cls, path: str) -> "Foundation":
        """The artifact at ``path``; :class:`ConfigError` when there is none, :class:`CorruptArtifactError` when damaged."""
        if not path or not os.path.isfile(os.path.join(path, "meta.json")):
            raise ConfigError(
                f"Foundation artifact '{path}' is incomplete or missing (expected meta.json, embeddings.safetensors and "
                "encoder.safetensors). Runs through run_recbole_gfm.py prepare it; or point foundation_path at an artifact folder."
            )
        try:
            meta, tensors = _read_artifact(path)
        except CorruptArtifactError as e:
            raise CorruptArtifactError(e.path, f"{e.problem}. {_DAMAGED.format(path=path)}") from None
        return cls(path, meta, tensors["embeddings.safetensors"]["item_embeddings"], tensors["encoder.safetensors"])

    @property
    def train_time_s(self) -> float:
        return float(self.meta.get("train_time_s", 0.0))

    def item_embeddings(self, dataset) -> torch.Tensor:
        """The embeddings [n_items, d], after checking they were made for ``dataset``'s catalogue."""
        theirs, tokens = self.meta["item_tokens"], item_tokens(dataset)
        if theirs != tokens:
            first = next((i for i, (a, b) in enumerate(zip(theirs, tokens)) if a != b), min(len(tokens), len(theirs)))
            raise ConfigError(
                f"Foundation artifact '{self.path}' was made for another item catalogue ({len(theirs)} items, "
                f"this dataset has {len(tokens)}; first difference at internal id {first}). Remove foundation_path "
                "to train a foundation for this dataset, or point it at the artifact made from this dataset."
            )
        return self.embeddings

    def encoder(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        """The trained encoder, in eval mode, on ``device``."""
        encoder = build_encoder(self.meta["encoder_args"])
        encoder.load_state_dict(self.encoder_state)
        return encoder.to(device).eval()

    @torch.no_grad()
    def embed_without_edges(self, text_features: torch.Tensor) -> torch.Tensor:
        """Foundation embeddings of items unknown to the graph, from their text alone (the inductive case)."""
        return embed_without_edges(self.encoder(text_features.device), text_features)


def read_cached(path: str) -> Foundation | None:
    """The cached artifact at ``path``; None when there is none, or when it is damaged (then moved
    aside to ``<path>.corrupt-<time>`` with one warning naming the file, so the run trains it again)."""
    if not os.path.isdir(path):
        return None
    try:
        meta, tensors = _read_artifact(path)
    except CorruptArtifactError as e:
        aside = move_aside(path)
        getLogger().warning(f"foundation artifact: {e}; moved {path} aside to {aside}, to be made again")
        return None
    return Foundation(path, meta, tensors["embeddings.safetensors"]["item_embeddings"], tensors["encoder.safetensors"])
