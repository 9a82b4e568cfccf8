"""A parsed benchmark file: its rows (one model label on one dataset, settings resolved), their cells
(one seed each) and how the board presents them. Built by :func:`recbole_gfm.benchmark.load_benchmark`,
read by the benchmark run and by :mod:`recbole_gfm.leaderboard`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recbole_gfm.artifacts import fingerprint
from recbole_gfm.search import SearchSpec


@dataclass(frozen=True)
class Row:
    """One model label on one dataset, its settings resolved: the unit of a leaderboard row.

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
    fingerprint: str  # the resolved config without the seed, data and code: the same for every seed
    seeds: tuple[int, ...]
    valid_metric: str  # lower case, as in RecBole's results: early stopping's and the progress lines'
    valid_bigger: bool
    study: str | None = None  # the search's fingerprint (rows with a space)
    search_metric: str | None = None  # the validation metric the search optimises
    maximize: bool = True
    tuning: dict[str, Any] | None = None  # the chosen trial (search.SearchResult.summary)

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
    epochs = property(lambda self: self.row.epochs)
    capped_from = property(lambda self: self.row.capped_from)
    row_fingerprint = property(lambda self: self.row.fingerprint)

    @property
    def config_dict(self) -> dict[str, Any]:
        return {**self.row.settings, "seed": self.seed}

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.row.fingerprint, self.seed)

    @property
    def name(self) -> str:
        return f"{self.label}__{self.dataset}__seed{self.seed}__{self.fingerprint}"


@dataclass
class Benchmark:
    """A parsed and checked benchmark file: its rows in run order and how to present them."""

    name: str
    path: str
    output_dir: str
    rows: list[Row]
    seeds: list[int]
    columns: list[str] | None
    type_columns: list[str] | None
    reference: str | None = None
    search: SearchSpec | None = None
    cmd_overrides: dict[str, str] = field(default_factory=dict)
    code: tuple = ()
    data_hashes: dict[str, str] = field(default_factory=dict)
    jobs: int = 1  # cells run at a time, each in its own process

    @property
    def cells(self) -> list[Cell]:
        """The cells of every row that can run (a tuned row's only once its search has chosen)."""
        return [Cell(row, seed) for row in self.rows if row.ready for seed in row.seeds]
