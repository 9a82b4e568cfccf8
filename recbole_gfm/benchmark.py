"""Leaderboards: a grid of models x datasets x seeds from one YAML file, resumable cell by cell.

Every cell is one :func:`recbole_gfm.quick_start.run` in its own Python process (a crash or a memory
blow-up loses one cell, and every cell starts from a clean RNG state). A finished cell is stored
atomically as ``<output_dir>/cells/<model>__<dataset>__seed<seed>__<fingerprint>.json``; the
fingerprint covers the fully resolved config, the dataset's files, this package's code and the
package versions, so a re-run skips exactly the cells whose inputs have not changed, and a killed
run loses nothing finished.

Benchmark file (paths relative to the file; a model is one line under ``models``)::

    protocol: temporal                 # properties/protocol/<name>.yaml (optional)
    config_files: [extra.yaml]         # shared properties files (optional)
    config: {eval_batch_size: 40960}   # shared settings (optional)
    datasets: {ml-100k-typed: {}}      # name: settings for that dataset
    models:                            # label: settings for that model (model: Name if label differs)
      Pop: {}
      LightGCN: {learning_rate: 0.002, max_epochs: 10}   # a row's own cap overrides the file's
    seeds: [2020, 2021]
    max_epochs: 5                      # optional cap; capped cells are marked in the table
    columns: [hit@10, ndcg@10]         # leaderboard metrics (default: every overall metric)
    type_columns: [hit@10]             # metrics shown per item type, warm and cold (default: first column)
    output_dir: results/benchmark/quick  # default: results/benchmark/<file name>
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from recbole.trainer import TraditionalTrainer
from recbole.utils import set_color

from recbole_gfm.artifacts import (
    atomic_write, code_fingerprint, file_fingerprint, fingerprint, package_versions, settings_fingerprint, write_json,
)  # fmt: skip
from recbole_gfm.compat import to_plain
from recbole_gfm.config import Config, ConfigError, get_model, load_yaml
from recbole_gfm.protocol import protocol_file
from recbole_gfm.quick_start import check_dataset_files, get_trainer, run

KEYS = {
    "name", "description", "protocol", "config_files", "config", "datasets", "models", "seeds",
    "max_epochs", "columns", "type_columns", "output_dir",
}  # fmt: skip


class BenchmarkError(ConfigError):
    """A problem in a benchmark file; the message names the file and the key."""


@dataclass
class Cell:
    """One model x dataset x seed run, fully resolved."""

    label: str
    model: str
    dataset: str
    seed: int
    config_files: list[str]
    config_dict: dict[str, Any]
    epochs: int
    capped_from: int | None
    row_fingerprint: str  # the resolved config without the seed: the same for every seed of a row

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.row_fingerprint, self.seed)

    @property
    def name(self) -> str:
        return f"{self.label}__{self.dataset}__seed{self.seed}__{self.fingerprint}"


@dataclass
class Benchmark:
    """A parsed benchmark file: its cells in run order and how to present them."""

    name: str
    path: str
    output_dir: str
    cells: list[Cell]
    columns: list[str] | None
    type_columns: list[str] | None
    cmd_overrides: dict[str, str] = field(default_factory=dict)


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


def _resolve(
    label: str, model: str, dataset: str, files: list[str], settings: dict, max_epochs: int | None,
    cmd_overrides: dict[str, str], data_hashes: dict[str, str], code: tuple,
) -> tuple[list[str], dict, int, int | None, str]:
    """The cell's config files and settings, its (capped) epochs and its row fingerprint."""
    config = Config(model, dataset, files, settings, cmd_overrides)
    epochs, capped_from = config["epochs"], None
    if issubclass(get_trainer(config), TraditionalTrainer):  # one pass, whatever `epochs` says (Pop, ItemKNN, LLMKNN)
        epochs = 1
    elif max_epochs is not None and epochs > max_epochs:
        settings = {**settings, "epochs": max_epochs}
        epochs, capped_from = max_epochs, config["epochs"]
    if dataset not in data_hashes:
        data_hashes[dataset] = _data_fingerprint(config)
    resolved = settings_fingerprint(to_plain(config), also_ignore={"seed"})  # the seed is in the cell's own part
    resolved["epochs"] = epochs
    return files, settings, epochs, capped_from, fingerprint(label, resolved, data_hashes[dataset], code)


def load_benchmark(path: str, cmd_overrides: dict[str, str] | None = None) -> Benchmark:
    """Parse and check a benchmark file and resolve every cell's config (no data is loaded)."""
    spec = load_yaml(path)
    base = os.path.dirname(os.path.abspath(path))
    for key in spec:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            raise _error(path, key, "unknown key." + (f" Did you mean '{close[0]}'?" if close else f" Known: {', '.join(sorted(KEYS))}."))
    for key in ("models", "datasets"):
        if not spec.get(key):
            raise _error(path, key, "missing: a benchmark needs at least one entry.")
    seeds = spec.get("seeds", [2020])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise _error(path, "seeds", f"expected a list of integers, got {seeds!r}.")
    max_epochs = spec.get("max_epochs")
    if max_epochs is not None and (not isinstance(max_epochs, int) or max_epochs < 1):
        raise _error(path, "max_epochs", f"expected a positive integer, got {max_epochs!r}.")
    shared = spec.get("config") or {}
    if not isinstance(shared, dict):
        raise _error(path, "config", "expected a mapping of settings.")
    try:
        protocol = [protocol_file(spec["protocol"])] if spec.get("protocol") else []
    except ConfigError as e:
        raise _error(path, "protocol", str(e)) from None
    shared_files = protocol + _files(spec.get("config_files"), base, path, "config_files")
    datasets = _mapping(spec["datasets"], path, "datasets")
    models = _mapping(spec["models"], path, "models")
    for label, settings in models.items():
        try:
            get_model(settings.get("model", label))
        except ConfigError as e:
            raise _error(path, f"models.{label}", str(e)) from None

    name = spec.get("name") or os.path.splitext(os.path.basename(path))[0]
    overrides = dict(cmd_overrides or {})
    cells, data_hashes = [], {}
    # the plugin's code and the package versions: a cell made by other code is run again
    code = (code_fingerprint("."), package_versions())
    for dataset, dataset_settings in datasets.items():
        dataset_files = _files(dataset_settings.pop("config_files", None), base, path, f"datasets.{dataset}.config_files")
        for label, model_settings in models.items():
            model_settings = dict(model_settings)
            model = model_settings.pop("model", label)
            row_cap = model_settings.pop("max_epochs", max_epochs)
            if row_cap is not None and (not isinstance(row_cap, int) or row_cap < 1):
                raise _error(path, f"models.{label}.max_epochs", f"expected a positive integer, got {row_cap!r}.")
            model_files = _files(model_settings.pop("config_files", None), base, path, f"models.{label}.config_files")
            files = shared_files + dataset_files + model_files
            settings = {**shared, **dataset_settings, **model_settings}
            try:
                files, settings, epochs, capped_from, row_fp = _resolve(
                    label, model, dataset, files, settings, row_cap, overrides, data_hashes, code
                )
            except ConfigError as e:
                raise _error(path, f"models.{label} x datasets.{dataset}", str(e)) from None
            for seed in seeds:
                cells.append(Cell(label, model, dataset, seed, files, {**settings, "seed": seed}, epochs, capped_from, row_fp))
    return Benchmark(
        name=name,
        path=path,
        output_dir=spec.get("output_dir") or os.path.join("results", "benchmark", name),
        cells=cells,
        columns=spec.get("columns"),
        type_columns=spec.get("type_columns"),
        cmd_overrides=overrides,
    )


def cell_path(bench: Benchmark, cell: Cell) -> str:
    return os.path.join(bench.output_dir, "cells", f"{cell.name}.json")


def run_cell(bench: Benchmark, cell: Cell) -> tuple[int, str]:
    """Run one cell in a child process; returns its exit code and log file."""
    log_path = os.path.join(bench.output_dir, "logs", f"{cell.name}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    job = {
        "model": cell.model,
        "dataset": cell.dataset,
        "config_files": cell.config_files,
        "config_dict": {
            **cell.config_dict,
            "results_dir": "",
            "checkpoint_dir": os.path.join(bench.output_dir, "checkpoints"),
        },
        "cmd_overrides": bench.cmd_overrides,
        "meta": {
            "label": cell.label,
            "fingerprint": cell.fingerprint,
            "row_fingerprint": cell.row_fingerprint,
            "epochs": cell.epochs,
            "epochs_capped_from": cell.capped_from,
        },
        "out": cell_path(bench, cell),
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recbole_gfm.benchmark", "--cell", json.dumps(job)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            return proc.wait(), log_path
        except BaseException:  # Ctrl-C or SIGTERM of the grid: do not leave the cell running
            proc.kill()
            proc.wait()
            raise


def _cell_main(job: dict[str, Any]) -> None:
    """Child process: run the cell and store its record atomically."""
    start = time.perf_counter()
    record = run(job["model"], job["dataset"], job["config_files"], job["config_dict"], job["cmd_overrides"])
    record.update(job["meta"], wall_time_s=round(time.perf_counter() - start, 3))
    write_json(job["out"], to_plain(record))


def run_benchmark(path: str, cmd_overrides: dict[str, str] | None = None) -> int:
    """Run (or resume) every cell, then write the leaderboard. Returns the number of failed cells."""
    bench = load_benchmark(path, cmd_overrides)
    print(set_color(f"benchmark {bench.name}: {len(bench.cells)} cells -> {bench.output_dir}", "green"), flush=True)
    start = time.perf_counter()
    # SIGTERM becomes SystemExit, so run_cell stops the running cell instead of orphaning it
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        failed = sum(not _run_or_skip(bench, index, cell) for index, cell in enumerate(bench.cells, 1))
    finally:
        signal.signal(signal.SIGTERM, previous)
    paths = write_leaderboard(bench)
    done = len(bench.cells) - failed
    print(set_color(f"{done}/{len(bench.cells)} cells done in {time.perf_counter() - start:.1f} s", "green"))
    with open(paths["md"]) as f:
        print(f.read())
    for kind, file in paths.items():
        print(f"{kind}: {file}")
    return failed


def _run_or_skip(bench: Benchmark, index: int, cell: Cell) -> bool:
    """Run one cell unless it is stored already, printing one progress line; False if it failed."""
    head = f"[{index}/{len(bench.cells)}] {cell.label} on {cell.dataset}, seed {cell.seed}"
    if cell.capped_from:
        head += f" (epochs capped {cell.capped_from} -> {cell.epochs})"
    if os.path.isfile(cell_path(bench, cell)):
        print(f"{head}: " + set_color("done before, skipped", "blue"), flush=True)
        return True
    print(f"{head} ...", flush=True)
    start = time.perf_counter()
    code, log_path = run_cell(bench, cell)
    seconds = time.perf_counter() - start
    if code != 0 or not os.path.isfile(cell_path(bench, cell)):
        print(f"{head}: " + set_color(f"FAILED after {seconds:.1f} s (exit {code}); log: {log_path}", "red"), flush=True)
        return False
    with open(cell_path(bench, cell)) as f:
        record = json.load(f)
    name = (bench.columns or list(record["test_result"]) or ["no metric"])[0]
    value = record["test_result"].get(name, math.nan)
    print(
        f"{head}: {seconds:.1f} s (train {record['train_time_s']:.1f} s, eval {record['eval_time_s']:.1f} s), "
        f"test {name} {value:.4f}",
        flush=True,
    )
    return True


# ---------------------------------------------------------------------------------------------
# The leaderboard


def finished_records(bench: Benchmark) -> dict[tuple[str, str], list[dict]]:
    """Stored records of the benchmark's current cells by (dataset, label), in file order."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for cell in bench.cells:
        rows.setdefault((cell.dataset, cell.label), [])
        if os.path.isfile(cell_path(bench, cell)):
            with open(cell_path(bench, cell)) as f:
                rows[(cell.dataset, cell.label)].append(json.load(f))
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))  # sample std


def summarise(records: list[dict]) -> dict[str, tuple[float, float]]:
    """Mean and sample std over seeds of every test metric and of the train / eval times."""
    keys = dict.fromkeys(k for r in records for k in r["test_result"])
    summary = {k: _mean_std([r["test_result"][k] for r in records if k in r["test_result"]]) for k in keys}
    for key in ("train_time_s", "eval_time_s", "train_time_to_best_s"):
        values = [r[key] for r in records if r.get(key) is not None]  # records before to-best existed lack it
        if values:
            summary[key] = _mean_std(values)
    return summary


def _fmt(pair: tuple[float, float] | None, n: int) -> str:
    if pair is None:
        return "-"
    return f"{pair[0]:.4f}" if n < 2 else f"{pair[0]:.4f} ± {pair[1]:.4f}"


def _types_of(summary: dict, metric: str) -> list[str]:
    """Type groups present for ``metric``: ``type=Kids``, ``type=Kids,warm``, ``type=Kids,cold`` ..."""
    prefix = f"{metric}["
    groups = [k[len(prefix) : -1] for k in summary if k.startswith(prefix)]
    return sorted(groups, key=lambda g: (g.split(",")[0], ["", "warm", "cold"].index((g.split(",") + [""])[1])))


def write_leaderboard(bench: Benchmark) -> dict[str, str]:
    """Write ``leaderboard.md``, ``leaderboard.csv`` and ``leaderboard.png``; return their paths."""
    rows = finished_records(bench)
    summaries = {key: summarise(recs) for key, recs in rows.items() if recs}
    first = next((recs[0] for recs in rows.values() if recs), None)
    columns = bench.columns or ([k for k in first["test_result"] if "[" not in k] if first else [])
    type_columns = bench.type_columns or columns[:1]
    cells = {(c.dataset, c.label): c for c in bench.cells}
    seeds_per_row = {key: sum(1 for c in bench.cells if (c.dataset, c.label) == key) for key in rows}

    md = io.StringIO()
    md.write(
        f"# Leaderboard: {bench.name}\n\nTest metrics, mean ± sample std over seeds ({bench.path}). "
        "Test cases: users ranked (sequential models need a history before the test period). Best epoch: "
        "the validated epoch whose checkpoint is tested (0-based, one per seed); to best s: training time "
        "until that epoch's validation, a foundation's whole training included.\n\n"
    )
    header = ["dataset", "model", "seeds", "epochs", "best epoch", "test cases", *columns, "train s", "to best s", "eval s", "config"]
    md.write("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
    for key, recs in rows.items():
        cell, n = cells[key], len(recs)
        summary = summaries.get(key, {})
        epochs = f"{cell.epochs} (capped from {cell.capped_from})" if cell.capped_from else str(cell.epochs)
        seeds = f"{n}/{seeds_per_row[key]}" + ("" if n else " (failed or not run)")
        values = [_fmt(summary.get(c), n) for c in columns]
        times = [f"{summary[t][0]:.1f}" if t in summary else "-" for t in ("train_time_s", "train_time_to_best_s", "eval_time_s")]
        best = "/".join(str(r["best_epoch"]) for r in recs if r.get("best_epoch") is not None) or "-"
        cases = str(recs[0].get("test_cases_by_type", {}).get("all", "-")) if recs else "-"
        md.write("| " + " | ".join([key[0], key[1], seeds, epochs, best, cases, *values, *times, cell.row_fingerprint]) + " |\n")
    for metric in type_columns:
        groups = _types_of(dict.fromkeys(k for s in summaries.values() for k in s), metric)
        if not groups:
            continue
        md.write(f"\n## {metric} per item type (warm / cold: with / without train interactions of the type)\n\n")
        md.write("| dataset | model | " + " | ".join(g.removeprefix("type=") for g in groups) + " |\n")
        md.write("|" + "---|" * (len(groups) + 2) + "\n")
        for key, summary in summaries.items():
            values = [_fmt(summary.get(f"{metric}[{g}]"), len(rows[key])) for g in groups]
            md.write(f"| {key[0]} | {key[1]} | " + " | ".join(values) + " |\n")
    if any(c.capped_from for c in bench.cells):
        md.write("\nEpochs capped: this benchmark limits training (max_epochs); capped rows are not tuned results.\n")
    if first:
        versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items())
        md.write(f"\nconfig: fingerprint of the resolved config and dataset files. Versions: {versions}.\n")

    os.makedirs(bench.output_dir, exist_ok=True)
    paths = {k: os.path.join(bench.output_dir, f"leaderboard.{k}") for k in ("md", "csv", "png")}
    with atomic_write(paths["md"], "w") as f:
        f.write(md.getvalue())
    _write_csv(paths["csv"], rows, summaries, cells)
    _plot(paths["png"], summaries, columns[0] if columns else None, type_columns[0] if type_columns else None)
    return paths


def _write_csv(path: str, rows: dict, summaries: dict, cells: dict) -> None:
    keys = list(dict.fromkeys(k for s in summaries.values() for k in s))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["dataset", "model", "seeds", "epochs", "epochs_capped_from", "config_fingerprint",
                     *[f"{k}_{s}" for k in keys for s in ("mean", "std")], "versions"])  # fmt: skip
    for key, recs in rows.items():
        cell, summary = cells[key], summaries.get(key, {})
        values = [f"{v:.6g}" for k in keys for v in summary.get(k, (math.nan, math.nan))]
        versions = json.dumps(recs[0]["versions"], sort_keys=True) if recs else ""
        writer.writerow([*key, len(recs), cell.epochs, cell.capped_from or "", cell.row_fingerprint, *values, versions])
    with atomic_write(path, "w") as f:
        f.write(buffer.getvalue())


def _plot(path: str, summaries: dict, metric: str | None, type_metric: str | None) -> None:
    """Bars of ``metric`` overall and ``type_metric`` per type, one panel per dataset, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(d for d, _ in summaries)) or ["(no results)"]
    fig, axes = plt.subplots(len(datasets), 1, figsize=(10, 4 * len(datasets)), squeeze=False)
    for ax, dataset in zip(axes[:, 0], datasets):
        models = [(m, s) for (d, m), s in summaries.items() if d == dataset]
        groups = [g for g in _types_of(dict.fromkeys(k for _, s in models for k in s), type_metric or "") if "," not in g]
        keys = ([metric] if metric else []) + [f"{type_metric}[{g}]" for g in groups]
        width = 0.8 / max(len(models), 1)
        for i, (model, summary) in enumerate(models):
            means = [summary.get(k, (0.0, 0.0))[0] for k in keys]
            stds = [summary.get(k, (0.0, 0.0))[1] for k in keys]
            ax.bar([j + i * width for j in range(len(keys))], means, width, yerr=stds, label=model, capsize=2)
        ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(keys))])
        ax.set_xticklabels([f"{metric} overall" if k == metric else k.split("[")[1][:-1].removeprefix("type=") for k in keys], rotation=20)
        ax.set_title(f"{dataset}: test {metric} overall and {type_metric} per item type")
        if models:
            ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--cell":
        import recbole_gfm  # noqa: F401  (compatibility fixes)

        _cell_main(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m recbole_gfm.benchmark --cell JSON  (run benchmarks with run_recbole_gfm.py --benchmark FILE)")
