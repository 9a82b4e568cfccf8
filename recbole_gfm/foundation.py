"""The static foundation layer as an artifact: inputs, fingerprint, save / load, train-if-missing.

The foundation (HGNN item embeddings) is trained rarely and reused by every adapter run
(2403.07478, section 3). Its artifact is a folder ``<cache_dir>/foundation/<dataset>-<fingerprint>/``
holding ``embeddings.safetensors`` and ``meta.json`` (fingerprint, item-id order, config,
versions), written atomically; the fingerprint covers the train split, the item texts, every
setting that shapes the embeddings, the code that trains them and the torch / PyG / RecBole
versions, so a second run with the same inputs reuses it and a stale artifact is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from logging import getLogger

import torch
from recbole.utils import init_logger, init_seed, set_color
from safetensors.torch import load_file, save_file

from recbole_gfm.artifacts import fingerprint, package_versions, source_fingerprint
from recbole_gfm.compat import to_plain
from recbole_gfm.config import PROPERTIES_DIR, Config, ConfigError, load_yaml
from recbole_gfm.data.graph import CoInteractionGraph, build_cointeraction_graph
from recbole_gfm.data.text import item_text_embeddings

# Settings that change the foundation's embeddings (besides the data): its fingerprint covers them.
FOUNDATION_KEYS = (
    "seed",
    "text_encoder",
    "text_fields",
    "item_type_field",
    "graph_time_window",
    "graph_min_cocount",
    "graph_topk",
    "graph_mutual_topk",
    "foundation_time_cutoff",
    "hidden_size",
    "embedding_size",
    "fanouts",
    "inference_fanouts",
    "activation",
    "dropout",
    "margin",
    "num_negatives",
    "balanced_sampling",
    "learning_rate",
    "train_batch_size",
    "epochs",
    "stopping_step",
    "valid_metric",
    "eval_step",
)


def interactions_before(dataset, cutoff: float):
    """A copy of ``dataset`` keeping the interactions in the first ``cutoff`` fraction of its timeline.

    The papers' "w/o retraining" setting: a foundation trained at an earlier date.
    """
    if not 0 < cutoff <= 1:
        raise ConfigError(f"foundation_time_cutoff must be in (0, 1], got {cutoff}")
    time = dataset.inter_feat[dataset.time_field]
    limit = torch.quantile(time.double(), cutoff)
    return dataset.copy(dataset.inter_feat[time.double() <= limit])


@dataclass
class FoundationInputs:
    """What the foundation is computed from: the train co-interaction graph and item text vectors."""

    graph: CoInteractionGraph
    text_features: torch.Tensor

    @classmethod
    def build(cls, config, dataset) -> "FoundationInputs":
        cutoff = config["foundation_time_cutoff"]
        graph_data = interactions_before(dataset, cutoff) if cutoff else dataset
        return cls(build_cointeraction_graph(config, graph_data), item_text_embeddings(config, dataset))


def item_tokens(dataset) -> list[str]:
    """External item ids in internal-id order (index 0 is padding)."""
    return [str(t) for t in dataset.field2id_token[dataset.iid_field]]


def dataset_fingerprint(dataset) -> str:
    """Hash of the train interactions, the item catalogue order and the item texts."""
    digest = hashlib.sha256()
    for field in (dataset.uid_field, dataset.iid_field, dataset.time_field):
        if field and field in dataset.inter_feat:
            digest.update(dataset.inter_feat[field].numpy().tobytes())
    digest.update("\x1f".join(item_tokens(dataset)).encode())
    digest.update("\x1f".join(dataset.item_texts()).encode())
    return digest.hexdigest()[:16]


# The code that shapes the embeddings (relative to the package) and the packages whose numerics do.
FOUNDATION_SOURCES = ("foundation.py", "trainer.py", "data/graph.py", "model/hgnn.py", "model/sampler.py", "model/history_mean.py")
FOUNDATION_PACKAGES = ("torch", "torch-geometric", "recbole")


def foundation_fingerprint(config, dataset) -> str:
    versions = package_versions()
    return fingerprint(
        dataset_fingerprint(dataset),
        {k: config[k] for k in FOUNDATION_KEYS},
        source_fingerprint(*FOUNDATION_SOURCES),
        {name: versions[name] for name in FOUNDATION_PACKAGES},
    )


def artifact_dir(config, dataset) -> str:
    return os.path.join(config["cache_dir"], "foundation", f"{config['dataset']}-{foundation_fingerprint(config, dataset)}")


def save_foundation(
    config, dataset, embeddings: torch.Tensor, encoder: torch.nn.Module, encoder_args: dict, extra: dict | None = None
) -> str:
    """Write the artifact folder atomically (temp folder, then rename) and return its path.

    Besides the item embeddings it keeps the encoder's weights and arguments, so items that did
    not exist at training time can be embedded from their text (:func:`embed_new_items`).
    """
    path = artifact_dir(config, dataset)
    meta = {
        "fingerprint": os.path.basename(path).rsplit("-", 1)[-1],
        "dataset": config["dataset"],
        "dataset_fingerprint": dataset_fingerprint(dataset),
        "item_tokens": item_tokens(dataset),
        "embedding_shape": list(embeddings.shape),
        "encoder_args": encoder_args,
        "config": {k: to_plain(config[k]) for k in FOUNDATION_KEYS},
        "versions": package_versions(),
        **(extra or {}),
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        save_file({"item_embeddings": embeddings.detach().cpu().contiguous()}, os.path.join(tmp, "embeddings.safetensors"))
        save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, os.path.join(tmp, "encoder.safetensors"))
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(to_plain(meta), f, indent=2)
        if os.path.isdir(path):  # an identical artifact from a concurrent or earlier run
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    getLogger().info(set_color("foundation artifact", "blue") + f": {path}")
    return path


def foundation_meta(path: str) -> dict:
    """The artifact's ``meta.json``."""
    with open(os.path.join(path, "meta.json")) as f:
        return json.load(f)


def load_foundation(path: str, dataset) -> torch.Tensor:
    """Item embeddings [n_items, d] from an artifact folder, checked against ``dataset``'s catalogue."""
    meta_file, tensor_file = os.path.join(path, "meta.json"), os.path.join(path, "embeddings.safetensors")
    if not (os.path.isfile(meta_file) and os.path.isfile(tensor_file)):
        raise ConfigError(f"Foundation artifact '{path}' is incomplete or missing (expected meta.json and embeddings.safetensors).")
    meta = foundation_meta(path)
    tokens = item_tokens(dataset)
    if meta["item_tokens"] != tokens:
        first = next((i for i, (a, b) in enumerate(zip(meta["item_tokens"], tokens)) if a != b), min(len(tokens), len(meta["item_tokens"])))
        raise ConfigError(
            f"Foundation artifact '{path}' was made for another item catalogue ({len(meta['item_tokens'])} items, "
            f"this dataset has {len(tokens)}; first difference at internal id {first}). Remove foundation_path "
            "to train a foundation for this dataset, or point it at the artifact made from this dataset."
        )
    return load_file(tensor_file)["item_embeddings"]


def embed_new_items(path: str, text_features: torch.Tensor) -> torch.Tensor:
    """Foundation embeddings of items unknown to the graph, from their text alone (the inductive case)."""
    from recbole_gfm.model.hgnn import HGNNEncoder
    from recbole_gfm.model.sampler import Block

    encoder = HGNNEncoder(**foundation_meta(path)["encoder_args"])
    encoder.load_state_dict(load_file(os.path.join(path, "encoder.safetensors")))
    encoder.eval()
    nodes = torch.arange(len(text_features))
    no_edges = Block(nodes, nodes, torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long), nodes)
    with torch.no_grad():
        return encoder(text_features, [no_edges] * encoder.n_layers)


def foundation_config(config) -> Config:
    """The HGNN config of a downstream model: its data / evaluation settings plus ``foundation`` overrides.

    Training settings of the downstream model (learning_rate, epochs ...) do not leak into the
    foundation; properties/model/HGNN.yaml and the ``foundation`` dict decide those.
    """
    training = set(config.parameters["Training"])
    own = set(load_yaml(os.path.join(PROPERTIES_DIR, "model", f"{config['model']}.yaml")))
    inherited = {k: v for k, v in config.external_config_dict.items() if k not in training | own | {"model"}}
    overrides = dict(config["foundation"] or {})
    shared = set(config.parameters["Dataset"]) | set(config.parameters["Evaluation"]) | {"seed", "dataset", "data_path"}
    if shared & set(overrides):
        raise ConfigError(
            f"foundation: {sorted(shared & set(overrides))} would give the foundation another data split than the "
            "model it serves; set these keys for the whole run instead."
        )
    inherited.update(overrides)
    return Config("HGNN", config["dataset"], config_dict=inherited)


def ensure_foundation(config, dataset) -> str:
    """The foundation artifact folder for ``dataset``: ``foundation_path``, the cache, or a new HGNN run.

    A new run is a full RecBole run of HGNN (its own log, early stopping, artifact). Afterwards the
    caller's logger and seed are restored, so results do not depend on whether the cache was warm.
    """
    if config["foundation_path"]:
        return config["foundation_path"]
    hgnn_config = foundation_config(config)
    path = artifact_dir(hgnn_config, dataset)
    if not os.path.isdir(path):
        from recbole_gfm.quick_start import run

        getLogger().info(set_color("training the foundation (HGNN)", "green") + f" -> {path}")
        run("HGNN", config["dataset"], config_dict=hgnn_config.external_config_dict, saved=True)
        init_logger(config)
        if not os.path.isdir(path):
            raise ConfigError(
                f"The HGNN run did not produce the expected foundation {path}: its train split differs from "
                f"this model's (check that dataset and split settings agree)."
            )
    init_seed(config["seed"], config["reproducibility"])
    getLogger().info(set_color("foundation", "blue") + f": {path}")
    return path
