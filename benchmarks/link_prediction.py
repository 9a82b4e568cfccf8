"""Benchmark: what the HGNN learns with and without its target edges hidden from message passing.

    .venv/bin/python benchmarks/link_prediction.py --dataset ml-100k-typed [--protocol temporal] [--set KEY=VALUE ...]

For ``exclude_target_edges`` True and False, the HGNN is trained through the package's own pieces
(its link loader, ``HGNNTrainer``, early stopping on validation NDCG@10), then scored:

* loss: the epoch mean of the margin loss, first epoch -> best epoch -> last epoch;
* link AUC, P(z_a.z_p > z_a.z_n) for an edge (a, p) and a uniform random item n, on
  - train edges (how well the graph is fitted: inference blocks include the edge itself),
  - held-out edges: item pairs co-consumed in the validation period (the same graph rules) that are
    not train edges, i.e. links the model never saw;
  with the same AUC for two references: the cosine of the item texts, and the degree of the far end;
* validation HR@10 / NDCG@10 of the best epoch (a user is the mean of their history);
* training time. Prints Markdown with the command, the machine and the versions.

Successor of ``experiments/hgnn_link_diagnostics.py``; uses the public API only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import yaml
from graph_and_text import machine


def auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(positive > negative) over paired scores, ties counted half."""
    return float((positive > negative).float().mean() + 0.5 * (positive == negative).float().mean())


def pair_scores(vectors: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (vectors[a] * vectors[b]).sum(-1)


def run_case(dataset: str, protocol: str, exclude: bool, overrides: dict, sample: int = 50_000) -> dict:
    from recbole.utils import init_seed

    from recbole_gfm.config import Config
    from recbole_gfm.data.graph import build_cointeraction_graph
    from recbole_gfm.data.text import item_text_embeddings
    from recbole_gfm.model.hgnn import HGNN
    from recbole_gfm.data.protocol import data_preparation, protocol_file
    from recbole_gfm.foundation.trainer import HGNNTrainer
    from recbole_gfm.registry import create_dataset, training_data
    from recbole_gfm.run.inputs import prepare_inputs
    from recbole_gfm.run.stages import Split

    settings = {"state": "WARNING", "show_progress": False, **overrides, "exclude_target_edges": exclude}
    config = Config("HGNN", dataset, [protocol_file(protocol)], settings)
    init_seed(config["seed"], config["reproducibility"])
    torch.use_deterministic_algorithms(config["reproducibility"], warn_only=True)
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    model = HGNN(config, train_data.dataset, **prepare_inputs(config, Split(train_data, valid_data, None, None), None)).to(config["device"])
    trainer = HGNNTrainer(config, model)
    best = {}
    start = time.perf_counter()
    _, best_result = trainer.fit(
        training_data(config, train_data, graph=model.graph), valid_data, saved=False,
        callback_fn=lambda epoch, score: best.update(epoch=epoch) if trainer.cur_step == 0 else None,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    losses = [trainer.train_loss_dict[e] for e in sorted(trainer.train_loss_dict)]

    graph = model.graph
    z = model.item_embeddings().cpu()
    text = torch.nn.functional.normalize(item_text_embeddings(config, train_data.dataset), dim=-1)
    degree = torch.bincount(graph.edge_index[0], minlength=graph.num_items).float()
    generator = torch.Generator().manual_seed(0)
    train_keys = set((graph.edge_index[0] * graph.num_items + graph.edge_index[1]).tolist())
    held = build_cointeraction_graph(config, valid_data.dataset)
    held_keys = held.edge_index[0] * held.num_items + held.edge_index[1]
    novel = torch.tensor([k not in train_keys for k in held_keys.tolist()], dtype=torch.bool)
    cases = {"train": graph.edge_index, "held-out": held.edge_index[:, novel]}
    row = {
        "exclude_target_edges": exclude,
        "graph edges": graph.edge_index.shape[1],
        "held-out edges": int(novel.sum()),
        "loss first -> best -> last": " -> ".join(f"{v:.3f}" for v in (losses[0], losses[best.get("epoch", -1)], losses[-1])),
        "epochs (best)": f"{len(losses)} ({best.get('epoch')})",
    }
    for name, edges in cases.items():
        pick = torch.randperm(edges.shape[1], generator=generator)[:sample]
        a, p = edges[1, pick], edges[0, pick]
        n = torch.randint(1, graph.num_items, (len(pick),), generator=generator)
        row[f"AUC {name}: HGNN"] = round(auc(pair_scores(z, a, p), pair_scores(z, a, n)), 3)
        row[f"AUC {name}: text"] = round(auc(pair_scores(text, a, p), pair_scores(text, a, n)), 3)
        row[f"AUC {name}: degree"] = round(auc(degree[p], degree[n]), 3)
    row["valid HR@10 / NDCG@10"] = f"{best_result.get('hit@10', float('nan')):.4f} / {best_result.get('ndcg@10', float('nan')):.4f}"
    row["train s"] = round(seconds, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--protocol", default="temporal")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an HGNN setting (YAML value)")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set takes KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        overrides[key] = yaml.safe_load(value)

    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # dataset paths are repo-relative
    import recbole_gfm  # noqa: F401  (compatibility fixes)
    from recbole_gfm.artifacts import package_versions

    rows = []
    for exclude in (True, False):
        rows.append(run_case(args.dataset, args.protocol, exclude, overrides))
        print(rows[-1], file=sys.stderr, flush=True)
    command = "OMP_NUM_THREADS=2 .venv/bin/python " + " ".join(["benchmarks/link_prediction.py", *sys.argv[1:]])
    info = machine()
    print(f"Command: `{command}`  \nMachine: {info['nproc']} cores ({info['cpu']}), {info['ram_gb']} GB RAM; "
          f"torch threads {torch.get_num_threads()}. Versions: {package_versions()}\n")
    print(f"{args.dataset}, protocol {args.protocol}, settings {overrides or 'properties/model/HGNN.yaml'}\n")
    keys = list(rows[0])
    print("| quantity | " + " | ".join(f"exclude_target_edges: {r['exclude_target_edges']}" for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for key in keys[1:]:
        print(f"| {key} | " + " | ".join(str(r[key]) for r in rows) + " |")


if __name__ == "__main__":
    main()
