"""A parsed benchmark file: its rows (one model label on one dataset, settings resolved), their cells
(one seed each) and where the board keeps them. Built by :func:`recbole_gfm.bench.spec.load_benchmark`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from recbole_gfm.artifacts import fingerprint
from recbole_gfm.bench.search import SearchSpec
from recbole_gfm.bench.targets import Target


@dataclass(frozen=True)
class Row:
    """One model label on one dataset, its settings resolved: the unit of a leaderboard row.

    ``fingerprint`` covers what the board writes for the row (model, config files, settings, epoch
    cap, its search's chosen settings) and the dataset's files; not the code, nor the defaults the
    package resolves around them: a row's cells record both (:mod:`recbole_gfm.bench.record`), so
    a row whose code or resolved settings changed is reported stale rather than silently re-keyed.

    A row with a search space (``tuned``) gets its final settings from its search: ``tuning``
    (the chosen trial) is None until then, and its cells cannot run before.
    """

    label: str
    model: str
    dataset: str
    config_files: list[str]
    given: dict[str, Any]  # the file's settings for this row, before the epoch cap
    settings: dict[str, Any]  # what the cells run with (the cap applied)
    cap: int | None
    epochs: int
    capped_from: int | None
    one_pass: bool  # RecBole's TraditionalTrainer: one pass whatever `epochs` says (Pop, ItemKNN)
    fingerprint: str  # the resolved config without the seed, and the data: the same for every seed
    seeds: tuple[int, ...]
    valid_metric: str  # lower case, as in RecBole's results: early stopping's and the progress lines'
    valid_bigger: bool
    study: str | None = None  # the search's fingerprint (rows with a space)
    search_metric: str | None = None  # the validation metric the search optimises
    maximize: bool = True
    tuning: dict[str, Any] | None = None  # the chosen trial (search.SearchResult.summary)
    data_fingerprint: str = ""  # the dataset's atomic files, as this row reads them
    resolved: dict[str, Any] = field(default_factory=dict)  # every setting the cells run with (seed aside), as now resolved
    added: bool = False  # added to a board of record by --add-row (its file in the board's rows/)

    @property
    def tuned(self) -> bool:
        return self.study is not None

    @property
    def ready(self) -> bool:
        """Its cells can run: it has no space, or its search has chosen."""
        return not self.tuned or self.tuning is not None


@dataclass(frozen=True)
class Cell:
    """One seed of a row."""

    row: Row
    seed: int

    label = property(lambda self: self.row.label)
    model = property(lambda self: self.row.model)
    dataset = property(lambda self: self.row.dataset)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.row.fingerprint, self.seed)

    @property
    def name(self) -> str:
        return f"{self.label}__{self.dataset}__seed{self.seed}__{self.fingerprint}"


@dataclass
class Benchmark:
    """A parsed and checked benchmark file: its rows in run order, where its results go, how to present them.

    A *board of record* (``record``) is a folder ``benchmarks/<board>/`` holding its file
    (``board.yaml``), the rows added to it (``rows/*.yaml``) and every result it publishes
    (``cells/``, ``search/``, ``snapshots/``, the reports), all tracked by git; its logs and the
    checkpoints of finished cells go to ``scratch_dir`` (``results/benchmark/<board>``, ignored).
    A plain benchmark file keeps everything under ``results/benchmark/<name>``.
    """

    name: str
    path: str
    output_dir: str  # cells/, search/, snapshots/ and the reports
    scratch_dir: str  # logs/ and the checkpoints of finished cells: never published
    rows: list[Row]
    seeds: list[int]
    columns: list[str] | None
    type_columns: list[str] | None
    record: bool = False
    reference: str | None = None
    targets: list[Target] = field(default_factory=list)  # what the board must show, judged in its report
    search: SearchSpec | None = None
    cmd_overrides: dict[str, str] = field(default_factory=dict)
    data_hashes: dict[str, str] = field(default_factory=dict)  # dataset folder: fingerprint of its files
    jobs: int = 1  # cells run at a time, each in its own process

    @property
    def cells(self) -> list[Cell]:
        """The cells of every row that can run (a tuned row's only once its search has chosen)."""
        return [Cell(row, seed) for row in self.rows if row.ready for seed in row.seeds]

    def cell_path(self, cell: Cell) -> str:
        return os.path.join(self.output_dir, "cells", f"{cell.name}.json")

    def checkpoint_dir(self, name: str) -> str:
        """Where a running cell or trial (``name``) keeps its checkpoints and training snapshots: in a
        board of record, ``snapshots/<name>`` of the board (committed, so a fresh clone resumes it; a
        finished cell's folder moves to :meth:`finished_checkpoint_dir`), else ``checkpoints/<name>``."""
        return os.path.join(self.output_dir, "snapshots", name) if self.record else self.finished_checkpoint_dir(name)

    def finished_checkpoint_dir(self, name: str) -> str:
        return os.path.join(self.scratch_dir, "checkpoints", name)

    def log_path(self, name: str) -> str:
        return os.path.join(self.scratch_dir, "logs", f"{name}.log")
