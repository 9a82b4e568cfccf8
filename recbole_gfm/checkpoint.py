"""Checkpoints as plain data: what ``torch.load(weights_only=True)`` reads, written atomically and hashed.

RecBole pickles its whole Config (and numpy / scipy extras) into a checkpoint, which torch >= 2.6
refuses to load weights-only. :func:`to_plain` and :func:`encode_other_parameter` turn them into
tensors and plain data; :func:`save_checkpoint` writes a checkpoint atomically with its sha256 in a
``<file>.sha256`` sidecar (``sha256sum`` format), and :func:`load_checkpoint` checks it before
``torch.load`` unpickles a byte. RecBole's Trainer writes and reads through them
(:mod:`recbole_gfm.compat`).
"""

from __future__ import annotations

import io
import numbers
import os
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recbole_gfm.artifacts import atomic_write, content_hash, verify_sidecar, write_sidecar


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


CHECKPOINT_ADVICE = "Train the model again, or restore the file and its .sha256 from a copy."


def save_checkpoint(state: dict, path: str) -> None:
    """``torch.save`` plain-data ``state`` to ``path`` atomically, its sha256 in ``<path>.sha256``.

    The checkpoint is replaced before its hash file: a crash between the two leaves a pair that
    fails the check (an error), never a damaged checkpoint that passes it.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)  # default protocol: the weights-only unpickler rejects 4
    data = buffer.getvalue()
    with atomic_write(path) as f:
        f.write(data)
    write_sidecar(path, content_hash(data))


def verify_checkpoint(path: str) -> None:
    """Check a checkpoint against its ``<path>.sha256`` before anything unpickles it.

    Raises :class:`~recbole_gfm.artifacts.CorruptArtifactError` naming the file and what to do when
    the file was changed or truncated, or has no hash file; ``FileNotFoundError`` when it is missing.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    verify_sidecar(path, CHECKPOINT_ADVICE)


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint the plugin wrote, checked (:func:`verify_checkpoint`), then loaded weights-only."""
    verify_checkpoint(path)
    return torch.load(path, map_location=map_location, weights_only=True)
