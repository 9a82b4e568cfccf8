"""Diagnostics: is the co-interaction graph learnable by the HGNN, and what does it add to text?

    .venv/bin/python benchmarks/hgnn_link_diagnostics.py [--steps 60] [--threads 2] [--set KEY=VALUE ...]
        [--encoder hgnn|hgnn+id|self+id|id] [DATASET ...]

Per dataset (temporal protocol, train split's graph, properties as in run_recbole_gfm.py):

* graph: edges, mean degree, share of edges whose two items have a common neighbour (vs random pairs);
* edge predictability without training: AUC of an edge against a random pair by text cosine, and
  by the degree of the far end (what uniform negatives let a model learn for free);
* validation HR@10 / NDCG@10 (RecBole's evaluator, user = history mean) of item vectors that need no
  training: the text, and the text propagated over the graph one and two hops (SGC-style, untrained);
* the HGNN after ``--steps`` link-prediction steps (HGNNTrainer's steps): loss, the AUC of its
  positives against its negatives on a fresh batch, the norm of the mean item vector (1 = all items
  collapsed onto one direction), and the same validation metrics.

``--encoder`` swaps the HGNN's encoder for a probe (:class:`ProbeEncoder`) with the same loss,
edges, negatives and steps, to locate what keeps it from fitting the edges it trains on.

Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
import yaml
from torch import nn

ENCODERS = ("hgnn", "hgnn+id", "self+id", "id")


class ProbeEncoder(nn.Module):
    """Probes in place of ``HGNNEncoder`` (same call: text features and sampled blocks -> unit vectors).

    ``id``: a free vector per item, nothing else (matrix factorisation of the edges);
    ``hgnn+id``: the HGNN's own encoder with a zero-initialised item-ID vector added to the projected
    text (more capacity than any text can give, and an untrained item keeps its text alone);
    ``self+id``: the same without the neighbour terms, i.e. each layer keeps only the item's own term.
    Dropout is left out (the HGNN default is 0).
    """

    def __init__(self, base: nn.Module, n_items: int, variant: str):
        super().__init__()
        self.base, self.variant = base, variant
        if variant == "id":
            self.item_id = nn.Embedding(n_items, base.layers[-1].self_lin.out_features)
            nn.init.normal_(self.item_id.weight, std=0.1)
        else:
            self.item_id = nn.Embedding(n_items, base.project.out_features)
            nn.init.zeros_(self.item_id.weight)

    def forward(self, features: torch.Tensor, blocks: list) -> torch.Tensor:
        if self.variant == "id":
            return F.normalize(self.item_id(blocks[-1].dst), dim=-1)
        h = self.base.act(self.base.project(features[blocks[0].src]) + self.item_id(blocks[0].src))
        for l, (layer, block) in enumerate(zip(self.base.layers, blocks)):
            h_dst = h[block.dst_in_src]
            h = layer(h, h_dst, block) if self.variant == "hgnn+id" else layer.self_lin(h_dst)
            if l + 1 < self.base.n_layers:
                h = self.base.act(h)
        return F.normalize(h, dim=-1)


def propagate(x: torch.Tensor, edge_index: torch.Tensor, hops: int) -> torch.Tensor:
    """x + mean over neighbours, ``hops`` times, row-normalised."""
    n = x.shape[0]
    adj = torch.sparse_coo_tensor(edge_index.flip(0), torch.ones(edge_index.shape[1]), (n, n)).coalesce()
    degree = torch.sparse.sum(adj, 1).to_dense().clamp(min=1).unsqueeze(1)
    for _ in range(hops):
        x = x + torch.sparse.mm(adj, x) / degree
    return F.normalize(x, dim=-1)


def pair_auc(score_pos: torch.Tensor, score_neg: torch.Tensor) -> float:
    return round(float((score_pos > score_neg).float().mean() + 0.5 * (score_pos == score_neg).float().mean()), 3)


def fit_edges(hgnn, steps: int, learning_rate: float) -> tuple[list[float], float]:
    """``steps`` Adam steps of HGNNTrainer's link prediction on the edge loader; losses and seconds."""
    optimizer = torch.optim.Adam(hgnn.parameters(), lr=learning_rate)
    losses, start = [], time.perf_counter()
    while len(losses) < steps:
        for batch in hgnn.edge_loader:
            optimizer.zero_grad()
            loss = hgnn.calculate_loss(batch)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    return losses, time.perf_counter() - start


def diagnose(dataset: str, steps: int, overrides: dict, encoder: str = "hgnn") -> dict:
    from recbole.utils import init_seed

    from recbole_gfm.config import Config
    from recbole_gfm.model.hgnn import HGNN
    from recbole_gfm.model.llmknn import LLMKNN
    from recbole_gfm.data.protocol import data_preparation, protocol_file
    from recbole_gfm.quick_start import create_dataset, get_trainer

    settings = {"state": "ERROR", "show_progress": False, "checkpoint_dir": "/tmp/hgnn_link_diagnostics"}
    if dataset == "amazon-food-kitchen":
        settings["train_batch_size"] = 16384  # as in properties/benchmark/gfm-amazon.yaml
    settings.update(overrides)
    config = Config("HGNN", dataset, [protocol_file("temporal")], settings)
    init_seed(config["seed"], True)
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    hgnn = HGNN(config, train_data._dataset)
    if encoder != "hgnn":
        hgnn.encoder = ProbeEncoder(hgnn.encoder, hgnn.n_items, encoder)
    graph, n_items = hgnn.graph, hgnn.n_items
    row = {"dataset": dataset, "items": n_items - 1, "edges": graph.edge_index.shape[1]}
    row["mean_degree"] = round(graph.edge_index.shape[1] / n_items, 1)

    generator = torch.Generator().manual_seed(0)
    sample = torch.randint(graph.edge_index.shape[1], (20000,), generator=generator)
    far, near = graph.edge_index[:, sample]
    random_far = torch.randint(1, n_items, (len(sample),), generator=generator)
    adjacency = sp.csr_matrix((np.ones(graph.edge_index.shape[1]), graph.edge_index.numpy()), shape=(n_items, n_items))
    common = lambda a, b: float((np.asarray(adjacency[a].multiply(adjacency[b]).sum(1)) > 0).mean())  # noqa: E731
    row["common_neighbour_edges"] = round(common(near.numpy(), far.numpy()), 3)
    row["common_neighbour_random"] = round(common(near.numpy(), random_far.numpy()), 3)
    text = F.normalize(hgnn.text_features, dim=-1)
    row["auc_text"] = pair_auc((text[near] * text[far]).sum(1), (text[near] * text[random_far]).sum(1))
    degree = torch.bincount(graph.edge_index[1], minlength=n_items)
    row["auc_degree"] = pair_auc(degree[far].float(), degree[random_far].float())

    # validation quality of untrained vectors, through LLMKNN (user = history mean) and RecBole's evaluator
    knn = LLMKNN(config, train_data._dataset)
    trainer = get_trainer(config)(config, knn)

    def valid(vectors: torch.Tensor) -> str:
        knn.text_features = vectors
        knn.eval()  # drops the cached user / item vectors
        result = trainer.evaluate(valid_data, load_best_model=False)
        return f"{result['hit@10']:.4f} / {result['ndcg@10']:.4f}"

    row["valid_text"] = valid(text)
    row["valid_text_1hop"] = valid(propagate(text, graph.edge_index, 1))
    row["valid_text_2hop"] = valid(propagate(text, graph.edge_index, 2))

    losses, seconds = fit_edges(hgnn, steps, config["learning_rate"])
    row["hgnn_encoder"] = encoder
    row["hgnn_steps"] = steps
    row["hgnn_step_s"] = round(seconds / steps, 2)
    row["hgnn_loss_first_last"] = f"{losses[0]:.3f} -> {sum(losses[-5:]) / len(losses[-5:]):.3f}"
    hgnn.eval()
    with torch.no_grad():
        z = hgnn.item_embeddings()
        held = next(iter(hgnn.edge_loader))
        a, p, neg = held["anchor"], held["positive"], held["negative"]
        row["hgnn_auc"] = pair_auc((z[a] * z[p]).sum(1, keepdim=True).expand_as(neg), torch.einsum("bd,bkd->bk", z[a], z[neg]))
        row["hgnn_mean_vector_norm"] = round(float(z[1:].mean(0).norm()), 2)
    row["valid_hgnn"] = valid(z)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=["ml-100k-typed", "amazon-food-kitchen"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (YAML value), e.g. graph_time_window=7776000")
    parser.add_argument("--encoder", choices=ENCODERS, default="hgnn", help="probe in place of the HGNN's encoder (see ProbeEncoder)")
    args = parser.parse_args()
    if any("=" not in item for item in args.set):
        parser.error("--set takes KEY=VALUE, e.g. --set graph_time_window=7776000")
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    torch.set_num_threads(args.threads)
    from graph_and_text import machine

    rows = [diagnose(d, args.steps, overrides, args.encoder) for d in args.datasets]
    info = machine()
    print(f"machine: {info['nproc']} cores, {info['cpu']}, {info['ram_gb']} GB; torch threads: {args.threads}; overrides: {overrides}; encoder: {args.encoder}\n")
    print("| quantity | " + " | ".join(r["dataset"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for key in rows[0]:
        if key != "dataset":
            print(f"| {key} | " + " | ".join(str(r.get(key, "")) for r in rows) + " |")


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # dataset paths are repo-relative
    import recbole_gfm  # noqa: F401  (compat fixes before RecBole is used)

    main()
