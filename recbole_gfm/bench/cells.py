"""A board's finished cells on disk, read with integrity checks.

A finished cell is two files in ``<output_dir>/cells``: ``<name>.json``, its run record
(:func:`recbole_gfm.artifacts.write_json`: written atomically with a sha256 content hash), and
``<name>.per_user.npz``, its per-user test metric values (:func:`recbole_gfm.run.per_user.save_per_user`),
whose sha256 the record holds (``per_user_sha256``). The npz is written first, so a record never
names a per-user file that is not there. :func:`read_cell` checks both; a cell that fails is named
in one warning and moved aside (:func:`recbole_gfm.artifacts.move_aside`) by
:func:`load_or_move_aside`, and the benchmark runs it again: a damaged file is never read as a result.

**Compact.** A board publishes its cells (boards of record track them in git), so a cell keeps
what the board shows and tests: the record without the bulky per-user lists, and per-user vectors
only for the board's metric columns (:func:`compact_per_user`), float32 in a compressed npz.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from recbole_gfm.artifacts import CorruptArtifactError, file_sha256, move_aside, read_json, write_json
from recbole_gfm.run.per_user import load_per_user, save_per_user


def per_user_path(cell_file: str) -> str:
    """``cells/<name>.per_user.npz`` beside ``cells/<name>.json``."""
    return cell_file.removesuffix(".json") + ".per_user.npz"


def compact_per_user(per_user: dict | None, keys: Iterable[str] | None) -> dict | None:
    """``per_user`` with only the metric vectors named in ``keys`` (None: every one)."""
    if per_user is None or keys is None:
        return per_user
    wanted = set(keys)
    return {"users": per_user["users"], "metrics": {k: v for k, v in per_user["metrics"].items() if k in wanted}}


def write_cell(path: str, record: dict[str, Any], per_user: dict | None) -> None:
    """Store a finished cell: its per-user vectors first, then the record naming their hash."""
    record = dict(record)
    if per_user is not None:
        save_per_user(per_user_path(path), per_user)
        record["per_user_sha256"] = file_sha256(per_user_path(path))
    write_json(path, record)


def read_cell(path: str) -> dict[str, Any]:
    """A cell's record, its content hash and its per-user file's hash checked (:class:`CorruptArtifactError`)."""
    record = read_json(path)
    expected = record.get("per_user_sha256")
    if expected is not None:
        vectors = per_user_path(path)
        if not os.path.isfile(vectors):
            raise CorruptArtifactError(vectors, "missing: the cell's per-user file is gone")
        if file_sha256(vectors) != expected:
            raise CorruptArtifactError(vectors, "its content does not match the sha256 its cell records: the file was changed or damaged")
    return record


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def load_or_move_aside(path: str, say: Callable[[str], None] = warn) -> dict[str, Any] | None:
    """:func:`read_cell`, or None after moving a damaged cell (record and per-user file) aside with one warning."""
    try:
        return read_cell(path)
    except CorruptArtifactError as e:
        moved = [move_aside(p) for p in (path, per_user_path(path)) if os.path.isfile(p)]
        say(f"{e}; moved aside ({', '.join(os.path.basename(m) for m in moved)}), the cell runs again.")
        return None


@dataclass
class Stored:
    """One finished cell of the folder."""

    path: str
    record: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return self.record["dataset"], self.record["label"]

    def per_user(self) -> dict | None:
        return load_per_user(per_user_path(self.path)) if self.record.get("per_user_sha256") else None


def stored_cells(output_dir: str) -> list[Stored]:
    """Every finished cell in ``<output_dir>/cells`` that passes its checks (damaged ones are moved aside)."""
    cells = []
    for path in sorted(glob.glob(os.path.join(output_dir, "cells", "*.json"))):
        record = load_or_move_aside(path)
        if record is not None and "label" in record:
            cells.append(Stored(path, record))
    return cells


def remove_cell(path: str) -> None:
    """Delete a cell's record and per-user file (a stale row re-run replaces its cells; git keeps the old)."""
    for file in (path, per_user_path(path)):
        if os.path.isfile(file):
            os.unlink(file)
