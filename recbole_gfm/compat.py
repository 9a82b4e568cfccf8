"""Every fix RecBole 1.2.1 needs on today's numpy / scipy / torch, in one place.

Applied once when :mod:`recbole_gfm` is imported. Each fix checks that it is still needed (so a
future RecBole release that mends the problem is left alone) and records its name in
:data:`APPLIED`, which the tests read. pandas 3 is not patched but excluded by the requirement
``pandas<3``: under copy-on-write RecBole's chained ``fillna(inplace=True)`` silently does
nothing, and the places it happens are in the middle of long loader methods.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

APPLIED: list[str] = []
_done = False

# numpy aliases RecBole 1.2.1 uses in its own code (np.float in the evaluator, np.long in layers,
# np.bool ...). They were removed in numpy 1.24 / 2.0.
_NUMPY_ALIASES = {
    "bool": np.bool_,
    "int": np.int_,
    "float": np.float64,
    "complex": np.complex128,
    "object": np.object_,
    "str": np.str_,
    "long": np.int_,
    "unicode": np.str_,
}


def _numpy_aliases_needed() -> bool:
    return not hasattr(np, "float_")  # numpy >= 2: Config.compatibility_settings crashes


def _compatibility_settings(self) -> None:
    """Config.compatibility_settings without the numpy-1-only names (``np.float_``, ``np.unicode_``)."""
    for name, alias in _NUMPY_ALIASES.items():
        setattr(np, name, alias)


def _dok_update_needed() -> bool:
    return not hasattr(sp.dok_matrix, "_update")  # removed in scipy 1.12


def _dok_update(self, data: dict) -> None:
    """dok_matrix._update (scipy < 1.12): bulk insert without per-key checks, used by LightGCN & co."""
    self._dict.update(data)


def _weights_only_default() -> bool:
    """torch >= 2.6 loads with weights_only=True unless told otherwise: RecBole's pickled Config fails."""
    return torch.torch_version.TorchVersion(torch.__version__) >= "2.6"


def to_plain(value: Any) -> Any:
    """Recursively turn a value into data ``torch.load(weights_only=True)`` accepts.

    Config objects become dicts, enums and devices their names, numpy scalars Python numbers.
    """
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, numbers.Number):
        return float(value)
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_plain(v) for v in value]
    if hasattr(value, "final_config_dict"):  # recbole Config
        return to_plain(value.final_config_dict)
    return str(value)


_ARRAY = "__numpy_array__"
_SPARSE = "__scipy_sparse__"


def encode_other_parameter(value: Any) -> Any:
    """Model extras (numpy arrays, scipy sparse matrices: ItemKNN, EASE ...) as tensors and plain data."""
    if isinstance(value, np.ndarray):
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(value))}
    if sp.issparse(value):
        csr = sp.csr_matrix(value)
        return {
            _SPARSE: value.format,
            "data": torch.from_numpy(csr.data),
            "indices": torch.from_numpy(csr.indices),
            "indptr": torch.from_numpy(csr.indptr),
            "shape": list(csr.shape),
        }
    if isinstance(value, dict):
        return {k: encode_other_parameter(v) for k, v in value.items()}
    return to_plain(value)


def decode_other_parameter(value: Any) -> Any:
    """Inverse of :func:`encode_other_parameter`."""
    if isinstance(value, dict) and _ARRAY in value:
        return value[_ARRAY].numpy()
    if isinstance(value, dict) and _SPARSE in value:
        csr = sp.csr_matrix(
            (value["data"].numpy(), value["indices"].numpy(), value["indptr"].numpy()), shape=value["shape"]
        )
        return csr.asformat(value[_SPARSE])
    if isinstance(value, dict):
        return {k: decode_other_parameter(v) for k, v in value.items()}
    return value


def _load_other_parameter(self, para):
    """AbstractRecommender.load_other_parameter, undoing :func:`encode_other_parameter`."""
    for key, value in (para or {}).items():
        setattr(self, key, decode_other_parameter(value))


def _save_checkpoint(self, epoch, verbose=True, **kwargs):
    """Trainer._save_checkpoint writing only plain data, so torch>=2.6 loads it with weights_only=True.

    RecBole pickles its whole Config into the checkpoint; we store it as a plain dict instead
    (``resume_checkpoint`` only reads ``checkpoint['config']['model']``).
    """
    from recbole.utils import set_color

    if not self.config["single_spec"] and self.config["local_rank"] != 0:
        return
    saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
    state = {
        "config": to_plain(self.config),
        # what the run was given (files, dict, command line): enough to rebuild it (recbole_gfm.inference)
        "external_config": to_plain(getattr(self.config, "external_config_dict", {})),
        "epoch": epoch,
        "cur_step": self.cur_step,
        "best_valid_score": to_plain(self.best_valid_score),
        "state_dict": self.model.state_dict(),
        "other_parameter": encode_other_parameter(self.model.other_parameter()),
        "optimizer": self.optimizer.state_dict(),
    }
    torch.save(state, saved_model_file)  # default protocol: the weights-only unpickler rejects 4
    if verbose:
        self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")


def apply() -> None:
    """Apply every fix that this environment still needs (idempotent)."""
    global _done
    if _done:
        return
    from recbole.config import Config
    from recbole.trainer import Trainer

    if _numpy_aliases_needed():
        Config.compatibility_settings = _compatibility_settings
        _compatibility_settings(None)  # RecBole modules may use the aliases before any Config exists
        APPLIED.append("numpy2-aliases")
    if _dok_update_needed():
        sp.dok_matrix._update = _dok_update
        APPLIED.append("scipy-dok-update")
    # Deprecation notices from inside RecBole (torch.sparse.FloatTensor, torch.cuda.amp) that a
    # user cannot act on; our own code's warnings stay visible.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")
    warnings.filterwarnings("ignore", message=r".*torch\.sparse\.SparseTensor", category=UserWarning)
    # recbole/model/sequential_recommender/sine.py switches torch's anomaly detection on when it is
    # imported (and Config imports every model): it halves training speed for every model.
    import recbole.model.sequential_recommender  # noqa: F401

    if torch.is_anomaly_enabled():
        torch.autograd.set_detect_anomaly(False)
        APPLIED.append("sine-anomaly-detection-off")
    if _weights_only_default():
        from recbole.model.abstract_recommender import AbstractRecommender

        Trainer._save_checkpoint = _save_checkpoint
        AbstractRecommender.load_other_parameter = _load_other_parameter
        APPLIED.append("torch-weights-only-checkpoint")
    _done = True
