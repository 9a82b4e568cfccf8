"""Benchmark: co-interaction graph construction (time, peak memory) and text-encoding throughput.

    .venv/bin/python benchmarks/graph_and_text.py [--data-path dataset] [--shared-data ../shared/data]

Every case runs in its own subprocess (clean peak memory, thread settings). Graph cases:

* ``ml-1m-typed``: RecBole pipeline (MultiTypeDataset, RS 8:1:1 split), graph of the train split;
  needs ``python -m recbole_gfm.data.prepare ml-1m-typed`` first (skipped otherwise).
* ``amazon-food-kitchen``: the same pipeline on the shared two-type Amazon dataset.
* ``synthetic``: 1M interactions over a 100k-item catalogue, 50k users, two types, Zipf(1.0) item
  popularity, uniform times over two years (seeded), straight into the array-level builder.

Each graph case runs without a window and with the papers' 90-day window, at graph_topk 20.
Text: MiniLM (bundled) on 2,000 seeded Amazon titles, no cache, 1 and 2 torch threads.
Prints Markdown (machine, versions, tables).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

NINETY_DAYS = 90 * 24 * 3600.0
GRAPH_CASES = ["ml-1m-typed", "amazon-food-kitchen", "synthetic"]


def _measure_graph(build) -> dict:
    """Time and trace one graph build; ``build()`` returns a CoInteractionGraph."""
    tracemalloc.start()
    start = time.perf_counter()
    graph = build()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seconds": round(seconds, 2),
        "traced_peak_mb": round(peak / 2**20, 1),
        "edges": int(graph.edge_index.shape[1]),
        "relations": len(graph.relations),
        "items": graph.num_items - 1,
    }


def graph_case(name: str, data_path: str, shared_data: str) -> dict:
    """Build the graph for one dataset, without and with a 90-day window."""
    import recbole_gfm  # noqa: F401  (compat fixes)
    from recbole_gfm.data.graph import build_cointeraction_graph, cointeraction_graph

    result: dict = {"case": name}
    if name == "synthetic":
        rng = np.random.default_rng(0)
        num_items, num_users, n = 100_000, 50_000, 1_000_000
        popularity = 1.0 / np.arange(1, num_items) ** 1.0
        items = 1 + rng.choice(num_items - 1, size=n, p=popularity / popularity.sum())
        users = rng.integers(0, num_users, n)
        times = rng.uniform(0, 2 * 365 * 86400.0, n)
        item_type = np.r_[-1, (rng.random(num_items - 1) < 0.2).astype(np.int64)]
        result["interactions"] = n

        def build(window):
            return cointeraction_graph(users, items, item_type, ["minor", "major"], times, window, 1, 20)

    else:
        from recbole.utils import init_seed

        from recbole_gfm.config import Config
        from recbole_gfm.data.dataset import MultiTypeDataset

        path = shared_data if name == "amazon-food-kitchen" else data_path
        if not os.path.isfile(os.path.join(path, name, f"{name}.inter")):
            return {"case": name, "skipped": f"no {path}/{name}; python -m recbole_gfm.data.prepare {name}"}
        start = time.perf_counter()
        config = Config(
            "BPR", name, config_dict={"data_path": path, "state": "ERROR", "graph_topk": 20, "graph_min_cocount": 1}
        )
        init_seed(config["seed"], config["reproducibility"])  # the RS split shuffles
        train = MultiTypeDataset(config).build()[0]
        result["load_and_split_s"] = round(time.perf_counter() - start, 1)
        result["interactions"] = len(train.inter_feat)

        def build(window):
            config["graph_time_window"] = window
            return build_cointeraction_graph(config, train)

    result["no_window"] = _measure_graph(lambda: build(None))
    result["window_90d"] = _measure_graph(lambda: build(NINETY_DAYS))
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def text_case(threads: int, shared_data: str, sample: int = 2000) -> dict:
    """Encode ``sample`` seeded non-empty Amazon titles with the bundled MiniLM on ``threads`` threads."""
    import pandas as pd
    import torch

    torch.set_num_threads(threads)
    from recbole_gfm.data.text import load_text_encoder, encode_texts

    item = pd.read_csv(os.path.join(shared_data, "amazon-food-kitchen", "amazon-food-kitchen.item"), sep="\t")
    titles = item["title:token_seq"].dropna().astype(str)
    titles = titles[titles.str.strip() != ""].sample(sample, random_state=0).tolist()
    start = time.perf_counter()
    load_text_encoder("all-MiniLM-L6-v2", "cpu")
    load = time.perf_counter() - start
    start = time.perf_counter()
    vectors = encode_texts(titles, batch_size=128, cache_dir=None, show_progress=False)
    seconds = time.perf_counter() - start
    return {
        "threads": threads,
        "texts": len(titles),
        "distinct": len(set(titles)),
        "dim": int(vectors.shape[1]),
        "model_load_s": round(load, 1),
        "seconds": round(seconds, 1),
        "texts_per_s": round(len(titles) / seconds, 1),
    }


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
    )
    mem = next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": round(int(mem) / 2**20, 1), "os": platform.platform()}


def _run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode:
        return {"case": " ".join(args), "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", default="dataset")
    parser.add_argument("--shared-data", default="../shared/data")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, value = args.child
        result = graph_case(value, args.data_path, args.shared_data) if kind == "graph" else text_case(
            int(value), args.shared_data
        )
        print(json.dumps(result))
        return

    from recbole_gfm.artifacts import package_versions

    common = ["--data-path", args.data_path, "--shared-data", args.shared_data]
    print(f"machine: {json.dumps(machine())}")
    print(f"versions: {json.dumps(package_versions())}\n")
    print("| graph case | train interactions | items | window | edges (directed) | relations | build s | traced peak MB | process max RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in GRAPH_CASES:
        r = _run_child(["--child", "graph", name, *common])
        if "no_window" not in r:
            print(f"| {name} | {r.get('skipped') or r.get('error')} |")
            continue
        for window in ("no_window", "window_90d"):
            g = r[window]
            print(
                f"| {name} | {r['interactions']:,} | {g['items']:,} | {window} | {g['edges']:,} | {g['relations']} "
                f"| {g['seconds']} | {g['traced_peak_mb']} | {r['max_rss_mb']} |"
            )
        if "load_and_split_s" in r:
            print(f"| {name}: RecBole load + split (not in build s) | | | | | | {r['load_and_split_s']} | | |")
    print("\n| text encoding | texts | distinct | dim | model load s | encode s | texts/s |")
    print("|---|---|---|---|---|---|---|")
    for threads in (1, 2):
        t = _run_child(["--child", "text", str(threads), *common])
        if "error" in t:
            print(f"| {threads} thread(s) | {t['error']} |")
            continue
        print(
            f"| MiniLM, {threads} thread(s) | {t['texts']} | {t['distinct']} | {t['dim']} | {t['model_load_s']} "
            f"| {t['seconds']} | {t['texts_per_s']} |"
        )


if __name__ == "__main__":
    main()
