"""Which foundation could make GFM beat its own variant without the GNN? GFM over other item vectors.

    .venv/bin/python benchmarks/foundation_sources.py [--dataset amazon-food-kitchen] [--seed 2020]
        [--sources none hgnn edge-mf lightgcn] [--threads 2]

Issue 5 asks the foundation to earn its place (GFM beats GFM w/o GNN). On amazon-food-kitchen the
HGNN does not learn the co-interaction graph (``hgnn_link_diagnostics.md``), so this asks the
question one step earlier: would item vectors that *do* capture the interactions help the adapter?
GFM (the settings of ``gfm-amazon.yaml``'s GFM row, temporal protocol) is trained with its
foundation replaced, through ``foundation_path``, by the item vectors of:

* ``none``: no foundation (GFM w/o GNN, text only);
* ``hgnn``: the package's HGNN (the board's foundation: trained, or reused from the cache);
* ``edge-mf``: a free unit vector per item fitted to the co-interaction graph's edges with the
  HGNN's loss, negatives and batches (``--encoder id`` of ``hgnn_link_diagnostics.py``: it fits
  99% of the training edges), i.e. the item-item graph's signal, fitted;
* ``lightgcn``: LightGCN's item vectors (RecBole's model on the same train split's user-item graph,
  the board's settings), L2-normalised like the HGNN's: the strongest collaborative baseline's view
  of each item.

Neither ``edge-mf`` nor ``lightgcn`` is inductive: an item without train interactions (on amazon,
41% of the test period's interactions are with such items) gets a zero vector, where the HGNN
embeds it from its text. So they are ceilings to reason with, not foundations to ship. Their
artifacts are rebuilt on every run in a separate folder (``--cache_dir``), never the package's
fingerprinted cache. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import shutil

import torch
import torch.nn.functional as F

SOURCES = ("none", "hgnn", "edge-mf", "lightgcn")
# gfm-amazon.yaml: the board's shared settings and its HGNN / LightGCN rows
BOARD = {"stopping_step": 3, "epochs": 30, "eval_batch_size": 2809500, "show_progress": False, "state": "WARNING"}
HGNN_ROW = {"train_batch_size": 16384, "epochs": 6, "eval_step": 1, "stopping_step": 3}
LIGHTGCN_ROW = {"learning_rate": 0.002}


def temporal_split(dataset: str, settings: dict):
    """The HGNN config and the (train, test) split every source shares (GFM's dataset class)."""
    from recbole.utils import init_seed

    from recbole_gfm.config import Config
    from recbole_gfm.data.protocol import data_preparation, protocol_file
    from recbole_gfm.registry import create_dataset

    config = Config("HGNN", dataset, [protocol_file("temporal")], {**settings, **HGNN_ROW})
    init_seed(config["seed"], True)
    train, _, test = data_preparation(config, create_dataset(config))
    return config, train._dataset, test._dataset


def save_vectors(config, data, vectors: torch.Tensor, model: torch.nn.Module, cache_dir: str, extra: dict) -> str:
    """An artifact GFM can read through ``foundation_path``, in ``cache_dir`` (not the package's cache)."""
    from recbole_gfm.foundation.store import save_foundation

    package_cache, config["cache_dir"] = config["cache_dir"], cache_dir
    try:
        return save_foundation(config, data, vectors, model, {}, extra)
    finally:
        config["cache_dir"] = package_cache


def edge_mf_vectors(config, data, steps: int, cache_dir: str) -> tuple[str, float]:
    """Fit the ``id`` probe to the edges for ``steps`` steps and save its vectors as an artifact."""
    from hgnn_link_diagnostics import ProbeEncoder, fit_edges
    from recbole.utils import init_seed

    from recbole_gfm.model.hgnn import HGNN

    init_seed(config["seed"], True)
    hgnn = HGNN(config, data)
    hgnn.encoder = ProbeEncoder(hgnn.encoder, hgnn.n_items, "id")
    _, seconds = fit_edges(hgnn, steps, config["learning_rate"])
    hgnn.eval()
    vectors = hgnn.item_embeddings()
    vectors[torch.bincount(hgnn.graph.edge_index[0], minlength=hgnn.n_items) == 0] = 0  # never trained: no vector
    extra = {"source": f"edge-mf: ProbeEncoder('id'), {steps} steps", "train_time_s": round(seconds, 3)}
    return save_vectors(config, data, vectors, hgnn.encoder, cache_dir, extra), seconds


def lightgcn_vectors(config, data, settings: dict, cache_dir: str) -> tuple[str, dict]:
    """Train LightGCN as the board does, then save its best checkpoint's item vectors as an artifact."""
    from recbole.model.general_recommender import LightGCN

    from recbole_gfm.config import Config
    from recbole_gfm.foundation.store import item_tokens
    from recbole_gfm.data.protocol import data_preparation, protocol_file
    from recbole_gfm.quick_start import create_dataset, run

    config_files, lightgcn_settings = [protocol_file("temporal")], {**settings, **BOARD, **LIGHTGCN_ROW}
    record = run("LightGCN", config["dataset"], config_files, lightgcn_settings, saved=True)
    lightgcn_config = Config("LightGCN", config["dataset"], config_files, lightgcn_settings)
    lightgcn_data = data_preparation(lightgcn_config, create_dataset(lightgcn_config))[0]._dataset
    model = LightGCN(lightgcn_config, lightgcn_data)
    model.load_state_dict(torch.load(record["saved_model_file"], weights_only=True)["state_dict"])
    model.eval()
    with torch.no_grad():
        vectors = F.normalize(model.forward()[1], dim=-1)
    # RecBole's Dataset and GFM's MultiTypeDataset number items each by their own remap: align by token
    lightgcn_id = lightgcn_data.field2token_id[lightgcn_data.iid_field]
    trained = torch.bincount(lightgcn_data.inter_feat[lightgcn_data.iid_field], minlength=len(vectors)) > 0
    items = torch.zeros(data.item_num, vectors.shape[1])  # no train interaction: untrained vector, kept 0
    for gfm_id, token in enumerate(item_tokens(data)[1:], start=1):
        if token in lightgcn_id and trained[lightgcn_id[token]]:
            items[gfm_id] = vectors[lightgcn_id[token]]
    extra = {"source": "lightgcn: RecBole LightGCN item vectors, L2-normalised", "train_time_s": record["train_time_s"]}
    return save_vectors(config, data, items, model, cache_dir, extra), record


def popularity_signal(config, data, test_data, paths: dict[str, str]) -> tuple[float, dict[str, float]]:
    """How much the train period's popularity says about the test period's, and how much of it each
    source's vectors carry: Spearman of items' train and test counts, and per source the R^2 of
    log(1 + train count) predicted from the vectors (ridge, fitted on half the warm items, scored
    on the other half)."""
    from scipy.stats import spearmanr

    from recbole_gfm.data.text import item_text_embeddings
    from recbole_gfm.foundation.store import load_foundation

    item = data.iid_field
    train_count = torch.bincount(data.inter_feat[item], minlength=data.item_num).double()
    test_count = torch.bincount(test_data.inter_feat[item], minlength=data.item_num).double()
    drift = float(spearmanr(train_count[1:], test_count[1:])[0])
    warm = torch.nonzero(train_count > 0).flatten()
    fit, held = warm[torch.randperm(len(warm), generator=torch.Generator().manual_seed(0))].chunk(2)
    y = torch.log1p(train_count)
    vectors = {"none (text)": F.normalize(item_text_embeddings(config, data), dim=-1)}
    vectors.update({name: load_foundation(path, data) for name, path in paths.items()})
    r2 = {}
    for name, v in vectors.items():
        x, mean = v.double(), y[fit].mean()
        w = torch.linalg.solve(x[fit].T @ x[fit] + torch.eye(x.shape[1], dtype=x.dtype), x[fit].T @ (y[fit] - mean))
        residual = y[held] - mean - x[held] @ w
        r2[name] = float(1 - residual.pow(2).sum() / (y[held] - y[held].mean()).pow(2).sum())
    return drift, r2


def gfm_settings(settings: dict, source: str, path: str | None) -> dict:
    extra = {"use_foundation": False} if source == "none" else {"foundation": HGNN_ROW}
    if path:
        extra["foundation_path"] = path
    return {**settings, **BOARD, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon-food-kitchen")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--edge_mf_steps", type=int, default=60)
    parser.add_argument("--cache_dir", default="/tmp/foundation_sources", help="where the non-HGNN artifacts go")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from graph_and_text import machine

    from recbole_gfm.config import Config
    from recbole_gfm.foundation.store import ensure_foundation
    from recbole_gfm.data.protocol import protocol_file
    from recbole_gfm.quick_start import run

    settings = {"seed": args.seed, "results_dir": "", "checkpoint_dir": os.path.join(args.cache_dir, "saved")}
    config, data, test_data = temporal_split(args.dataset, settings)
    rows, paths = [], {}
    for source in args.sources:
        path, own, folder = None, "", os.path.join(args.cache_dir, source)
        shutil.rmtree(folder, ignore_errors=True)
        if source == "edge-mf":
            path, seconds = edge_mf_vectors(config, data, args.edge_mf_steps, folder)
            own = f"{args.edge_mf_steps} steps, {seconds:.0f} s"
        elif source == "lightgcn":
            path, record = lightgcn_vectors(config, data, settings, folder)
            test = record["test_result"]
            own = f"LightGCN itself {test['hit@10']:.4f} / {test['ndcg@10']:.4f}, {record['train_time_s']:.0f} s"
        gfm_config = gfm_settings(settings, source, path)
        record = run("GFM", args.dataset, [protocol_file("temporal")], gfm_config, saved=True)
        test = record["test_result"]
        rows.append((source, test, record["best_epoch"], record["train_time_s"], own))
        print(f"{source}: {test['hit@10']:.4f} / {test['ndcg@10']:.4f}", flush=True)
        if source == "hgnn":  # the package's artifact, found as GFM found it
            path = ensure_foundation(Config("GFM", args.dataset, [protocol_file("temporal")], gfm_config), data)
        if path:
            paths[source] = path
    drift, r2 = popularity_signal(config, data, test_data, paths)

    info = machine()
    print(f"\nmachine: {info['nproc']} cores, {info['cpu']}, {info['ram_gb']} GB; torch threads: {args.threads}; "
          f"dataset {args.dataset}, temporal protocol, seed {args.seed}\n")
    types = sorted({k.split("[type=")[1].rstrip("]") for k in rows[0][1] if "[type=" in k and "," not in k and k.startswith("hit@10")})
    print("| foundation | HR@10 | NDCG@10 | " + " | ".join(f"HR@10 {t}" for t in types) + " | best epoch | GFM train s | the source's own run |")
    print("|---|---|---|" + "---|" * len(types) + "---|---|---|")
    for source, test, best_epoch, seconds, own in rows:
        per_type = " | ".join(f"{test[f'hit@10[type={t}]']:.4f}" for t in types)
        print(f"| {source} | {test['hit@10']:.4f} | {test['ndcg@10']:.4f} | {per_type} | {best_epoch} | {seconds:.0f} | {own} |")
    print(f"\nPopularity drift: Spearman correlation of the items' train and test counts {drift:.3f}.")
    print("R^2 of log(1 + train count) from the item vectors (ridge, held-out half of the warm items): "
          + ", ".join(f"{name} {value:.3f}" for name, value in r2.items()) + ".")


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # dataset paths are repo-relative
    import recbole_gfm  # noqa: F401  (compat fixes before RecBole is used)

    main()
