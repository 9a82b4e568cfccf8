"""One schema for every config key this package or RecBole reads: its type, range and choices.

Derived, not hand-typed. Every properties file RecBole and this plugin ship defines keys with a
default and, in a ``# (type) description`` comment, their type (``(int)``, ``(list of float)``,
``(str or None)`` ...) and for some their choices (``Range in ['BPR', 'CE']``); a key without such a
comment takes the type of its default, and ``~`` (None) is accepted where some file defaults to it
or the description says what ``~`` means. :data:`RULES` adds what a file does not say, for the keys
where a wrong value does harm late: ``epochs >= 1``, ``learning_rate > 0``, probabilities (keys
named ``*dropout*`` or ``*_prob``) in [0, 1], ``topk`` positive integers, ``metrics`` and
``valid_metric`` that RecBole computes, device strings torch accepts, the shape of ``eval_args`` ...
Model-specific keys (RecBole's ``properties/model/<Model>.yaml`` and this plugin's) belong to their
model; without a model, every model's keys are known, with any type one of them gives.

:class:`~recbole_gfm.config.Config` checks, before any data is loaded, each config file, the
``config_dict``, the command line and this plugin's properties files: a wrong type, range or choice
is a :class:`SettingsError` that names the file (or "command line"), the key, what was expected and
the fix. An unknown key at the top level of a run is a warning with its closest match, as RecBole
users expect; inside a nested section (``foundation:``, ``eval_args``, ``train_neg_sample_args``)
it is an error. A value of the right type written as a string on the command line is converted by
RecBole first, as ever (``--epochs=10``, ``--learning_rate=1e-3``, ``--topk=[10,20]``).

The checks are :mod:`recbole_gfm.settings`: :class:`~recbole_gfm.config.Config` runs them on
each layer, benchmark files on their rows and search spaces.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

import torch
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.config import configurator
from recbole.evaluator import metric_types

from recbole_gfm.errors import ConfigError

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")  # this plugin's properties files


@lru_cache(maxsize=None)
def yaml_loader() -> type:
    """The YAML loader RecBole reads properties with: YAML 1.1 plus floats without a dot (``1e-3``)."""
    return RecBoleConfig._build_yaml_loader(None)

RECBOLE_PROPERTIES = os.path.join(os.path.dirname(configurator.__file__), "..", "properties")
# The encoders a downstream model's ``foundation: {model: ...}`` can name (recbole_gfm.foundation).
FOUNDATION_MODELS = ("HGNN", "Propagation")
# RecBole's optimizers (Trainer._build_optimizer: another name silently trains with Adam).
LEARNERS = ("adam", "adamw", "sgd", "adagrad", "rmsprop", "sparse_adam")
# Logging levels RecBole's init_logger knows (another name silently logs at INFO).
STATES = ("debug", "info", "warning", "error", "critical")
# Metrics whose result has no @k (RecBole's evaluator: value metrics and GAUC).
_NO_K = frozenset(name for name, kind in metric_types.items() if kind.name == "VALUE") | {"gauc"}
# Keys RecBole or this plugin read that no properties file defines, or sets itself.
_UNFILED = {
    "model": "str",
    "dataset": "str",
    "config_files": "list or str",  # this plugin's YAML files (RecBole's config_file_list)
    "benchmark": "str",  # run_recbole_gfm.py --benchmark FILE
    "encoding": "str or None",  # of the atomic files (RecBole's reader; ~: the locale's)
    "local_rank": "int",  # a process's rank on its machine, set by the launcher
}
_TYPE_WORDS = {"int": "int", "float": "float", "str": "str", "string": "str", "bool": "bool", "dict": "dict", "list": "list"}
_KEY_LINE = re.compile(r"^(#\s*)?([A-Za-z_][\w-]*)\s*:([^#]*)#\s*(?:\(([^()]*)\))?(.*)$")
_CHOICES = re.compile(r"(?:range in|ranging in)\s*`*\[([^\]]*)\]", re.IGNORECASE)
_PROBABILITY = re.compile(r"dropout|_probs?$")


class SettingsError(ConfigError):
    """A setting of the wrong type, range or choice, or an unknown key where none may be; the message
    starts with where it was given (a file, "command line", a benchmark row) and says the fix."""


@dataclass(frozen=True)
class Rule:
    """What one key accepts. ``types``: some of int, float, bool, str, list, dict (empty: anything);
    bounds and ``choices`` hold for a scalar value and for every item of a list."""

    types: frozenset[str] = frozenset()
    items: str | None = None  # the type of a list's items
    nullable: bool = True  # ~ (None) accepted
    low: float | None = None
    high: float | None = None
    above: bool = False  # low is exclusive: > low
    choices: tuple[Any, ...] = ()
    fold_case: bool = False  # choices compared in lower case
    check: Callable[[Any], str | None] | None = None  # a further test: the problem, or None
    expected: str = ""  # what the value must be, in words, when the rest cannot say it
    default: Any = None  # an example for the fix

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has an accepted type, range and choice (:attr:`check` aside)."""
        if value is None:
            return self.nullable
        if self.types and not any(_is(value, t) for t in self.types):
            return False
        listed = isinstance(value, (list, tuple)) and "list" in self.types
        if listed and not self.items:
            return True  # items of any type: nothing more to check
        scalars = list(value) if listed else [value]
        if listed and not all(_is(v, self.items) for v in scalars):
            return False
        return all(self._within(v) for v in scalars)

    def _within(self, value: Any) -> bool:
        if self.choices and (value.lower() if self.fold_case and isinstance(value, str) else value) not in self.choices:
            return False
        if not _is(value, "float"):
            return True
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        """What a value must be, in words."""
        if self.expected:
            text = self.expected
        elif self.choices:
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            shown = self.types - {"int"} if "float" in self.types else self.types  # a number covers the integers
            kinds = [_NOUNS[t] for t in sorted(shown, key=_ORDER.index)] or ["any value"]
            if self.items:
                kinds = [f"a list of {_NOUNS[self.items].split(' ', 1)[1]}s" if k == "a list" else k for k in kinds]
            text = " or ".join(kinds)
            if self.low is not None and self.high is not None:
                text += f" in {'(' if self.above else '['}{_num(self.low)}, {_num(self.high)}]"
            elif self.low is not None:
                text += f" {'>' if self.above else '>='} {_num(self.low)}"
            elif self.high is not None:
                text += f" <= {_num(self.high)}"
        return text + (" or ~" if self.nullable and "~" not in text else "")


_ORDER = ["bool", "int", "float", "str", "list", "dict"]
_NOUNS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "True or False", "list": "a list", "dict": "a mapping"}


def _is(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"bool": bool, "str": str, "list": (list, tuple), "dict": Mapping}[kind])


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# ---------------------------------------------------------------------------------------------
# Checks a type cannot express


def _metric_names(value: Any) -> str | None:
    names = [value] if isinstance(value, str) else value
    unknown = [n for n in names if not isinstance(n, str) or n.lower() not in metric_types]
    if unknown:
        return f"names no metric RecBole has: {unknown} (RecBole's: {', '.join(sorted(metric_types))})"
    return None


def _valid_metric(value: str) -> str | None:
    name, at, k = value.lower().partition("@")
    if name not in metric_types:
        close = difflib.get_close_matches(name, list(metric_types), n=1)
        return f"names no metric RecBole has{f' (did you mean {close[0]}?)' if close else ''}"
    if name in _NO_K and at:
        return f"{name} has no @k"
    if name not in _NO_K and not (k.isdigit() and int(k) > 0):
        return f"needs its cut-off, e.g. {name.upper()}@10"
    return None


def _device(value: str) -> str | None:
    try:
        device = torch.device(value.strip().lower())
    except RuntimeError:
        return "is not a device torch knows"
    return None if device.type in ("cpu", "cuda") else "is not a cpu or cuda device"


def _gpu_id(value: Any) -> str | None:
    ids = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    bad = [i for i in ids if not str(i).strip().isdigit()] if str(value).strip() else []
    return f"holds {bad}, which are not GPU numbers" if bad else None


def _interval(value: str) -> str | None:
    return None if re.fullmatch(r"\s*[\[(]\s*[^,]*,\s*[^,]*[\])]\s*", value) else "is not an interval such as [10,inf)"


EVAL_ARGS_RULES = {
    "split": Rule(frozenset({"dict"}), nullable=False, expected="{RS: [0.8, 0.1, 0.1]} or {LS: valid_and_test} (or test_only)"),
    "order": Rule(frozenset({"str"}), choices=("RO", "TO"), nullable=False),
    "group_by": Rule(frozenset({"str"}), choices=("user", "none"), nullable=True),
    "mode": Rule(frozenset({"str", "dict"}), nullable=False, expected="full, labeled, uniN, popN, or {valid: ..., test: ...}"),
}
NEG_SAMPLE_ARGS_RULES = {
    "distribution": Rule(frozenset({"str"}), choices=("uniform", "popularity", "none")),
    "sample_num": Rule(frozenset({"int", "str"}), low=1, check=lambda v: None if v != "" else "is empty", expected="an integer >= 1"),
    "alpha": Rule(frozenset({"float", "str"})),
    "dynamic": Rule(frozenset({"bool"}), nullable=False),
    "candidate_num": Rule(frozenset({"int"}), low=0, nullable=False),
}


def split_problem(value: Mapping) -> str | None:
    if len(value) != 1:
        return "must hold one key, RS or LS"
    (kind, args), = value.items()
    if kind == "RS":
        ok = isinstance(args, (list, tuple)) and 2 <= len(args) <= 3 and all(_is(a, "float") and a >= 0 for a in args)
        return None if ok and sum(args) > 0 else f"RS takes 2 or 3 non-negative ratios, e.g. [0.8, 0.1, 0.1], not {args!r}"
    if kind == "LS":
        return None if args in ("valid_and_test", "test_only") else f"LS takes valid_and_test or test_only, not {args!r}"
    return f"has the key {kind!r}: use RS (ratios) or LS (leave-one-out)"


def mode_problem(value: Any) -> str | None:
    modes = list(value.values()) if isinstance(value, Mapping) else [value]
    if isinstance(value, Mapping) and set(value) - {"valid", "test"}:
        return "takes the keys valid and test"
    bad = [m for m in modes if not (isinstance(m, str) and re.fullmatch(r"full|labeled|(uni|pop)\d+", m))]
    return f"holds {bad}: use full, labeled, uniN or popN (N sampled negatives)" if bad else None


# Constraints a properties file does not state, merged over what the files give (key: Rule fields).
RULES: dict[str, dict[str, Any]] = {
    "epochs": dict(low=1, nullable=False),
    "train_batch_size": dict(low=1, nullable=False),
    "eval_batch_size": dict(low=1, nullable=False),
    "learning_rate": dict(low=0, above=True, nullable=False),
    "weight_decay": dict(low=0, nullable=False),
    # RecBole: an eval_step below 1 never validates (the last epoch is kept); a negative one is a slip
    "eval_step": dict(low=0, nullable=False),
    "stopping_step": dict(low=1, nullable=False),
    "seed": dict(nullable=False),
    "learner": dict(choices=LEARNERS, fold_case=True, nullable=False),
    "state": dict(choices=STATES, fold_case=True),
    "topk": dict(types=frozenset({"int", "list"}), items="int", low=1, nullable=False,
                 check=lambda v: "is an empty list" if isinstance(v, (list, tuple)) and not v else None),
    "metrics": dict(types=frozenset({"str", "list"}), items="str", nullable=False, check=_metric_names),
    "valid_metric": dict(types=frozenset({"str"}), nullable=False, check=_valid_metric, expected="a metric RecBole computes, e.g. NDCG@10"),
    "eval_args": dict(types=frozenset({"dict"}), nullable=False),
    "train_neg_sample_args": dict(types=frozenset({"dict"})),
    "device": dict(types=frozenset({"str"}), check=_device, expected="cpu, cuda or cuda:N"),
    "text_device": dict(types=frozenset({"str"}), check=_device, expected="cpu, cuda or cuda:N"),
    "use_gpu": dict(nullable=False),
    "gpu_id": dict(types=frozenset({"str", "int", "list"}), check=_gpu_id, expected="GPU numbers such as '0' or '0,1'"),
    "load_col": dict(types=frozenset({"dict"}), nullable=True),
    "user_inter_num_interval": dict(check=_interval),
    "item_inter_num_interval": dict(check=_interval),
    "MAX_ITEM_LIST_LENGTH": dict(low=1, nullable=False),
    "nproc": dict(types=frozenset({"int"}), low=1),
    "world_size": dict(types=frozenset({"int"}), low=-1, check=lambda v: "is 0" if v == 0 else None, expected="an integer >= 1 (-1 or ~: nproc)"),
    "offset": dict(types=frozenset({"int"}), low=0),
    "port": dict(types=frozenset({"int"}), low=1, high=65535),
    "local_rank": dict(low=0),
    # this plugin's keys whose choices or ranges their comments state in words
    "aggregation": dict(choices=("max", "mean", "attention"), nullable=False),
    "activation": dict(choices=("relu", "leakyrelu", "gelu", "tanh"), nullable=False),
    "link_loss": dict(choices=("margin", "infonce"), nullable=False),
    "temperature": dict(low=0, above=True, nullable=False),
    "embedding_size": dict(low=1, nullable=False),
    "hidden_size": dict(low=1, nullable=False),
    "text_batch_size": dict(low=1, nullable=False),
    "graph_min_cocount": dict(low=1, nullable=False),
    "graph_topk": dict(low=1),
    "graph_time_window": dict(low=0, above=True),
    "fanouts": dict(low=0, nullable=False),  # 0: every neighbour
    "inference_fanouts": dict(low=0),
    "num_negatives": dict(low=0, nullable=False),
    "hard_negatives": dict(low=0, nullable=False),
    "propagation_hops": dict(low=0, nullable=False),
    "foundation_time_cutoff": dict(low=0, high=1, above=True),
    "mlp_hidden_sizes": dict(low=1, nullable=False),
    "feature_embedding_size": dict(low=1, nullable=False),
    "foundation": dict(types=frozenset({"dict"})),
}


# ---------------------------------------------------------------------------------------------
# Rules derived from the properties files


@dataclass
class _Draft:
    """What the files say of one key, before :data:`RULES`."""

    commented: Rule | None = None  # from the most specific ``# (type)`` comment
    defaults: list[Any] = field(default_factory=list)
    none_meant: bool = False  # some file defaults to ~ or says what ~ means


def _comment_rule(kind: str, text: str) -> Rule | None:
    """The rule a ``(type)`` comment gives, or None when the parentheses hold no type."""
    nullable, types, items = False, set(), None
    for word in re.split(r"\s+or\s+|,\s*", kind.strip().lower()):
        if word in ("none", "optional"):
            nullable = True
        elif word in _TYPE_WORDS:
            types.add(_TYPE_WORDS[word])
        elif (m := re.fullmatch(r"list of (\w+)", word)) and m.group(1) in _TYPE_WORDS:
            types.add("list")
            items = _TYPE_WORDS[m.group(1)]
        else:
            return None
    choices: tuple = ()
    if (m := _CHOICES.search(text)) and types <= {"str"}:
        choices = tuple(c.strip(" '\"") for c in m.group(1).split(",") if c.strip(" '\""))
    elif m and types <= {"int", "float"}:
        low, high = (float(x) for x in m.group(1).split(","))
        return Rule(frozenset(types), nullable=nullable, low=low, high=high)
    return Rule(frozenset(types), items, nullable, choices=choices)


def _read(path: str, drafts: dict[str, _Draft]) -> None:
    """Add the keys of one properties file (and its commented-out, documented ones) to ``drafts``."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    values = yaml.load(text, Loader=yaml_loader()) or {}
    for line in text.splitlines():
        m = _KEY_LINE.match(line)
        if not m or (m.group(1) and m.group(2) in values):
            continue
        key, kind, rest = m.group(2), m.group(4), m.group(5)
        draft = drafts.setdefault(key, _Draft())
        rule = _comment_rule(kind, rest) if kind else None
        if rule is not None:
            draft.commented = rule
        if "~" in rest:
            draft.none_meant = True
        if m.group(1):  # documented but unset (this plugin's multi-process keys)
            draft.defaults.append(yaml.load(m.group(3), Loader=yaml_loader()))
    for key, value in values.items():
        draft = drafts.setdefault(key, _Draft())
        draft.defaults.append(value)
        draft.none_meant |= value is None


def _rule(key: str, draft: _Draft) -> Rule:
    given = [v for v in draft.defaults if v is not None]
    rule = draft.commented or Rule(frozenset(_kind(v) for v in given[-1:]))
    rule = replace(rule, nullable=rule.nullable or draft.none_meant, default=given[0] if given else None)
    if _PROBABILITY.search(key) and rule.types & {"float", "list"} and rule.low is None:
        rule = replace(rule, low=0, high=1)
    return replace(rule, **RULES.get(key, {}))


def _kind(value: Any) -> str:
    for kind in ("bool", "int", "float", "str", "list", "dict"):
        if _is(value, kind):
            return kind
    return "str"


def _files(folder: str, names: Iterable[str] | None = None) -> list[str]:
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, n) for n in sorted(names or os.listdir(folder)) if n.endswith(".yaml") and os.path.isfile(os.path.join(folder, n))]


@lru_cache(maxsize=None)
def _general() -> dict[str, Rule]:
    """Keys every run reads, whatever its model: RecBole's and this plugin's overall, dataset and protocol files."""
    drafts: dict[str, _Draft] = {}
    paths = (
        [os.path.join(RECBOLE_PROPERTIES, "overall.yaml")]
        + _files(os.path.join(RECBOLE_PROPERTIES, "dataset"), ["sample.yaml", "ml-100k.yaml"])  # not url.yaml: dataset names
        + _files(os.path.join(RECBOLE_PROPERTIES, "quick_start_config"))
        + [os.path.join(PROPERTIES_DIR, "overall.yaml")]
        + _files(os.path.join(PROPERTIES_DIR, "dataset"))
        + _files(os.path.join(PROPERTIES_DIR, "protocol"))
    )
    for path in paths:
        _read(path, drafts)
    for key, kind in _UNFILED.items():
        drafts.setdefault(key, _Draft()).commented = _comment_rule(kind, "")
    for args in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        for key in getattr(configurator, args, []):
            drafts.setdefault(key, _Draft(none_meant=True))  # read by RecBole, unset unless a file sets it
    return {key: _rule(key, draft) for key, draft in drafts.items()}


@lru_cache(maxsize=None)
def _model_keys(model: str) -> dict[str, Rule]:
    """The keys of ``model``'s own properties files (RecBole's, then this plugin's); a key a model
    file sets without a ``(type)`` comment keeps the general rule, with the model's default."""
    drafts: dict[str, _Draft] = {}
    for folder in (os.path.join(RECBOLE_PROPERTIES, "model"), os.path.join(PROPERTIES_DIR, "model")):
        path = os.path.join(folder, f"{model}.yaml")
        if os.path.isfile(path):
            _read(path, drafts)
    general = _general()
    return {
        key: replace(general[key], default=draft.defaults[-1]) if key in general and not draft.commented else _rule(key, draft)
        for key, draft in drafts.items()
    }


def _either(a: Rule, b: Rule) -> Rule:
    """A rule that accepts what ``a`` or ``b`` accepts (a key two models define differently), loosely."""
    if replace(a, default=None) == replace(b, default=None):
        return a
    types = a.types | b.types if a.types and b.types else frozenset()
    return Rule(types, a.items if a.items == b.items else None, a.nullable or b.nullable, default=a.default)


@lru_cache(maxsize=None)
def _every_model() -> dict[str, Rule]:
    """Every model's keys, each accepting any value one of the models accepts."""
    folders = (os.path.join(RECBOLE_PROPERTIES, "model"), os.path.join(PROPERTIES_DIR, "model"))
    merged: dict[str, Rule] = {}
    for name in sorted({n[:-5] for folder in folders for n in os.listdir(folder) if n.endswith(".yaml")}):
        for key, rule in _model_keys(name).items():
            merged[key] = _either(merged[key], rule) if key in merged else rule
    return merged


def schema(model: str | None = None) -> dict[str, Rule]:
    """Every key a run of ``model`` reads, with its rule (``model`` None: every model's keys)."""
    return {**_general(), **(_every_model() if model is None else _model_keys(model))}


# ---------------------------------------------------------------------------------------------
# Checking
