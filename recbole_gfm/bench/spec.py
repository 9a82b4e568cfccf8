"""Benchmark files: parsed, checked and resolved into rows before anything runs.

A benchmark is a grid of models x datasets x seeds from one YAML file (paths relative to the file;
a model is one line under ``models``)::

    protocol: temporal                 # properties/protocol/<name>.yaml (optional)
    config_files: [extra.yaml]         # shared properties files (optional)
    config: {eval_batch_size: 40960}   # shared settings (optional)
    datasets: {ml-100k-typed: {}}      # name: settings for that dataset
    models:                            # label: settings for that model (model: Name if label differs)
      Pop: {}
      LightGCN: {learning_rate: 0.002, max_epochs: 10}   # a row's own cap overrides the file's
      GFM-noGNN: {model: GFM, use_foundation: False}
    seeds: [2020, 2021]
    max_epochs: 5                      # optional cap; rows that reach it are marked "capped" in the table
    columns: [hit@10, ndcg@10]         # leaderboard metrics (default: every overall metric)
    type_columns: [hit@10]             # metrics shown per item type, warm and cold (default: first column)
    reference: GFM-noGNN               # optional: every row is also tested against this row
    targets:                           # optional: what the board must show, judged in its report (bench.targets)
      - {row: GFM-noGNN, metric: hit@10, over: [LightGCN, Pop], at_least: 1.1}
    jobs: 2                            # cells run at a time (default 1; --jobs N overrides), the cores shared
    search:                            # optional: budget-matched tuning (recbole_gfm.bench.search)
      trials: 8                        # one budget for every row that has a space
      seed: 2020                       # the trials' seed (default: the first of seeds)
      metric: ndcg@10                  # validation metric to optimise (default: each row's valid_metric)
      startup_trials: 10               # TPE's first random trials (default: Optuna's 10)
      pruner: median                   # optional: Optuna's median pruner stops trials below the median curve
      prune_warmup: 5                  # validations every trial runs before it can be pruned (default 5)
      spaces:                          # label: {setting: {choice | uniform | loguniform | int: values}}
        LightGCN: {learning_rate: {loguniform: [1.0e-4, 1.0e-2]}, n_layers: {choice: [1, 2, 3]}}
    output_dir: results/benchmark/quick  # default: results/benchmark/<file name>

**Boards of record.** A folder ``benchmarks/<board>/`` holding ``board.yaml`` (the file above, without
``output_dir``) is a board whose results are published in the folder itself
(:class:`recbole_gfm.bench.board.Benchmark`); rows added to it by ``--add-row`` live in its
``rows/<label>.yaml`` files, each with ``models:`` (the added rows) and, optionally,
``search: {spaces: ...}`` (their spaces; the board's budget applies).

Before running anything the whole file is checked: every cell's config resolves, the dataset files
exist, known incompatible combinations (a sequential model under a random-order split, a time
ordered split without the time field, a knowledge model without its graph files) and every search
space key are caught, each error naming the file, the row and the fix.
"""

from __future__ import annotations

import difflib
import glob
import os
from dataclasses import replace
from typing import Any

from recbole.trainer import TraditionalTrainer
from recbole.utils import ModelType

from recbole_gfm.artifacts import file_fingerprint, fingerprint, settings_fingerprint
from recbole_gfm.bench.board import Benchmark, Row
from recbole_gfm.bench.record import FOUNDATION_PREFIX
from recbole_gfm.bench.targets import parse_targets
from recbole_gfm.bench.search import direction, parse_search, search_metric, search_problems, study_fingerprint
from recbole_gfm.checkpoint import to_plain
from recbole_gfm.config import Config, ConfigError, load_yaml
from recbole_gfm.settings import check_settings, check_space, is_whole, whole_number
from recbole_gfm.data.protocol import protocol_file
from recbole_gfm.registry import get_model, get_trainer
from recbole_gfm.run.stages import check_dataset_files, model_inputs

KEYS = {
    "name", "description", "protocol", "config_files", "config", "datasets", "models", "seeds",
    "max_epochs", "columns", "type_columns", "output_dir", "reference", "targets", "search", "jobs",
}  # fmt: skip
BOARD_VALID_METRIC = "NDCG@10"  # what every row of a board validates on unless its config says otherwise
BOARD_FILE = "board.yaml"  # a board of record's benchmark file, in its folder
ROWS_DIR = "rows"  # a board of record's added rows, one file each
ROW_KEYS = {"models", "search"}  # what an added row's file may hold
ROW_SEARCH_KEYS = {"spaces"}


class BenchmarkError(ConfigError):
    """A problem in a benchmark file (or its board); the message names the file and the key."""


class _NoData(ConfigError):
    """A dataset's atomic files are missing (reported once per dataset, not once per row)."""


def _error(path: str, key: str, message: str) -> BenchmarkError:
    return BenchmarkError(f"{path}: '{key}': {message}")


def _mapping(value: Any, path: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {v: {} for v in value}
    if not isinstance(value, dict):
        raise _error(path, key, f"expected a mapping (name: settings) or a list of names, got {type(value).__name__}.")
    for name, settings in value.items():
        if settings is not None and not isinstance(settings, dict):
            raise _error(path, f"{key}.{name}", f"settings must be a mapping, got {settings!r}.")
    return {str(name): dict(settings or {}) for name, settings in value.items()}


def _files(value: Any, base: str, path: str, key: str) -> list[str]:
    if value is None:
        return []
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list):
        raise _error(path, key, "expected a file name or a list of them.")
    resolved = []
    for name in files:
        full = name if os.path.isabs(name) else os.path.normpath(os.path.join(base, name))
        if not os.path.isfile(full):
            raise _error(path, key, f"config file '{name}' not found (looked for {full}).")
        resolved.append(full)
    return resolved


def _data_fingerprint(config: Config) -> str:
    """Hash of the dataset's atomic files, so re-prepared data never reuses stale cells."""
    check_dataset_files(config)
    folder, name = config["data_path"], config["dataset"]
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(f"{name}."))
    return file_fingerprint(*files)


def incompatibilities(config: Config) -> list[str]:
    """Combinations RecBole would only refuse after loading the data (or that fail later), each with its fix."""
    problems = []
    order = (config["eval_args"] or {}).get("order")
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and order != "TO":
        problems.append(
            f"{config['model']} is a sequential model, which RecBole trains only on time-ordered interactions "
            f"(eval_args order TO), but this row's split orders them {order} (RecBole would stop after loading the "
            "data: \"The ordering args for sequential recommendation has to be 'TO'\"). Run it under protocol loo "
            "or temporal (in another benchmark file), or give the row eval_args with order TO."
        )
    load_col, time_field = config["load_col"], config["TIME_FIELD"]
    if order == "TO" and isinstance(load_col, dict) and time_field not in (load_col.get("inter") or []):
        problems.append(
            f"the split orders interactions by time (eval_args order TO), but load_col does not load the time "
            f"field '{time_field}': add it to load_col's inter columns."
        )
    if config["MODEL_TYPE"] == ModelType.KNOWLEDGE:
        for suffix in ("kg", "link"):
            needed = os.path.join(config["data_path"], f"{config['dataset']}.{suffix}")
            if not os.path.isfile(needed):
                problems.append(
                    f"{config['model']} is a knowledge-aware model and needs {needed}: add the dataset's knowledge "
                    "graph files (.kg, .link), or drop the row."
                )
    return problems


def _resolve(bench: Benchmark, label: str, model: str, dataset: str, files: list[str], given: dict, cap: int | None,
             space: tuple[str, ...] = (), added: bool = False) -> tuple[Row, Config]:  # fmt: skip
    """The row's resolved settings, (capped) epochs and fingerprints; its Config for further checks.

    ``space``: the keys a search varies, left out of the search's own fingerprint.
    """
    config = Config(model, dataset, files, given, bench.cmd_overrides)
    one_pass = issubclass(get_trainer(config), TraditionalTrainer)
    settings, epochs, capped_from = dict(given), config["epochs"], None
    if one_pass:
        epochs = 1
    elif cap is not None and epochs > cap:
        settings["epochs"] = cap
        epochs, capped_from = cap, config["epochs"]
    folder = os.path.abspath(config["data_path"])  # the dataset's folder (RecBole's data_path): hashed once per board
    if folder not in bench.data_hashes:
        try:
            bench.data_hashes[folder] = _data_fingerprint(config)
        except ConfigError as e:
            raise _NoData(str(e)) from None
    # the row's identity is what the board writes (model, files, settings) and the data, not every resolved
    # key: a setting added to the package since (a new feature, off by default) re-keys no cell; a
    # resolved value that changed since makes the row stale instead (bench.record)
    written = {"model": model, "files": [load_yaml(f) for f in files], **settings, "epochs": epochs}
    base = {k: v for k, v in written.items() if k not in space}
    data = bench.data_hashes[folder]
    row = Row(
        label, model, dataset, files, dict(given), settings, cap, epochs, capped_from, one_pass,
        fingerprint(label, written, data), tuple(bench.seeds),
        str(config["valid_metric"]).lower(), bool(config["valid_metric_bigger"]), data_fingerprint=data, added=added,
        resolved={**settings_fingerprint(to_plain(config), also_ignore={"seed"}), **({"epochs": cap} if capped_from else {}),
                  **_foundation_settings(config)},
    )  # fmt: skip
    if bench.search is not None and label in bench.search.spaces:
        metric = search_metric(bench.search, config)
        base_fp = fingerprint(label, base, data)
        row = replace(row, study=study_fingerprint(bench.search, label, base_fp, metric), search_metric=metric,
                      maximize=direction(metric) == "maximize")  # fmt: skip
    return row, config


def _foundation_settings(config: Config) -> dict[str, Any]:
    """The settings a row's foundation resolves to now (``foundation.KEY``; none for a model without one),
    compared with those a cell's foundation was trained with: a foundation default that changed since
    (properties/model/HGNN.yaml) makes a GFM row stale, as its own defaults do."""
    if "foundation" not in model_inputs(config):  # run.inputs.FOUNDATION, which would import what the next line defers
        return {}
    from recbole_gfm.foundation.store import foundation_config  # ~3 s (the text encoder's imports): only boards with such rows pay

    settings = settings_fingerprint(to_plain(foundation_config(config)), also_ignore={"seed"})
    return {FOUNDATION_PREFIX + k: v for k, v in settings.items()}


def board_file(path: str) -> tuple[str, bool]:
    """(the benchmark file, whether it is a board of record) for ``--benchmark PATH`` (a file or a board's folder)."""
    if os.path.isdir(path):
        file = os.path.join(path, BOARD_FILE)
        if not os.path.isfile(file):
            raise BenchmarkError(
                f"{path}: a board of record's folder holds its benchmark file {BOARD_FILE}, and this one has none: "
                "give the folder of a board (benchmarks/<board>/) or a benchmark file."
            )
        return file, True
    if not os.path.isfile(path):
        raise BenchmarkError(f"{path}: no such benchmark file or board folder.")
    return path, os.path.basename(path) == BOARD_FILE


def read_rows_file(path: str) -> dict[str, Any]:
    """An added row's file: ``models:`` (label: settings) and optionally ``search: {spaces: ...}``."""
    spec = load_yaml(path)
    for key in spec:
        if key not in ROW_KEYS:
            raise _error(path, key, f"not a key of an added row's file: it holds {', '.join(sorted(ROW_KEYS))} "
                                    "(the board's own file decides the data, split, seeds and budget).")  # fmt: skip
    if not spec.get("models"):
        raise _error(path, "models", "missing: name the row(s) to add, e.g. models: {NeuMF: {learning_rate: 0.001}}.")
    search = spec.get("search") or {}
    if not isinstance(search, dict) or set(search) - ROW_SEARCH_KEYS:
        raise _error(path, "search", "an added row's search section holds only spaces: (the board's budget and seed apply).")
    return {"models": _mapping(spec["models"], path, "models"), "spaces": dict(search.get("spaces") or {})}


def _merge_rows(spec: dict[str, Any], files: list[str], path: str) -> set[str]:
    """Add the rows (and spaces) of ``files`` to ``spec``; return their labels. A label may be added once."""
    added: set[str] = set()
    for file in files:
        rows = read_rows_file(file)
        for label, settings in rows["models"].items():
            if label in (spec.get("models") or {}):
                raise _error(file, f"models.{label}", f"the board {path} has a row '{label}' already: give yours another label.")
            spec.setdefault("models", {})[label] = settings
            added.add(label)
        if rows["spaces"]:
            if not spec.get("search"):
                raise _error(file, "search", f"the board {path} is not tuned (no search section): remove the spaces.")
            for label in rows["spaces"]:
                if label not in rows["models"]:
                    raise _error(file, f"search.spaces.{label}", f"no row '{label}' under this file's models.")
            spec["search"] = {**spec["search"], "spaces": {**spec["search"]["spaces"], **rows["spaces"]}}
    return added


def load_benchmark(
    path: str, cmd_overrides: dict[str, str] | None = None, jobs: int | None = None, add_rows: str | None = None
) -> Benchmark:
    """Parse and check a benchmark file (or a board of record's folder) and resolve every row (no data is loaded).

    A board of record also gets the rows of its ``rows/`` folder, and ``add_rows`` (an added row's
    file, before ``--add-row`` copies it there). Every problem found (a config that does not
    resolve, a missing dataset, an incompatible combination, a bad search space) is reported at
    once, before anything runs.
    """
    file, record = board_file(path)
    spec = load_yaml(file)
    base = os.path.dirname(os.path.abspath(file))
    for key in spec:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            raise _error(file, key, "unknown key." + (f" Did you mean '{close[0]}'?" if close else f" Known: {', '.join(sorted(KEYS))}."))
    for key in ("models", "datasets"):
        if not spec.get(key):
            raise _error(file, key, "missing: a benchmark needs at least one entry.")
    added: set[str] = set()
    if record:
        if "output_dir" in spec:
            raise _error(file, "output_dir", "a board of record publishes into its own folder: remove output_dir.")
        spec["models"] = _mapping(spec["models"], file, "models")
        extra = sorted(glob.glob(os.path.join(base, ROWS_DIR, "*.yaml"))) + ([add_rows] if add_rows else [])
        added = _merge_rows(spec, extra, file)
    elif add_rows:
        raise BenchmarkError(f"{path}: --add-row adds a row to a board of record (a folder benchmarks/<board>/ with {BOARD_FILE}).")
    seeds = spec.get("seeds", [2020])
    if not isinstance(seeds, list) or not seeds or not all(is_whole(s) for s in seeds):
        raise _error(file, "seeds", f"expected a list of integers, got {seeds!r}.")
    jobs = whole_number(spec.get("jobs", 1) if jobs is None else jobs, f"{file}: 'jobs'", 1, "cells run at a time", error=BenchmarkError)
    max_epochs = spec.get("max_epochs")
    if max_epochs is not None:
        whole_number(max_epochs, f"{file}: 'max_epochs'", 1, error=BenchmarkError)
    shared = dict(spec.get("config") or {})
    if not isinstance(spec.get("config") or {}, dict):
        raise _error(file, "config", "expected a mapping of settings.")
    check_settings(shared, f"{file}, config", unknown="error")
    # one experiment: every row early-stops and picks its best epoch on the board's metric
    shared.setdefault("valid_metric", BOARD_VALID_METRIC)
    try:
        protocol = [protocol_file(spec["protocol"])] if spec.get("protocol") else []
    except ConfigError as e:
        raise _error(file, "protocol", str(e)) from None
    shared_files = protocol + _files(spec.get("config_files"), base, file, "config_files")
    datasets = _mapping(spec["datasets"], file, "datasets")
    models = _mapping(spec["models"], file, "models")
    for label, settings in models.items():
        try:
            get_model(settings.get("model", label))
        except ConfigError as e:
            raise _error(file, f"models.{label}", str(e)) from None
    reference = spec.get("reference")
    if reference is not None and reference not in models:
        raise _error(file, "reference", f"'{reference}' is not a label under models ({', '.join(models)}).")
    try:
        targets = parse_targets(spec.get("targets"), list(models), spec.get("columns"))
    except ValueError as e:
        raise _error(file, "targets", str(e)) from None

    name = spec.get("name") or (os.path.basename(base) if record else os.path.splitext(os.path.basename(file))[0])
    scratch = os.path.join("results", "benchmark", name)
    bench = Benchmark(
        name=name,
        path=file,
        output_dir=base if record else spec.get("output_dir") or scratch,
        scratch_dir=scratch if record else spec.get("output_dir") or scratch,
        rows=[],
        seeds=seeds,
        columns=spec.get("columns"),
        type_columns=spec.get("type_columns"),
        record=record,
        reference=reference,
        targets=targets,
        search=parse_search(spec.get("search"), file, list(models), seeds),
        cmd_overrides=dict(cmd_overrides or {}),
        jobs=jobs,
    )
    problems: list[str] = []
    for dataset, dataset_settings in datasets.items():
        dataset_files = _files(dataset_settings.pop("config_files", None), base, file, f"datasets.{dataset}.config_files")
        check_settings(dataset_settings, f"{file}, datasets.{dataset}", unknown="error")
        for label, model_settings in models.items():
            model_settings = dict(model_settings)
            model = model_settings.pop("model", label)
            row_cap = model_settings.pop("max_epochs", max_epochs)
            if row_cap is not None:
                whole_number(row_cap, f"{file}: 'models.{label}.max_epochs'", 1, error=BenchmarkError)
            model_files = _files(model_settings.pop("config_files", None), base, file, f"models.{label}.config_files")
            where = f"models.{label} x datasets.{dataset}"
            try:
                check_settings(model_settings, f"{file}, row '{label}'", model=model, unknown="error")
                if bench.search is not None and label in bench.search.spaces:
                    check_space(bench.search.raw[label], file, model=model, section=f"search.spaces.{label}")
                row, config = _row(bench, label, model, dataset, shared_files + dataset_files + model_files,
                                   {**shared, **dataset_settings, **model_settings}, row_cap, label in added)  # fmt: skip
            except _NoData as e:
                problems.append(str(_error(file, f"datasets.{dataset}", str(e))))
                continue
            except ConfigError as e:
                problems.append(str(e) if str(e).startswith(file) else str(_error(file, where, str(e))))
                continue
            problems += [str(_error(file, where, p)) for p in incompatibilities(config)]
            if str(config["valid_metric"]).lower() != str(shared["valid_metric"]).lower():
                problems.append(str(_error(file, where, (
                    f"valid_metric {config['valid_metric']} differs from the board's {shared['valid_metric']}: every row of a "
                    "board early-stops and picks its best epoch on one metric. Set it once, under config."
                ))))  # fmt: skip
            if bench.search is not None and label in bench.search.spaces:
                problems += search_problems(bench.search, label, config, file)
            bench.rows.append(row)
    problems = list(dict.fromkeys(problems))  # a missing dataset or a bad space: once, not once per row
    if len(problems) == 1:
        raise BenchmarkError(problems[0])
    if problems:
        raise BenchmarkError(f"{file}: {len(problems)} problems; nothing was run:\n" + "\n".join(problems))
    return bench


def _item_fields(config: Config) -> list[str]:
    """The fields of the dataset's ``.item`` file (none when it has none); RecBole's ``data_path`` ends in the dataset's folder."""
    path = os.path.join(config["data_path"], f"{config['dataset']}.item")
    if not os.path.isfile(path):
        return []
    with open(path, encoding=config["encoding"] or "utf-8", errors="replace") as f:
        return [name.split(":")[0] for name in f.readline().rstrip("\n").split(config["field_separator"])]


def _row(bench: Benchmark, label: str, model: str, dataset: str, files: list[str], given: dict, cap: int | None,
         added: bool) -> tuple[Row, Config]:  # fmt: skip
    """:func:`_resolve`, with the item type field loaded for every row: one experiment, one set of files.

    A row whose settings load no ``.item`` (a baseline on a dataset without a properties file) gets
    the item id and type fields added, so that it is scored per type like the others.
    """
    space = tuple(bench.search.spaces.get(label, {})) if bench.search else ()
    row, config = _resolve(bench, label, model, dataset, files, given, cap, space, added)
    load_col, field = config["load_col"], config["item_type_field"]
    if isinstance(load_col, dict) and field and field in _item_fields(config) and load_col.get("item") != "*":
        loaded = list(load_col.get("item") or [])
        if field not in loaded:
            item = list(dict.fromkeys([config["ITEM_ID_FIELD"], *loaded, field]))
            row, config = _resolve(bench, label, model, dataset, files, {**given, "load_col": {**load_col, "item": item}}, cap,
                                   space, added)  # fmt: skip
    return row, config


def tuned_row(bench: Benchmark, row: Row, params: dict[str, Any]) -> Row:
    """``row`` with the search's ``params`` over its given settings, resolved again (capped, fingerprinted)."""
    tuned, _ = _row(bench, row.label, row.model, row.dataset, row.config_files, {**row.given, **params}, row.cap, row.added)
    return replace(tuned, study=row.study, search_metric=row.search_metric, maximize=row.maximize)
