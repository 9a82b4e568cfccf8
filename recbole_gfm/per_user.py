"""Per-user metric values of a run, in a run record and on disk, for tests computed afterwards.

The form (:func:`recbole_gfm.evaluation.evaluate_full`'s ``per_user``)::

    {"users": [external user token, ...], "metrics": {"hit@10": [value per user], "ndcg@10": [...]}}

one value per evaluation case, in evaluation order. :func:`per_user_record` makes it JSON-ready
for the run record; :func:`save_per_user` / :func:`load_per_user` keep it as a compressed ``.npz``
(``users``: a unicode array, ``metric:<key>``: float32 arrays; read without pickle), written
atomically, beside a benchmark cell's result file.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from recbole_gfm.artifacts import atomic_write

_METRIC = "metric:"


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


def save_per_user(path: str, per_user: Mapping[str, Any]) -> None:
    """Write ``per_user`` (arrays or lists) to ``path`` as a compressed ``.npz``, atomically."""
    users, metrics = _arrays(per_user)
    with atomic_write(path) as f:
        np.savez_compressed(f, users=users, **{_METRIC + key: values for key, values in metrics.items()})


def load_per_user(path: str) -> dict:
    """Read a file :func:`save_per_user` wrote: ``{"users": str array, "metrics": {key: float32 array}}``."""
    with np.load(path, allow_pickle=False) as data:
        if "users" not in data.files:
            raise ValueError(f"{path} is not a per-user file (no 'users' array); write it with save_per_user.")
        return {
            "users": data["users"],
            "metrics": {name[len(_METRIC):]: data[name] for name in data.files if name.startswith(_METRIC)},
        }
