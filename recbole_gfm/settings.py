"""Checking settings against the schema (:mod:`recbole_gfm.schema`): a run's layers, a benchmark's
rows and nested sections, and search spaces, each problem naming where it is, the key and the fix.

:class:`~recbole_gfm.config.Config` calls :func:`check_settings` on each layer before any data is
loaded (an unknown top-level key a warning); benchmark files check their rows with
:func:`check_settings` (an unknown key an error) and their search spaces with :func:`check_space`;
:func:`check_resolved` checks what only the resolved settings show (``valid_metric`` computed).
"""

from __future__ import annotations

import difflib
from logging import getLogger
from typing import Any, Iterable, Mapping

from recbole_gfm.errors import ConfigError
from recbole_gfm.registry import get_model
from recbole_gfm.schema import EVAL_ARGS_RULES, NEG_SAMPLE_ARGS_RULES, FOUNDATION_MODELS, Rule, SettingsError, mode_problem, split_problem, schema


def _example(path: str, rule: Rule, where: str) -> str:
    """The fix, written the way ``where`` takes settings: ``--key=value`` or ``key: value``."""
    value = rule.default if rule.default is not None else (rule.choices[0] if rule.choices else None)
    if value is None:
        return f"Set '{path}' to {rule.describe()}."
    outer, _, inner = path.rpartition(".")
    if where.startswith("command line"):
        shown = str(value).replace(" ", "") if not isinstance(value, str) else value
        return f"Write e.g. --{path}={shown}." if not outer else f"Write e.g. --{outer}=\"{{'{inner}': {value!r}}}\"."
    return f"Write e.g. {path}: {value}." if not outer else f"Write e.g. {outer}: {{{inner}: {value}}}."


def _closest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"did you mean '{close[0]}'?" if close else "no known key is close to it."


def _value_problems(path: str, value: Any, rule: Rule, where: str) -> list[str]:
    """The problem of ``value`` for the key at ``path`` (``foundation.epochs`` inside a section), if any."""
    if rule.accepts(value):
        why = rule.check(value) if rule.check and value is not None else None
        if why is None:
            return []
        return [f"{where}: '{path}' {why}, got {value!r}. {_example(path, rule, where)}"]
    return [f"{where}: '{path}' must be {rule.describe()}, got {value!r} ({type(value).__name__}). {_example(path, rule, where)}"]


def _nested(path: str, value: Mapping, rules: Mapping[str, Rule], where: str) -> list[str]:
    problems = []
    for key, sub in value.items():
        if key in rules:
            problems += _value_problems(f"{path}.{key}", sub, rules[key], where)
        else:
            problems.append(f"{where}: '{path}.{key}' is not a key of {path}: {_closest(str(key), rules)} Its keys: {', '.join(rules)}.")
    return problems


def _section_problems(key: str, value: Any, where: str) -> list[str]:
    """Problems inside a nested section (eval_args, train_neg_sample_args, foundation): unknown keys are errors."""
    if not isinstance(value, Mapping):
        return []
    if key == "eval_args":
        problems = _nested(key, value, EVAL_ARGS_RULES, where)
        for sub, test in (("split", split_problem), ("mode", mode_problem)):
            why = test(value[sub]) if isinstance(value.get(sub), (Mapping, str)) else None
            if why:
                problems.append(f"{where}: 'eval_args.{sub}' {why}.")
        return problems
    if key == "train_neg_sample_args":
        return _nested(key, value, NEG_SAMPLE_ARGS_RULES, where)
    if key == "foundation":
        model = value.get("model", FOUNDATION_MODELS[0])
        if model not in FOUNDATION_MODELS:
            return [f"{where}: 'foundation.model' is {model!r}, not a foundation encoder: choose one of {', '.join(FOUNDATION_MODELS)}."]
        settings = {k: v for k, v in value.items() if k != "model"}
        return _problems(settings, where, model, "error", section="foundation")
    return []


def _problems(settings: Mapping[str, Any], where: str, model: str | None, unknown: str, section: str = "") -> list[str]:
    rules = schema(model)
    prefix = f"{section}." if section else ""
    owner = f"{model} (the foundation)" if section == "foundation" else model or "RecBole or recbole_gfm"
    problems = []
    for key, value in settings.items():
        key = str(key)
        if key in rules:
            problems += _value_problems(prefix + key, value, rules[key], where) or _section_problems(key, value, where)
        elif unknown != "ignore":
            message = f"{where}: '{prefix}{key}' is not a setting of {owner}: {_closest(key, rules)}"
            if unknown == "warn":
                getLogger().warning(message)
            else:
                problems.append(f"{message} Remove it or correct its name.")
    return problems


def check_settings(settings: Mapping[str, Any], where: str, *, model: str | type | None = None, unknown: str = "error") -> None:
    """Check config settings against the schema; raise :class:`SettingsError` listing every problem.

    Args:
        settings: config keys and values as a file or a ``config_dict`` gives them (a benchmark row's
            own keys, such as ``max_epochs`` or ``config_files``, removed first). Strings from a command
            line must have gone through RecBole's conversion first (``Config._convert_config_dict``).
        where: where the settings come from; every message starts with it, e.g.
            ``"benchmarks/x/board.yaml, row 'BPR'"``, ``"command line"``, a file's path.
        model: the model they are for (a name or class): its own keys (LightGCN's ``n_layers``, GFM's
            ``temperature``) are known and typed as its properties files say. None: the ``model``
            key of ``settings`` if it has one, else every model's keys are known, each with any type
            one of the models gives it.
        unknown: what an unknown top-level key is: ``"error"`` (listed in the raised error with its
            closest match), ``"warn"`` (a logged warning, as at a run's top level) or ``"ignore"``.

    A value of the wrong type, out of range or not among the key's choices is always an error, and
    so is an unknown key inside a nested section: ``foundation:`` (checked as settings of its
    ``model``, HGNN by default), ``eval_args`` and ``train_neg_sample_args``. The error lists every
    problem, one per line, each starting with ``where``, naming the key (``foundation.epochs``
    inside a section) and saying what was expected and the fix. An unknown ``model`` is a
    :class:`~recbole_gfm.config.ConfigError` with close matches.
    """
    if unknown not in ("error", "warn", "ignore"):
        raise ValueError(f"unknown must be error, warn or ignore, not {unknown!r}")
    if model is None and isinstance(settings.get("model"), str):
        model = settings["model"]
    if model is not None:
        model = get_model(model).__name__ if isinstance(model, str) else model.__name__
    problems = _problems(settings, where, model, unknown)
    if problems:
        raise SettingsError("\n".join(problems))


def check_resolved(final: Mapping[str, Any]) -> None:
    """What no single layer can check, for a run that trains: ``valid_metric`` must be among the
    ``metrics`` and ``topk`` RecBole computes (else training stops with a KeyError after its first
    validation). ``final``: a resolved config (a Config that only evaluates needs no valid_metric)."""
    name, _, k = str(final["valid_metric"]).lower().partition("@")
    computed = [m.lower() for m in final["metrics"]]
    if name not in computed:
        raise SettingsError(
            f"the resolved config: valid_metric {final['valid_metric']} is not computed: metrics are {final['metrics']}. "
            f"Add {name} to metrics, or choose valid_metric among them."
        )
    if k and int(k) not in final["topk"]:
        raise SettingsError(
            f"the resolved config: valid_metric {final['valid_metric']} is not computed: topk is {final['topk']}. Add {k} to topk, "
            f"or choose valid_metric at one of them (e.g. {name.upper()}@{final['topk'][0]})."
        )


_KINDS = ("choice", "uniform", "loguniform", "int")


def check_space(space: Mapping[str, Any], where: str, *, model: str | None = None, section: str = "") -> None:
    """Check a search space, ``{key: {kind: values}}`` with kind one of choice, uniform, loguniform, int.

    Every key must be a setting of ``model`` (an unknown one is an error with its closest match);
    every choice must be a value the key accepts; uniform and loguniform need a key that takes
    numbers, int one that takes integers, and both ends of the range must be values the key accepts
    (``dropout_prob: {uniform: [0, 1.5]}`` is an error). Raises :class:`SettingsError` listing every
    problem, each starting with ``where`` (e.g. ``"x.yaml"``) and naming the key inside ``section``
    (e.g. ``search.spaces.GFM``: ``'search.spaces.GFM.temperature'``).
    """
    rules = schema(get_model(model).__name__ if model else None)
    problems = []
    for key, entry in space.items():
        rule, path = rules.get(key), f"{section}.{key}" if section else key
        if rule is None:
            problems.append(f"{where}: '{path}' is not a setting of {model or 'any model'}: {_closest(key, rules)}")
            continue
        if not (isinstance(entry, Mapping) and len(entry) == 1 and next(iter(entry)) in _KINDS):
            problems.append(f"{where}: '{path}' must be one {{kind: values}}, kind one of {', '.join(_KINDS)}, got {entry!r}.")
            continue
        (kind, values), = entry.items()
        draws = {"choice": None, "int": "int", "uniform": "float", "loguniform": "float"}[kind]
        numbers = rule.types & {"int", "float"} if rule.types else {"int", "float"}
        if draws and not numbers:
            problems.append(f"{where}: '{path}' takes {rule.describe()}, but {kind} draws numbers: use choice.")
        elif draws == "float" and "float" not in numbers:
            problems.append(f"{where}: '{path}' takes {rule.describe()}, but {kind} draws fractions: use int or choice.")
        else:
            for value in values if isinstance(values, (list, tuple)) else [values]:
                problems += _value_problems(path, value, rule, where)
    if problems:
        raise SettingsError("\n".join(problems))


def is_whole(value: Any, minimum: int | None = None) -> bool:
    """``value`` is an integer (a bool is not one) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum)


def whole_number(value: Any, where: str, minimum: int | None = None, meaning: str = "",
                 error: type[ConfigError] = ConfigError) -> int:  # fmt: skip
    """``value`` when :func:`is_whole`; else ``error``: ``<where>: expected a positive integer (<meaning>), got ...``."""
    if not is_whole(value, minimum):
        kind = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise error(f"{where}: expected {kind}{f' ({meaning})' if meaning else ''}, got {value!r}.")
    return value
