"""Probe: which foundation helps GFM most, read on VALIDATION (the choice of the default).

    .venv/bin/python experiments/foundation_choice.py --dataset ml-100k-typed --protocol temporal [--seed 2020] [--only NAME ...]

Runs GFM with each candidate foundation through the public pipeline (``quick_start.run``) and
prints validation HR@10 / NDCG@10 (what the default is chosen on) beside the test figures (read
only once the choice is made). Not maintained: see README.md in this folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

CANDIDATES = {
    "none": {"use_foundation": False},
    "hgnn-papers": {"foundation": {}},
    "hgnn-infonce": {"foundation": {"link_loss": "infonce"}},
    "hgnn-infonce-mean": {"foundation": {"link_loss": "infonce", "aggregation": "mean"}},
    "hgnn-infonce-attention": {"foundation": {"link_loss": "infonce", "aggregation": "attention"}},
    "propagation-1": {"foundation": {"model": "Propagation", "propagation_hops": 1}},
    "propagation-2": {"foundation": {"model": "Propagation", "propagation_hops": 2}},
    "propagation-2-cold.2": {"foundation": {"model": "Propagation", "propagation_hops": 2}, "cold_item_prob": 0.2},
    "hgnn-infonce-cold.2": {"foundation": {"link_loss": "infonce"}, "cold_item_prob": 0.2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--protocol", default="temporal")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a GFM setting for every candidate (YAML)")
    args = parser.parse_args()
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import yaml

    import recbole_gfm  # noqa: F401
    from recbole_gfm.data.protocol import protocol_file
    from recbole_gfm.quick_start import run

    shared = {"seed": args.seed, "state": "WARNING", "show_progress": False, "results_dir": "", "eval_batch_size": 2809500}
    for item in args.set:
        key, value = item.split("=", 1)
        shared[key] = yaml.safe_load(value)
    for name, settings in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        merged = {**shared, **settings}
        if "foundation" in settings and "foundation" in shared:
            merged["foundation"] = {**shared["foundation"], **settings["foundation"]}
        start = time.perf_counter()
        record = run("GFM", args.dataset, [protocol_file(args.protocol)], config_dict=merged, saved=False)
        valid, test = record["best_valid_result"], record["test_result"]
        row = {
            "candidate": name,
            "valid hit/ndcg": f"{valid['hit@10']:.4f} / {valid['ndcg@10']:.4f}",
            "test hit/ndcg": f"{test['hit@10']:.4f} / {test['ndcg@10']:.4f}",
            "test returning hit/ndcg": f"{test.get('hit@10[users=returning]', float('nan')):.4f} / {test.get('ndcg@10[users=returning]', float('nan')):.4f}",
            "best epoch": record["best_epoch"],
            "foundation s": record["foundation_train_time_s"],
            "train s": record["train_time_s"],
            "wall s": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(row), flush=True)
        print(json.dumps(row), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
