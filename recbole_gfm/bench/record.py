"""Boards of record: the code each row ran with, which rows are stale, the time budget and what is left.

**The code of a row.** Every cell and search trial records ``code``: the commit of the checkout it
ran from (``artifacts.git_state``: commit and whether tracked files differed from it) and the
fingerprint of every module of this package its process imported that can change a number
(``artifacts.loaded_result_modules``; the benchmark's own code, serving and the command line are
left out). A row's cells and trials must all come from one such code. Rows that ran at
different commits may share a board: a row is *stale* only when the code it ran with has changed
since (a module it imported is now different or gone) or a package that decides numbers has
another version. A stale row is shown with its reasons and is never extended or re-run silently
(``--rerun-stale`` re-runs it whole); a plain benchmark file, whose results are not published,
re-runs it by itself, saying so.

**The time budget** (``--time-budget 150m``): no cell or trial starts that the finished ones of its
row say cannot finish in the time left; at the limit the running cells are stopped, each keeping
the snapshot of its last validation (:mod:`recbole_gfm.run.resume`) in the board's ``snapshots/``, which
the next run resumes. :func:`left_to_run` says what is left and how long it should take.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from recbole_gfm.artifacts import fingerprint, module_fingerprints, package_versions

# Packages whose version can change a number (recbole-gfm's own code is judged module by module).
NUMERIC_PACKAGES = ("recbole", "torch", "torch-geometric", "sentence-transformers", "numpy", "scipy", "pandas")


def code_fingerprint(code: dict[str, Any]) -> str:
    """One fingerprint of a recorded ``code`` (its modules' fingerprints; not the commit, which may differ for equal code)."""
    return fingerprint(sorted(code.get("modules", {}).items()))


# Settings a run sets itself (what it read), not what decides it: left out when a record's settings are compared.
RUN_SET_KEYS = frozenset({"split_fingerprint", "foundation_path"})


FOUNDATION_PREFIX = "foundation."  # a foundation's settings among its row's: foundation.learning_rate ...


def recorded_settings(record: dict[str, Any]) -> dict[str, Any] | None:
    """A cell record's settings, as a row's resolved ones are compared with them: its config, and the
    settings its foundation was trained with (``foundation_config``; cells made before it was recorded
    have none, and their foundation's settings go unchecked)."""
    config, foundation = record.get("config"), record.get("foundation_config") or {}
    if config is None and not foundation:
        return None
    return {**(config or {}), **{FOUNDATION_PREFIX + k: v for k, v in foundation.items()}}


def settings_changes(recorded: dict[str, Any] | None, resolved: dict[str, Any] | None) -> list[str]:
    """The settings whose resolved value differs now from a record's (a default that changed since,
    the foundation's included: ``foundation.KEY``).

    Keys added to the package since are left out: a new setting, at its default, is a feature the
    old results did not have and do not need.
    """
    if not recorded or not resolved:
        return []
    keys = sorted(k for k in set(recorded) & set(resolved) if k.removeprefix(FOUNDATION_PREFIX) not in RUN_SET_KEYS)
    return [f"setting {k}: {recorded[k]!r} -> {resolved[k]!r}" for k in keys if recorded[k] != resolved[k]]


def changes_since(code: dict[str, Any] | None, versions: dict[str, str] | None, config: dict | None = None,
                  resolved: dict | None = None) -> list[str]:  # fmt: skip
    """Why results made with ``code``, package ``versions`` and settings ``config`` would not be made again by
    this checkout, whose settings resolve to ``resolved`` (empty: they would)."""
    if not code or "modules" not in code:
        return ["no code recorded (made before boards of record)"]
    now = module_fingerprints(code["modules"])
    changed = [
        f"{name} {'is gone' if now[name] is None else 'changed'}" for name, recorded in sorted(code["modules"].items())
        if now[name] != recorded
    ]  # fmt: skip
    current = package_versions()
    changed += [
        f"{name} {versions[name]} -> {current.get(name)}" for name in NUMERIC_PACKAGES
        if versions and name in versions and versions[name] != current.get(name)
    ]  # fmt: skip
    return changed + settings_changes(config, resolved)


@dataclass
class RowCode:
    """The code a row's stored results ran with, and whether this checkout would make the same."""

    commits: list[str]  # short commits of the row's results, "+dirty" where the tree differed
    stale: list[str] = field(default_factory=list)  # reasons; empty: current

    @property
    def commit(self) -> str:
        return "/".join(dict.fromkeys(self.commits)) or "-"


def row_code(records: Iterable[dict[str, Any]], resolved: dict | None = None) -> RowCode | None:
    """The :class:`RowCode` of a row's cell records and trial records (None when it has none);
    ``resolved``: the row's settings as they resolve now, compared with a cell's."""
    records = list(records)
    if not records:
        return None
    commits = []
    for record in records:
        code = record.get("code") or {}
        commit = (code.get("commit") or "unknown")[:10]
        commits.append(commit + ("+dirty" if code.get("dirty") else ""))
    versions = {code_fingerprint(r.get("code") or {}) for r in records}
    if len(versions) > 1:
        return RowCode(commits, [f"its results come from {len(versions)} versions of the code (one row, one code)"])
    first = records[0]
    return RowCode(commits, changes_since(first.get("code"), first.get("versions"), recorded_settings(first), resolved))


# ---------------------------------------------------------------------------------------------
# Time


def parse_duration(text: str) -> float:
    """Seconds of ``90s``, ``150m``, ``2h``, ``1h30m`` (a bare number: minutes)."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value) * 60
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", value)
    if not parts or re.sub(r"\d+(?:\.\d+)?\s*[hms]", "", value).strip():
        raise ValueError(f"time budget '{text}': write it as 90s, 150m, 2h or 1h30m.")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in parts)


def duration_text(seconds: float) -> str:
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Budget:
    """The board's time limit (None: none), read from ``clock``; :meth:`watch` stops the running cells at the limit."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock = seconds, clock
        self.deadline = None if seconds is None else clock() + seconds

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - self.clock()

    def expired(self) -> bool:
        return self.left() <= 0

    def fits(self, estimate: float | None) -> bool:
        """Whether work of ``estimate`` seconds (None: unknown, it may start) can finish in the time left."""
        return not self.expired() and (estimate is None or estimate <= self.left())

    def watch(self, stop: Callable[[], None], every_s: float = 1.0) -> threading.Event:
        """Call ``stop`` once when the limit passes (a daemon thread); set the returned event to end the watch."""
        done = threading.Event()
        if self.deadline is None:
            return done

        def watcher() -> None:
            while not done.wait(every_s):
                if self.expired():
                    stop()
                    return

        threading.Thread(target=watcher, name="time-budget", daemon=True).start()
        return done


def mean_seconds(records: Iterable[dict[str, Any]], key: str = "wall_time_s") -> float | None:
    values = [r[key] for r in records if r.get(key) is not None]
    return sum(values) / len(values) if values else None


@dataclass
class Left:
    """What a board has not run yet, and how long that should take."""

    cells: dict[str, int] = field(default_factory=dict)  # row label: cells left
    trials: dict[str, int] = field(default_factory=dict)  # row label: trials left
    trial_seconds: float = 0.0  # the searches' trials left, from each row's finished trials (one at a time)
    cell_seconds: float = 0.0  # the cells left, from each row's finished cells, else from its finished trials
    from_trials: list[str] = field(default_factory=list)  # rows whose cells are estimated from their trials
    unknown: list[str] = field(default_factory=list)  # rows with nothing finished to estimate from
    stale: list[str] = field(default_factory=list)  # rows waiting for --rerun-stale

    def text(self, jobs: int) -> str:
        if not (self.cells or self.trials or self.stale):
            return "nothing left: every row is complete."
        parts = [f"{label} {n}" for label, n in self.cells.items()]
        out = []
        if self.trials:
            out.append(f"{sum(self.trials.values())} search trials ({', '.join(f'{k} {v}' for k, v in self.trials.items())})")
        if self.cells:
            out.append(f"{sum(self.cells.values())} cells ({', '.join(parts)})")
        text = "left: " + "; ".join(out) if out else "left: no runnable cell"
        if self.trial_seconds or self.cell_seconds:
            # trials run one at a time on every core, cells ``jobs`` at a time
            wall = self.trial_seconds + self.cell_seconds / max(jobs, 1)
            spent = [f"{duration_text(s)} of {what}" for s, what in ((self.trial_seconds, "search trials"), (self.cell_seconds, "cell time")) if s]
            text += f"; about {' + '.join(spent)} (~{duration_text(wall)} of wall time, cells {jobs} at a time)"
        if self.from_trials:
            text += f" ({', '.join(self.from_trials)}: cells estimated from their trials)"
        if self.unknown:
            text += f", plus {', '.join(self.unknown)} (nothing finished yet to estimate from)"
        if self.stale:
            text += f"; stale rows not re-run: {', '.join(self.stale)} (--rerun-stale)"
        return text + "."
