"""Command line of ``run_recbole_gfm.py``: ``--model``, ``--dataset``, ``--config_files`` and
any ``--key=value`` override, the way RecBole's ``run_recbole.py`` reads them; ``--protocol NAME``
for a named split protocol; ``--benchmark FILE`` for a whole leaderboard."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from recbole_gfm.config import ConfigError


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, dict[str, str]]:
    parser = argparse.ArgumentParser(
        prog="run_recbole_gfm.py",
        description="Train and evaluate a recbole-gfm or RecBole model. Any other --key=value "
        "overrides a config key (highest priority).",
    )
    parser.add_argument("--model", "-m", default=None, help="model name, e.g. GFM, HGNN, LightGCN, SASRec")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name, e.g. ml-100k")
    parser.add_argument(
        "--config_files", default=None,
        help="YAML properties files, separated by spaces; quote a path that holds spaces (\"'my dir/a.yaml' b.yaml\")",
    )
    parser.add_argument("--nosave", action="store_true", help="do not save the best checkpoint")
    parser.add_argument(
        "--protocol", default=None, help="named split protocol: temporal, rs811 or loo (properties/protocol/NAME.yaml)"
    )
    parser.add_argument(
        "--prepare_foundation", default=None, metavar="CHECKPOINT",
        help="make again the foundation artifact a GFM checkpoint reads (its run's split and settings), then stop",
    )
    parser.add_argument(
        "--benchmark", default=None, help="run (or resume) the leaderboard of a benchmark file, e.g. properties/benchmark/quick.yaml"
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="with --benchmark: cells run at a time, sharing the cores (default: the file's jobs, or 1)"
    )
    parser.add_argument(
        "--time-budget", default=None, metavar="DURATION",
        help="with --benchmark: start no cell that cannot finish within it, stop the running ones at its end "
        "(they resume from their last validation next time): 90s, 150m, 2h, 1h30m",
    )  # fmt: skip
    parser.add_argument(
        "--add-row", default=None, metavar="FILE",
        help="with --benchmark BOARD_FOLDER: add the rows of FILE (models: and search: {spaces:}) to a board of record, "
        "run only them on the board's split, and test them against the committed rows",
    )  # fmt: skip
    parser.add_argument("--rerun-stale", action="store_true", help="with --benchmark: re-run the rows whose code changed since they ran")
    parser.add_argument("--rows", default=None, metavar="LABELS", help="with --benchmark: run only these rows (comma-separated labels)")
    args, rest = parser.parse_known_args(argv)
    overrides: dict[str, str] = {}
    for arg in rest:
        if not arg.startswith("--") or "=" not in arg:
            parser.error(f"unrecognised argument '{arg}': overrides are written --key=value")
        key, value = arg[2:].split("=", 1)
        overrides[key] = value
    return args, overrides


def config_file_list(value: str | None) -> list[str]:
    """The files of ``--config_files``: one existing file as it is (spaces and all), else split as a shell would."""
    if not value:
        return []
    if os.path.isfile(value):
        return [value]
    try:
        return shlex.split(value)
    except ValueError as e:  # an unclosed quote
        raise ConfigError(f"--config_files {value!r}: {e}; quote each path that holds spaces.") from None


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    from recbole_gfm.data.protocol import protocol_file
    from recbole_gfm.quick_start import run

    try:
        config_files = config_file_list(args.config_files)
        if args.benchmark:
            if args.model or args.dataset or config_files or args.protocol:
                raise ConfigError("--benchmark takes its models, datasets and config files from the benchmark file.")
            from recbole_gfm.bench.record import parse_duration
            from recbole_gfm.bench.runner import run_benchmark

            try:
                budget = parse_duration(args.time_budget) if args.time_budget else None
            except ValueError as e:
                raise ConfigError(f"--time-budget: {e}") from None
            rows = [label.strip() for label in args.rows.split(",")] if args.rows else None
            failed = run_benchmark(args.benchmark, overrides, args.jobs, time_budget=budget, add_row=args.add_row,
                                   rerun_stale=args.rerun_stale, only=rows)  # fmt: skip
            return 1 if failed else 0
        board_only = [f"--{k.replace('_', '-')}" for k in ("jobs", "time_budget", "add_row", "rows") if getattr(args, k) is not None]
        if board_only or args.rerun_stale:
            raise ConfigError(f"{', '.join(board_only or ['--rerun-stale'])}: for --benchmark; a single run uses nproc for processes.")
        if args.prepare_foundation:
            from recbole_gfm.inference import rebuild_foundation

            print(f"foundation: {rebuild_foundation(args.prepare_foundation)}")
            return 0
        if args.protocol:
            config_files.insert(0, protocol_file(args.protocol))
        record = run(args.model, args.dataset, config_files or None, cmd_overrides=overrides, saved=not args.nosave)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        what = "board: its finished cells and trials are kept, a running cell keeps its last validated epoch, and the " \
            "same command goes on from there" if args.benchmark else "run: the same command goes on from its last validated epoch"
        print(f"stopped (Ctrl-C). The {what}.", file=sys.stderr)
        return 130
    if record is None:  # a machine of a multi-machine run without rank 0: that machine prints the result
        print("done: the result is rank 0's (offset 0), on the machine that runs it")
        return 0
    print(json.dumps({"best_valid_result": record["best_valid_result"], "test_result": record["test_result"]}, indent=2))
    if record.get("result_file"):
        print(f"result file: {record['result_file']}")
    return 0
