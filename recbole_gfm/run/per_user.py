"""Per-user metric values of a run, in a run record and on disk, for tests computed afterwards.

The form (:func:`recbole_gfm.run.evaluation.evaluate_full`'s ``per_user``)::

    {"users": [external user token, ...], "metrics": {"hit@10": [value per user], "ndcg@10": [...]}}

one value per evaluation case, in evaluation order. :func:`per_user_record` makes it JSON-ready
for the run record; :func:`save_per_user` / :func:`load_per_user` keep it as a compressed ``.npz``
(``users``: a unicode array, ``metric:<key>``: float32 arrays; read without pickle), written
atomically, beside a benchmark cell's result file. A ``sha256`` member holds the hash of the other
members (name, dtype, shape and bytes of each); :func:`load_per_user` checks it and refuses a
truncated or changed file with an error naming it.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from typing import Any, Mapping

import numpy as np

from recbole_gfm.artifacts import INTEGRITY_KEY, CorruptArtifactError, atomic_write

_METRIC = "metric:"
_ADVICE = "Run the evaluation that wrote it again, or restore it from a copy."


def _arrays(per_user: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Users as str array, metrics as float32 arrays; a vector whose length differs from the users' raises."""
    users = np.asarray(per_user["users"]).astype(str)
    metrics = {key: np.asarray(values, dtype=np.float32) for key, values in per_user["metrics"].items()}
    for key, values in metrics.items():
        if values.shape != users.shape:
            raise ValueError(f"Per-user '{key}' has {values.shape} values for {len(users)} users; they must align.")
    return users, metrics


def per_user_record(per_user: Mapping[str, Any] | None) -> dict | None:
    """The JSON-ready form: lists of tokens and of floats (float32's shortest repr: '0.5', not 0.5000000xx)."""
    if per_user is None:
        return None
    users, metrics = _arrays(per_user)
    return {
        "users": users.tolist(),
        "metrics": {key: [float(str(v)) for v in values] for key, values in metrics.items()},
    }


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_per_user(path: str, per_user: Mapping[str, Any]) -> None:
    """Write ``per_user`` (arrays or lists) to ``path`` as a compressed ``.npz`` with its hash, atomically."""
    users, metrics = _arrays(per_user)
    arrays = {"users": users, **{_METRIC + key: values for key, values in metrics.items()}}
    with atomic_write(path) as f:
        np.savez_compressed(f, **arrays, **{INTEGRITY_KEY: np.array(_digest(arrays))})


def load_per_user(path: str) -> dict:
    """Read a file :func:`save_per_user` wrote: ``{"users": str array, "metrics": {key: float32 array}}``.

    Raises :class:`~recbole_gfm.artifacts.CorruptArtifactError` naming the file when it is not a
    readable ``.npz`` (truncated, overwritten) or its arrays do not match its ``sha256``.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as e:
        raise CorruptArtifactError(path, f"not a readable .npz ({type(e).__name__}: {str(e)[:200]}). {_ADVICE}") from None
    if "users" not in arrays:
        raise ValueError(f"{path} is not a per-user file (no 'users' array); write it with save_per_user.")
    recorded = arrays.pop(INTEGRITY_KEY, None)
    if recorded is None:
        raise CorruptArtifactError(path, f"no '{INTEGRITY_KEY}' member: not written by save_per_user, or damaged. {_ADVICE}")
    if _digest(arrays) != str(recorded):
        raise CorruptArtifactError(path, f"its arrays do not match its sha256: the file was changed or damaged. {_ADVICE}")
    return {
        "users": arrays["users"],
        "metrics": {name[len(_METRIC):]: values for name, values in arrays.items() if name.startswith(_METRIC)},
    }
