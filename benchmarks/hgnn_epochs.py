"""Benchmark: HGNN training epoch time and peak memory, with and without the balanced sampler.

    .venv/bin/python benchmarks/hgnn_epochs.py [--epochs 2] [--threads 2]

One subprocess per (dataset, sampler) case, so peak memory (ru_maxrss) is the case's own. A case
builds the dataset, the RecBole split, the graph, the text features (cached) and the model, then
runs ``--epochs`` epochs of link-prediction steps (sample blocks, forward, margin loss, backward,
Adam) exactly as HGNNTrainer does, without the validation passes. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from graph_and_text import machine

CASES = {
    # dataset: settings (edges per step as in properties/benchmark/foundation.yaml)
    "ml-100k-typed": {"data_path": "dataset/", "train_batch_size": 4096},
    "amazon-food-kitchen": {"train_batch_size": 16384},
}


def run_case(dataset: str, balanced: bool, exclude: bool, epochs: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from recbole.utils import init_seed

    from recbole_gfm.config import Config
    from recbole_gfm.data.protocol import data_preparation
    from recbole_gfm.registry import create_dataset, training_data
    from recbole_gfm.run.inputs import prepare_inputs
    from recbole_gfm.run.stages import Split

    settings = {
        **CASES[dataset], "balanced_sampling": balanced, "exclude_target_edges": exclude, "state": "ERROR", "show_progress": False,
    }  # fmt: skip
    config = Config("HGNN", dataset, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    start = time.perf_counter()
    inputs = prepare_inputs(config, Split(train_data, None, None, None), None)  # the text vectors and the graph
    model = config.model_class(config, train_data.dataset, **inputs)
    loader = training_data(config, train_data, graph=inputs["graph"])  # the link loader the run trains HGNN on
    setup = time.perf_counter() - start
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    model.train()
    times, steps, edges = [], 0, 0
    for _ in range(epochs):
        start = time.perf_counter()
        for batch in loader:
            optimizer.zero_grad()
            loss = model.calculate_loss(batch)
            loss.backward()
            optimizer.step()
            steps += 1
            edges += len(batch)
        times.append(time.perf_counter() - start)
    return {
        "dataset": dataset,
        "balanced": balanced,
        "exclude_target_edges": exclude,
        "items": model.n_items - 1,
        "graph_edges": int(model.graph.edge_index.shape[1]),
        "relations": model.graph.num_relations,
        "edges_per_epoch": edges // epochs,
        "steps_per_epoch": steps // epochs,
        "setup_s": round(setup, 1),
        "epoch_s": round(sum(times) / len(times), 1),
        "step_s": round(sum(times) / steps, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)  # child mode: DATASET BALANCED EXCLUDE
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], args.case[1] == "True", args.case[2] == "True", args.epochs, args.threads)))
        return
    rows = []
    for dataset in CASES:
        for balanced, exclude in ((True, True), (True, False), (False, True)):
            command = [sys.executable, __file__, "--epochs", str(args.epochs), "--threads", str(args.threads)]
            out = subprocess.run([*command, "--case", dataset, str(balanced), str(exclude)], capture_output=True, text=True)
            if out.returncode:
                rows.append({"dataset": dataset, "balanced": balanced, "exclude_target_edges": exclude, "error": out.stderr.strip().splitlines()[-1]})
            else:
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    info = machine()
    print(f"machine: {info['nproc']} cores, {info['cpu']}, {info['ram_gb']} GB; torch threads: {args.threads}\n")
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # dataset paths are repo-relative
    main()
