"""Budget-matched hyper-parameter search for benchmark rows: Optuna's TPE, validation split only.

A benchmark file's ``search:`` section (:mod:`recbole_gfm.bench.spec`) gives every row that has a
space the same number of trials. A trial is one run with the trial's settings and the search seed,
scored on the VALIDATION split (``quick_start.run(evaluate_test=False)``: the test split is never
evaluated during a search): its value is ``metric`` in the validation result of its best epoch.
The trial with the best value gives the row's settings; the row's seed cells then evaluate the test
split once each.

Resumable per trial. Each finished trial is stored atomically (:func:`recbole_gfm.artifacts.write_json`)
as ``<output_dir>/search/<label>__<dataset>__trial<k>__<study>.json`` (k from 1), where ``study`` is the
fingerprint of everything that decides the trials: the row's resolved settings except the searched
keys, the data, the search seed, the space, the metric and the sampler's settings (each trial
records the code it ran with, as a cell does: :mod:`recbole_gfm.bench.record`). Trial ``k``'s settings are a pure function of the stored trials ``0..k-1``: a
fresh in-memory study gets them back (``study.add_trial``) and a TPE sampler seeded with
``(seed, k)`` proposes trial ``k`` (``study.ask``). So a resumed search (after kill -9) re-adds the
finished trials, runs only the missing ones and proposes exactly what an uninterrupted search would
have; a larger budget keeps the trials already run.

A trial whose run fails (a Python error in its process, e.g. a NaN loss) is stored as failed with
its log file, counted in the budget, and not repeated (delete its file to run it again); TPE
ignores it. A run killed by a signal stores nothing and runs again.

Pruning (``pruner: median``, optional): Optuna's ``MedianPruner`` stops a trial at a validation
where its best value so far is worse than the median of the finished trials' values at the same
epoch (the curve is the row's ``valid_metric``, which must then be the search metric), once
``startup_trials`` trials have finished and from validation ``prune_warmup + 1`` on. A pruned
trial counts in the budget like any other, is stored with its validation curve (every trial keeps
one), is never chosen, and TPE reads its last value (Optuna's rule). The decision is a pure
function of the stored trials before it and the trial's own curve, so a resumed search prunes
exactly where an uninterrupted one would. It is what keeps a learning rate at the bottom of a
log-uniform range from costing an hour per trial.

Space kinds (``search.spaces.<label>.<key>``): ``choice: [a, b, ...]``, ``uniform: [low, high]``,
``loguniform: [low, high]`` (low > 0), ``int: [low, high]`` (inclusive).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.distributions import (
    BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution,
    distribution_to_json, json_to_distribution,
)  # fmt: skip
from optuna.trial import TrialState

from recbole_gfm.artifacts import CorruptArtifactError, fingerprint, move_aside, read_json
from recbole_gfm.config import ConfigError
from recbole_gfm.settings import whole_number

KINDS = ("choice", "uniform", "loguniform", "int")
KEYS = ("trials", "seed", "metric", "startup_trials", "pruner", "prune_warmup", "spaces")
STARTUP_TRIALS = 10  # Optuna's TPESampler default: the first trials are drawn at random
PRUNERS = ("median",)
PRUNE_WARMUP = 5  # validations a trial always runs before it can be pruned


class SearchError(ConfigError):
    """A problem in a benchmark file's ``search`` section; the message names the file and the key."""


class TrialNotStored(RuntimeError):
    """A trial's run ended without storing its file (killed by a signal): it runs again next time."""


@dataclass(frozen=True)
class SearchSpec:
    """A parsed ``search`` section: one budget and seed for every row that has a space."""

    trials: int
    seed: int
    metric: str | None  # None: each row's valid_metric
    startup_trials: int
    spaces: dict[str, dict[str, BaseDistribution]]  # by model label
    pruner: str | None = None  # None: every trial runs to its early stop
    prune_warmup: int = PRUNE_WARMUP
    raw: dict[str, dict] = field(default_factory=dict)  # the spaces as the file writes them (settings.check_space reads them)

    def describe(self) -> str:
        pruning = (
            f"; Optuna's median pruner (a trial stops at a validation where its best so far is below the median "
            f"of the finished trials' at that epoch; from validation {self.prune_warmup + 1} on, once "
            f"{self.startup_trials} trials finished)"
            if self.pruner else ""
        )
        return (
            f"{self.trials} trials per tuned row, Optuna {optuna.__version__} TPE sampler "
            f"(first {min(self.startup_trials, self.trials)} trials drawn at random), seed {self.seed}{pruning}"
        )


def _error(path: str, key: str, message: str) -> SearchError:
    return SearchError(f"{path}: '{key}': {message}")


def distribution(value: Any, path: str, key: str) -> BaseDistribution:
    """One space entry (``{kind: [...]}``) as an Optuna distribution; a clear error if it is not one."""
    example = "e.g. {loguniform: [1.0e-4, 1.0e-2]} or {choice: [1, 2, 3]}"
    if not isinstance(value, dict) or len(value) != 1:
        raise _error(path, key, f"expected one '{{kind: values}}' with kind one of {', '.join(KINDS)} ({example}), got {value!r}.")
    (kind, args), = value.items()
    if kind not in KINDS:
        raise _error(path, key, f"unknown space kind '{kind}': use one of {', '.join(KINDS)} ({example}).")
    if kind == "choice":
        if not isinstance(args, list) or not args or not all(a is None or isinstance(a, (bool, int, float, str)) for a in args):
            raise _error(path, key, f"choice takes a non-empty list of plain values (numbers, strings, booleans), got {args!r}.")
        return CategoricalDistribution(args)
    if not (isinstance(args, list) and len(args) == 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)):
        raise _error(path, key, f"{kind} takes [low, high], two numbers, got {args!r}.")
    low, high = args
    if not low < high:
        raise _error(path, key, f"{kind} needs low < high, got [{low}, {high}].")
    if kind == "int":
        if not all(isinstance(a, int) for a in args):
            raise _error(path, key, f"int takes two integers [low, high], got {args!r}.")
        return IntDistribution(low, high)
    if kind == "loguniform" and low <= 0:
        raise _error(path, key, f"loguniform needs low > 0, got {low}.")
    return FloatDistribution(float(low), float(high), log=kind == "loguniform")


def parse_search(value: Any, path: str, labels: list[str], seeds: list[int]) -> SearchSpec | None:
    """The ``search`` section of benchmark file ``path`` (None when there is none).

    ``labels``: the file's model labels (a space must name one); ``seeds``: its seeds (the default
    search seed is the first).
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _error(path, "search", f"expected a mapping with keys {', '.join(KEYS)}, got {type(value).__name__}.")
    for key in value:
        if key not in KEYS:
            raise _error(path, f"search.{key}", f"unknown key; known: {', '.join(KEYS)}.")
    trials = whole_number(value.get("trials"), f"{path}: 'search.trials'", 1, "the trial budget of every tuned row", error=SearchError)
    seed = whole_number(value.get("seed", seeds[0]), f"{path}: 'search.seed'", error=SearchError)
    metric = value.get("metric")
    if metric is not None and (not isinstance(metric, str) or "@" not in metric):
        raise _error(path, "search.metric", f"expected a validation metric such as ndcg@10, got {metric!r}.")
    startup = whole_number(value.get("startup_trials", STARTUP_TRIALS), f"{path}: 'search.startup_trials'", 0, error=SearchError)
    pruner = value.get("pruner")
    if pruner is not None and pruner not in PRUNERS:
        raise _error(path, "search.pruner", f"unknown pruner {pruner!r}: use one of {', '.join(PRUNERS)}, or leave it out (no pruning).")
    warmup = whole_number(value.get("prune_warmup", PRUNE_WARMUP), f"{path}: 'search.prune_warmup'", 0, "validations before pruning", error=SearchError)
    if "prune_warmup" in value and pruner is None:
        raise _error(path, "search.prune_warmup", "is set but search.pruner is not: add 'pruner: median', or remove it.")
    spaces_value = value.get("spaces")
    if not isinstance(spaces_value, dict) or not spaces_value:
        raise _error(path, "search.spaces", "expected a mapping of model label: {setting: {kind: values}}.")
    spaces: dict[str, dict[str, BaseDistribution]] = {}
    for label, space in spaces_value.items():
        where = f"search.spaces.{label}"
        if label not in labels:
            raise _error(path, where, f"no model '{label}' under models (labels: {', '.join(labels)}).")
        if not isinstance(space, dict) or not space:
            raise _error(path, where, "expected a mapping of setting: {kind: values}.")
        spaces[label] = {}
        for key, entry in space.items():
            if key == "seed":
                raise _error(path, f"{where}.seed", "the seed is not a setting to tune: search.seed sets the trials' seed.")
            spaces[label][str(key)] = distribution(entry, path, f"{where}.{key}")
    return SearchSpec(trials, seed, metric.lower() if metric else None, startup, spaces, pruner, warmup, dict(spaces_value))


def search_problems(spec: SearchSpec, label: str, config, path: str) -> list[str]:
    """Problems of row ``label``'s search with its resolved ``config`` (its space's keys and values are
    :func:`recbole_gfm.settings.check_space`'s): a pruner on several processes, a metric that validation
    does not compute. Each names the file, the key and the fix."""
    problems = []
    if spec.pruner and label in spec.spaces and (config["nproc"] or 1) > 1:
        problems.append(
            f"{path}: 'search.pruner': {label} trains on {config['nproc']} processes, and a trial is pruned in one: "
            "tune it in one process (remove nproc from the row) or remove the pruner."
        )
    metric = search_metric(spec, config)
    valid_metric = str(config["valid_metric"]).lower()
    if spec.pruner and metric != valid_metric:  # the curve a trial reports is the score its early stopping reads
        problems.append(
            f"{path}: 'search.metric': the pruner reads each trial's validation curve of {label}'s valid_metric "
            f"({valid_metric}), not {metric}: set search.metric and valid_metric to the same metric."
        )
    name, _, k = metric.partition("@")
    computed = {m.lower() for m in config["metrics"]}
    if name not in computed or not k.isdigit() or int(k) not in config["topk"]:
        problems.append(
            f"{path}: 'search.metric': {metric} is not computed on validation for {label} "
            f"(metrics {config['metrics']}, topk {config['topk']}): pick one of them, or add it to metrics / topk."
        )
    return problems


def search_metric(spec: SearchSpec, config) -> str:
    """The validation metric a row's trials are scored by (lower case, as in RecBole's results)."""
    return spec.metric or str(config["valid_metric"]).lower()


def direction(metric: str) -> str:
    """``maximize``, unless RecBole declares the metric smaller-is-better (e.g. averagepopularity)."""
    from recbole.evaluator.register import metrics_dict

    metric_class = metrics_dict.get(metric.split("@")[0])
    return "minimize" if metric_class is not None and metric_class.smaller else "maximize"


def study_fingerprint(spec: SearchSpec, label: str, base: str, metric: str) -> str:
    """What decides a row's trials: ``base`` (the row's settings but the searched keys, and the data),
    the seed, the space, the metric, the sampler's and the pruner's settings. The budget is not in it."""
    space = {key: distribution_to_json(d) for key, d in spec.spaces[label].items()}
    pruning = (spec.pruner, spec.prune_warmup) if spec.pruner else ()  # a search without one keeps its old studies
    return fingerprint("search", base, spec.seed, space, metric, spec.startup_trials, "tpe", *pruning)


def trial_path(output_dir: str, label: str, dataset: str, number: int, study: str) -> str:
    """Trial ``number`` (Optuna's, from 0) is stored and shown as trial ``number + 1``."""
    return os.path.join(output_dir, "search", f"{label}__{dataset}__trial{number + 1}__{study}.json")


def load_trials(output_dir: str, label: str, dataset: str, study: str, warn: Callable[[str], None]) -> list[dict]:
    """The stored trials 1, 2, ... of a study, up to the first missing (or damaged) one."""
    trials = []
    while (trial := _stored(trial_path(output_dir, label, dataset, len(trials), study), warn)) is not None:
        trials.append(trial)
    return trials


def _frozen(trial: dict) -> optuna.trial.FrozenTrial:
    """A stored trial as Optuna's record of it: settings, state, value and validation curve."""
    state = TrialState[trial["state"]]
    return optuna.trial.create_trial(
        params=trial["params"],
        distributions={key: json_to_distribution(d) for key, d in trial["distributions"].items()},
        value=trial["value"] if state == TrialState.COMPLETE else None,
        intermediate_values={int(epoch): v for epoch, v in (trial.get("intermediate") or {}).items()},
        state=state,
    )


def _study(spec: SearchSpec, label: str, metric: str, trials: list[dict], number: int) -> optuna.Study:
    """An in-memory study holding ``trials``, whose sampler is seeded for proposing trial ``number``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = int(fingerprint("tpe", spec.seed, number, length=8), 16)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials)
    study = optuna.create_study(direction=direction(metric), sampler=sampler)
    for trial in trials:
        study.add_trial(_frozen(trial))
    return study


def propose(spec: SearchSpec, label: str, metric: str, trials: list[dict]) -> dict[str, Any]:
    """Settings of the next trial (number ``len(trials)``), given the finished ``trials`` in order."""
    study = _study(spec, label, metric, trials, len(trials))
    return dict(study.ask(dict(spec.spaces[label])).params)


def pruning_job(spec: SearchSpec, metric: str, trials: list[dict]) -> dict[str, Any] | None:
    """What a trial's process needs to prune itself (:class:`Pruning`) given the ``trials`` before it; None: no pruner."""
    if spec.pruner is None:
        return None
    return {"startup_trials": spec.startup_trials, "warmup": spec.prune_warmup, "direction": direction(metric), "trials": trials}


class Pruning:
    """In a trial's process: Optuna's ``MedianPruner`` over the stored trials before it.

    Called after each validation with ``(epoch, score)`` (RecBole's callback), it returns True when
    the trial should stop. The trial is Optuna's own (``study.ask`` of the trial's settings), so the
    rule is Optuna's, not ours.
    """

    def __init__(self, job: dict[str, Any], params: dict[str, Any], distributions: dict[str, str]):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=job["startup_trials"], n_warmup_steps=job["warmup"])
        study = optuna.create_study(direction=job["direction"], pruner=pruner)
        for trial in job["trials"]:
            study.add_trial(_frozen(trial))
        study.enqueue_trial(params)
        self.trial = study.ask({key: json_to_distribution(d) for key, d in distributions.items()})

    def __call__(self, epoch: int, score: float) -> bool:
        self.trial.report(score, epoch)
        return self.trial.should_prune()


def trial_job(spec: SearchSpec, label: str, metric: str, study: str, number: int, params: dict[str, Any]) -> dict[str, Any]:
    """What a trial's process needs to write its file (:func:`trial_record`), JSON-ready."""
    space = {key: distribution_to_json(d) for key, d in spec.spaces[label].items()}
    return {"label": label, "metric": metric, "study": study, "number": number, "params": params, "distributions": space}


def trial_record(label: str, metric: str, study: str, number: int, params: dict[str, Any], distributions: dict[str, str],
                 record: dict | None, log: str | None = None, error: str | None = None,
                 curve: dict[int, float] | None = None) -> dict[str, Any]:  # fmt: skip
    """What a trial file holds. ``record``: the run's record (validation only); None for a failed run.
    ``curve``: the validation score after each validated epoch (0-based), as the pruner reads it."""
    value = None if record is None else (record.get("best_valid_result") or {}).get(metric)
    finite = value is not None and math.isfinite(value)
    if record is not None and not finite:
        error = f"no finite {metric} in the validation result"
    return {
        "study": study,
        "label": label,
        "number": number,
        "params": params,
        "distributions": distributions,
        "metric": metric,
        "state": TrialState.COMPLETE.name if finite else TrialState.FAIL.name,
        "value": value if finite else None,
        "error": error,
        "log": log,
        "intermediate": {str(epoch): score for epoch, score in (curve or {}).items()},
        "run": None if record is None else {
            key: record.get(key) for key in (
                "seed", "best_valid_result", "best_epoch", "epochs_trained", "stopped_early", "train_time_s", "wall_time_s",
            )  # fmt: skip
        },
    }


def pruned_record(job: dict[str, Any], curve: dict[int, float], bigger: bool, seconds: float) -> dict[str, Any]:
    """What a trial file holds for a trial its pruner stopped after the validations of ``curve``;
    ``seconds``: the trial process's time until then (its data preparation included)."""
    best = max(curve, key=lambda epoch: (curve[epoch] if bigger else -curve[epoch], -epoch))  # the first best epoch
    return {
        **trial_record(**job, record=None, curve=curve),
        "state": TrialState.PRUNED.name,
        "run": {
            "best_valid_result": None, "best_epoch": best, "best_so_far": curve[best], "epochs_trained": max(curve) + 1,
            "stopped_early": True, "pruned": True, "train_time_s": round(seconds, 3),
        },
    }  # fmt: skip


@dataclass(frozen=True)
class SearchResult:
    """The trials of one row's search, in order, and the chosen one (None if no trial finished)."""

    trials: list[dict]
    chosen: dict | None
    metric: str
    study: str

    def summary(self) -> dict[str, Any]:
        """What a tuned row's cells record about how their settings were chosen."""
        assert self.chosen is not None
        return {
            "study": self.study,
            "trials": len(self.trials),
            "chosen_trial": self.chosen["number"] + 1,  # as shown and stored: trials count from 1
            "params": self.chosen["params"],
            "metric": self.metric,
            "valid_score": self.chosen["value"],
        }


def choose(spec: SearchSpec, label: str, metric: str, trials: list[dict]) -> dict | None:
    """The finished trial with the best validation value (Optuna's ``best_trial``: the first of ties)."""
    if not any(t["state"] == TrialState.COMPLETE.name for t in trials):
        return None
    return trials[_study(spec, label, metric, trials, len(trials)).best_trial.number]


def _stored(path: str, warn: Callable[[str], None]) -> dict | None:
    """A stored trial, or None when there is none or it fails its check (then moved aside, with one warning)."""
    if not os.path.isfile(path):
        return None
    try:
        return read_json(path)
    except CorruptArtifactError as e:
        warn(f"{e}; moved aside to {move_aside(path)}, the trial runs again.")
        return None


def run_search(
    spec: SearchSpec,
    label: str,
    dataset: str,
    metric: str,
    study: str,
    output_dir: str,
    run_trial: Callable[[int, dict[str, Any], str, list[dict]], None],
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] = print,
) -> SearchResult:
    """Run (or resume) row ``label``'s search on ``dataset`` up to the budget; return its trials.

    Trial by trial: the settings are proposed from the trials before; a stored trial with these
    settings (:func:`same_settings`: floats to 1e-9, as a proposal's last bits move across CPUs) is
    kept, any other is run: ``run_trial(number, params, path, trials)`` runs it (``trials``: the
    ones before it, which its pruner reads) and stores its file at ``path`` (the benchmark runs it
    in a child process). ``say`` prints progress, ``warn`` names a damaged trial file.
    """
    trials: list[dict] = []
    while len(trials) < spec.trials:
        number = len(trials)
        params = propose(spec, label, metric, trials)
        path = trial_path(output_dir, label, dataset, number, study)
        head = f"search {label} on {dataset}, trial {number + 1}/{spec.trials}"
        stored = _stored(path, warn)
        if stored is not None and same_settings(stored["params"], params):
            say(f"{head}: done before, kept")
        else:
            start = time.perf_counter()
            run_trial(number, params, path, trials)
            stored = read_json(path)
            say(f"{head}: {_outcome(stored)} in {time.perf_counter() - start:.1f} s")
        trials.append(stored)
    result = SearchResult(trials, choose(spec, label, metric, trials), metric, study)
    if result.chosen is not None:
        say(f"search {label} on {dataset}: chose trial {result.chosen['number'] + 1}, valid {metric} {result.chosen['value']:.4f}")
    return result


def same_settings(stored: dict[str, Any], proposed: dict[str, Any]) -> bool:
    """Whether a stored trial ran the proposed settings: equal keys and values, floats to a relative 1e-9.

    TPE's proposal is a function of the seed and the trials before, but its floating-point work
    (numpy's, on another CPU) can move a value's last bits (a learning rate 0.00939684983786018 on
    one machine, 0.009396849837860188 on another): that is the same trial, not a new one to run.
    """
    if stored.keys() != proposed.keys():
        return False
    return all(
        math.isclose(a, b, rel_tol=1e-9) if isinstance(a, float) and isinstance(b, float) else a == b
        for a, b in ((stored[k], proposed[k]) for k in stored)
    )


def _outcome(trial: dict) -> str:
    if trial["state"] == TrialState.PRUNED.name:
        run = trial["run"]
        return f"pruned after epoch {run['epochs_trained']} (valid {trial['metric']} {run['best_so_far']:.4f} so far)"
    if trial["value"] is None:
        return f"failed ({trial['error']}; log {trial['log']})"
    return f"valid {trial['metric']} {trial['value']:.4f}"
