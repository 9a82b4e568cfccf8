"""Models, trainers and datasets by name, the way RecBole finds its own: this plugin's first.

A plugin model ``Name`` is the class ``Name`` of module ``recbole_gfm.model.<name>`` (RecBole's
``recbole.utils.get_model`` convention), imported only when asked for, so a run imports the code of
its own model and no other. A model class may name its trainer (``trainer``), its dataset class
(``dataset_class``), its train loader (``train_loader``) and the inputs the run prepares for it
(``inputs(config)``: :mod:`recbole_gfm.run.inputs`); RecBole's choice applies otherwise.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from functools import lru_cache

from recbole.data import create_dataset as recbole_create_dataset
from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_gfm.errors import ConfigError

PLUGIN_PACKAGE = "recbole_gfm.model"
_RECBOLE_MODEL_PACKAGES = [
    "recbole.model.general_recommender",
    "recbole.model.sequential_recommender",
    "recbole.model.context_aware_recommender",
    "recbole.model.knowledge_aware_recommender",
    "recbole.model.exlib_recommender",
]


class UnknownModel(ConfigError):
    """No model of this name; the message lists close names."""


def _model_classes(package: str) -> dict[str, type]:
    try:
        module = importlib.import_module(package)
    except ImportError:
        if package.endswith("exlib_recommender"):  # needs optional packages (xgboost, lightgbm)
            return {}
        raise
    return {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, AbstractRecommender) and hasattr(obj, "type")
    }


def plugin_model(name: str) -> type | None:
    """This plugin's model ``name`` (its module imported now), or None."""
    module_name = f"{PLUGIN_PACKAGE}.{name.lower()}"
    if importlib.util.find_spec(module_name) is None:
        return None
    model = getattr(importlib.import_module(module_name), name, None)
    return model if inspect.isclass(model) and issubclass(model, AbstractRecommender) else None


def plugin_model_names() -> list[str]:
    """The names of this plugin's models (imports every model module: for messages, not for runs)."""
    package = importlib.import_module(PLUGIN_PACKAGE)
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{PLUGIN_PACKAGE}.{info.name}")
        names += [n for n, obj in vars(module).items() if n.lower() == info.name and inspect.isclass(obj)]
    return sorted(names)


@lru_cache(maxsize=None)
def recbole_models() -> dict[str, type]:
    """RecBole's built-in models, by name."""
    models: dict[str, type] = {}
    for package in _RECBOLE_MODEL_PACKAGES:
        models.update(_model_classes(package))
    return models


def get_model(name: str) -> type:
    """The model class called ``name``: this plugin's first, RecBole's otherwise."""
    model = plugin_model(name) or recbole_models().get(name)
    if model is not None:
        return model
    plugin = plugin_model_names()
    lowered = {k.lower(): k for k in {*recbole_models(), *plugin}}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(lowered[c] for c in close)}?" if close else ""
    raise UnknownModel(
        f"Unknown model '{name}'.{hint} Models of this plugin: {', '.join(plugin)}; "
        f"RecBole has {len(recbole_models())} more (e.g. BPR, LightGCN, SASRec)."
    )


def get_trainer(config) -> type:
    """The trainer the model names (``trainer``), else RecBole's choice for its type."""
    return getattr(config.model_class, "trainer", None) or recbole_get_trainer(config["MODEL_TYPE"], config["model"])


def create_dataset(config):
    """The model's own dataset class when it names one (``dataset_class``), RecBole's otherwise."""
    dataset_class = getattr(config.model_class, "dataset_class", None)
    return recbole_create_dataset(config) if dataset_class is None else dataset_class(config)


def training_data(config, train_data, graph=None):
    """The model's own train loader (``train_loader``: HGNN's link batches over the prepared ``graph``) or RecBole's."""
    loader = getattr(config.model_class, "train_loader", None)
    return train_data if loader is None else loader(config, train_data.dataset, shuffle=True, graph=graph)
