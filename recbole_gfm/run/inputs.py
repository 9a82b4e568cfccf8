"""What a model is built from, prepared before it is built: the item text vectors, the co-interaction
graph, and the foundation (its artifact read and every file checked once, or trained now).

A model class names what it needs (``inputs(config)``: :data:`TEXT`, :data:`GRAPH`,
:data:`FOUNDATION`) and receives them as constructor arguments, the way RecBole-GNN's models
receive their normalised adjacency; its constructor reads no file. Only the runs of such models
import this module (:func:`recbole_gfm.quick_start.run_process`), so a RecBole model's run carries
none of this code, and none of its changes makes a baseline's board row stale.
"""

from __future__ import annotations

from logging import getLogger
from typing import Any

from recbole.utils import init_seed, set_color

from recbole_gfm.artifacts import exclusive
from recbole_gfm.config import Config
from recbole_gfm.data.graph import build_cointeraction_graph
from recbole_gfm.data.text import item_text_embeddings
from recbole_gfm.foundation.store import Foundation, artifact_dir, foundation_config, read_cached
from recbole_gfm.foundation.trainer import foundation_checkpoint
from recbole_gfm.registry import get_trainer, training_data
from recbole_gfm.run.launch import single_process_view
from recbole_gfm.run.stages import Split, build_model, model_inputs

TEXT, GRAPH, FOUNDATION = "text", "graph", "foundation"  # what a model class may ask for (``inputs``)


def train_foundation(config: Config, split: Split, show_progress: bool = False, callback_fn=None) -> None:
    """Train the foundation of foundation config ``config`` on the run's split; its trainer stores the artifact.

    Early stopping on the run's own validation split; the best encoder is kept in memory, so no
    checkpoint file is written.
    """
    init_seed(config["seed"], config["reproducibility"])
    model = build_model(config, split, prepare_inputs(config, split, None), seed=False)
    trainer = get_trainer(config)(config, model)
    trainer.fit(training_data(config, split.train_data, graph=getattr(model, "graph", None)), split.valid_data, saved=False,
                show_progress=show_progress,
                callback_fn=callback_fn)  # fmt: skip


def prepare_foundation(config: Config, split: Split, callback_fn=None) -> Foundation | None:
    """The foundation the model reads, read once with every file checked; None for a model without one.

    ``foundation_path`` names an artifact to read; otherwise the artifact of this run's split and
    foundation settings (:func:`recbole_gfm.foundation.store.foundation_config`) comes from the
    cache, or is trained now (``callback_fn(epoch, valid_score)`` after each of its validations).
    """
    if FOUNDATION not in model_inputs(config):
        return None
    if config["foundation_path"]:
        foundation = Foundation.read(config["foundation_path"])
    else:
        fconfig = foundation_config(single_process_view(config))
        path = artifact_dir(fconfig, split.train_data.dataset, foundation_checkpoint(fconfig, split.valid_data))
        with exclusive(path):  # runs that share the cache (parallel benchmark cells) train it once
            foundation = read_cached(path)
            if foundation is None:
                getLogger().info(set_color(f"training the foundation ({fconfig['model']})", "green") + f" -> {path}")
                train_foundation(fconfig, split, config["show_progress"], callback_fn)
                foundation = Foundation.read(path)
        config["foundation_path"] = foundation.path
    getLogger().info(set_color("foundation", "blue") + f": {foundation.path}")
    return foundation


def prepare_inputs(config: Config, split: Split, foundation: Foundation | None) -> dict[str, Any]:
    """The inputs the model class asks for (``inputs(config)``), prepared from the run's train split."""
    dataset, wanted = split.train_data.dataset, model_inputs(config)
    inputs: dict[str, Any] = {}
    if TEXT in wanted:
        inputs[TEXT] = item_text_embeddings(config, dataset)
    if GRAPH in wanted:
        inputs[GRAPH] = build_cointeraction_graph(config, dataset)
    if FOUNDATION in wanted:
        inputs[FOUNDATION] = foundation
    return inputs


def build_with_inputs(config: Config, split: Split, foundation: Foundation | None = None, seed: bool = True):
    """The model as a run builds it: seeded (``seed``), then its inputs prepared, then its constructor."""
    if seed:
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    return build_model(config, split, prepare_inputs(config, split, foundation), seed=False)
