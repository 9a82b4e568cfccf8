"""RecBole's Config, taught to find this plugin's models and layer this plugin's properties.

Layers, lowest priority first (the order RecBole users know, with ours slotted in after RecBole's
own defaults):

    RecBole overall -> RecBole model -> RecBole dataset
    -> recbole_gfm/properties/overall.yaml -> properties/model/<Model>.yaml
    -> properties/dataset/<dataset>.yaml -> user config files -> config_dict -> command line

Each layer but RecBole's own is checked against the schema (:mod:`recbole_gfm.schema`) before
anything is resolved: a value of the wrong type, range or choice is an error naming its file (or
``config_dict``, ``command line``), the key and the fix.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_gfm.errors import ConfigError  # noqa: F401  (recbole_gfm.config.ConfigError, as users know it)
from recbole_gfm.registry import get_model
from recbole_gfm.schema import PROPERTIES_DIR, yaml_loader
from recbole_gfm.settings import SettingsError, check_settings

# RecBole's multi-process keys (its ``run`` sets them; no properties file defines them), and the
# rank a launcher gives each process (recbole_gfm.quick_start.run).
MULTI_PROCESS_KEYS = ("nproc", "world_size", "ip", "port", "offset", "local_rank")


def _parse_device(key: str, value: Any) -> torch.device:
    """``value`` of config key ``key`` as a torch device; a ConfigError if it is none."""
    try:
        return torch.device(str(value).strip().lower())
    except RuntimeError:
        raise ConfigError(f"{key} '{value}' is not a device: use cpu, cuda or cuda:N.") from None


def load_yaml(path: str, loader: type | None = None) -> dict[str, Any]:
    """Read a YAML properties file (with RecBole's loader by default); a syntax error names the file and line."""
    if not os.path.isfile(path):
        raise ConfigError(f"Config file '{path}' does not exist.")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.load(f.read(), Loader=loader or yaml_loader())
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
            raise ConfigError(f"Malformed YAML in {where}: {e.problem or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"Malformed YAML in {path}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of 'key: value' lines, not a {type(data).__name__}.")
    return data


class Config(RecBoleConfig):
    """``recbole.config.Config`` that also knows this plugin's models and properties.

    Args:
        model: model name or class (plugin models first, then RecBole's).
        dataset: dataset name.
        config_file_list: user YAML files, later ones win.
        config_dict: parameters set from Python.
        cmd_overrides: ``--key=value`` pairs from the command line (highest priority). Unlike
            RecBole, ``sys.argv`` is never read implicitly, so library use is not affected by
            whatever program imports us.
    """

    def __init__(
        self,
        model: str | type | None = None,
        dataset: str | None = None,
        config_file_list: list[str] | None = None,
        config_dict: dict[str, Any] | None = None,
        cmd_overrides: dict[str, str] | None = None,
    ):
        self._cmd_overrides = dict(cmd_overrides or {})
        super().__init__(model, dataset, config_file_list, config_dict)
        update_config = getattr(getattr(self.model_class, "dataset_class", None), "update_config", None)
        if update_config is not None:  # e.g. MultiTypeDataset: load_col shows the item fields it loads
            update_config(self)

    def __str__(self) -> str:
        """RecBole's listing, ``use_gpu`` as the run uses it (RecBole's default True is False on a CPU run)."""
        final = self.final_config_dict
        self.final_config_dict = {**final, "use_gpu": torch.device(final["device"]).type == "cuda"}
        try:
            return super().__str__()
        finally:
            self.final_config_dict = final

    def _load_config_files(self, file_list):
        self._file_layers = [(path, load_yaml(path, self.yaml_loader)) for path in file_list or []]
        merged: dict[str, Any] = {}
        for _, layer in self._file_layers:
            merged.update(layer)
        return merged

    def _load_cmd_line(self):
        return self._convert_config_dict(dict(self._cmd_overrides))

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise ConfigError("No model given: pass --model=NAME (or 'model:' in a config file).")
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise ConfigError("No dataset given: pass --dataset=NAME (or 'dataset:' in a config file).")
        model_class = get_model(model) if isinstance(model, str) else model
        return model_class.__name__, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        layers = []
        for path in (
            os.path.join(PROPERTIES_DIR, "overall.yaml"),
            os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"),
            os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml"),
        ):
            if os.path.isfile(path):
                layer = load_yaml(path, self.yaml_loader)
                layers.append((path, layer))
                self.internal_config_dict.update(layer)
                if os.path.basename(os.path.dirname(path)) == "dataset":
                    self.parameters["Dataset"] += [k for k in layer if k not in self.parameters["Dataset"]]
        self._check_layers(model_class, layers)
        self._default_sequential_ce_sampling()

    def _check_layers(self, model_class: type, properties: list[tuple[str, dict]]) -> None:
        """Every layer against the schema (:mod:`recbole_gfm.schema`), before RecBole resolves anything.

        A wrong type, range or choice is a SettingsError naming the file (``config_dict``, ``command
        line``) and the key; an unknown top-level key is a warning with its closest match.
        """
        layers = [*properties, *self._file_layers, ("config_dict", self.variable_config_dict), ("command line", self.cmd_config_dict)]
        problems = []
        for where, layer in layers:
            try:
                check_settings(layer, where, model=model_class, unknown="warn")
            except SettingsError as e:
                problems.append(str(e))
        if problems:
            raise SettingsError("\n".join(problems))

    def _init_device(self) -> None:
        """RecBole's device choice from ``use_gpu`` / ``gpu_id``, honoured, and a clear error without CUDA.

        RecBole 1.2.1 runs on CUDA whenever ``gpu_id`` is set and CUDA exists, whatever ``use_gpu``
        says: here ``use_gpu: False`` means the CPU. ``device`` (cpu, cuda, cuda:N) is a shorthand
        for ``use_gpu`` / ``gpu_id``; ``text_device: ~`` follows the run's device. A CUDA request
        (``use_gpu: True`` or ``gpu_id`` set by the user, ``device`` or ``text_device`` cuda...) on a
        machine without CUDA is a one-line :class:`ConfigError`; RecBole's own default
        (``use_gpu: True``) just falls back to the CPU, as in RecBole.
        """
        final, user = self.final_config_dict, self.external_config_dict
        if "local_rank" in final:  # RecBole's multi-process path picks cuda:local_rank itself
            return super()._init_device()
        requests = []
        if user.get("device") is not None:
            both = [k for k in ("use_gpu", "gpu_id") if k in user]
            if both:
                raise ConfigError(
                    f"device and {' / '.join(both)} are both set: choose the device with one of them "
                    "(device: cpu, cuda or cuda:N is a shorthand for use_gpu / gpu_id)."
                )
            device = _parse_device("device", user["device"])
            if device.type not in ("cpu", "cuda"):
                raise ConfigError(
                    f"device '{user['device']}': use cpu, cuda or cuda:N (or RecBole's use_gpu / gpu_id)."
                )
            final["use_gpu"] = device.type == "cuda"
            if device.index is not None:
                final["gpu_id"] = str(device.index)
            if final["use_gpu"]:
                requests.append(("device", user["device"]))
        elif user.get("use_gpu") is True:
            requests.append(("use_gpu", True))
        elif "gpu_id" in user and final["use_gpu"] and str(user["gpu_id"]).strip():
            requests.append(("gpu_id", user["gpu_id"]))
        super()._init_device()
        if not final["use_gpu"]:
            final["device"] = torch.device("cpu")
        if final.get("text_device") is None:
            final["text_device"] = str(final["device"])
        elif _parse_device("text_device", final["text_device"]).type == "cuda":
            requests.append(("text_device", final["text_device"]))
        if requests and not torch.cuda.is_available():
            key, value = requests[0]
            fix = (
                "set text_device to cpu, or ~ to follow the run's device"
                if key == "text_device"
                else "run on the CPU with --use_gpu=False (or --device=cpu)"
            )
            raise ConfigError(
                f"CUDA is not available on this machine (torch {torch.__version__}), but {key}={value} asks for it: {fix}."
            )

    def _default_sequential_ce_sampling(self) -> None:
        """Sequential models trained with CE need no sampled negatives: RecBole refuses them."""
        merged = {**self.internal_config_dict, **self.external_config_dict}
        if (
            self.internal_config_dict["MODEL_TYPE"] == ModelType.SEQUENTIAL
            and merged.get("loss_type") == "CE"
            and "train_neg_sample_args" not in self.external_config_dict
        ):
            self.internal_config_dict["train_neg_sample_args"] = None
