"""Where does a GFM adapter epoch go? History sums vs towers vs loss vs backward (issue 15's time target).

    .venv/bin/python experiments/adapter_epoch_profile.py [--dataset ml-100k-typed] [--protocol loo]
        [--threads 2] [--epochs 2] [--history-cache-mb MB] [--bf16]

GFM-small-noGNN (the quick board's settings, no foundation, so nothing else is trained) on one
split: for every training batch of an epoch, times (1) ``GFM.history`` (the per-type content sums
of the batch users' train histories: rebuilt from the CSR every batch with ``--history-cache-mb 0``,
otherwise gathered from the sums GFM builds once), (2) the rest of
``calculate_loss`` (towers, in-batch softmax), (3) backward and the optimiser step. Also counts the
history rows an epoch gathers (sum over training interactions of their user's degree) against the
interactions themselves, and times one epoch of RecBole's LightGCN (its defaults, lr .01 as on the
quick board) on the same split in the same process, as the ratio's denominator. ``--bf16``: the
adapter's forward under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (the probe's wrapper, not a
package option; the loss's quality is not measured here). Prints Markdown.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch


def train_split(model: str, args, settings: dict):
    """``model``'s config and train dataloader on the probe's dataset and protocol, seeded as a run is."""
    from recbole.utils import init_seed

    from recbole_gfm.config import Config
    from recbole_gfm.data.protocol import data_preparation, protocol_file
    from recbole_gfm.registry import create_dataset

    config = Config(model, args.dataset, [protocol_file(args.protocol)], {**settings, "show_progress": False, "state": "WARNING"})
    init_seed(config["seed"], config["reproducibility"])
    torch.use_deterministic_algorithms(config["reproducibility"], warn_only=True)
    train, _, _ = data_preparation(config, create_dataset(config))
    return config, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="ml-100k-typed")
    parser.add_argument("--protocol", default="loo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--history-cache-mb", type=int, default=None, help="GFM's history_cache_mb (0: every batch sums its users' histories)")
    parser.add_argument("--bf16", action="store_true", help="the adapter's forward under CPU bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from recbole_gfm.data.text import item_text_embeddings
    from recbole_gfm.model.gfm import GFM
    from recbole_gfm.registry import training_data

    cache = {} if args.history_cache_mb is None else {"history_cache_mb": args.history_cache_mb}
    config, train = train_split("GFM", args, {"mlp_hidden_sizes": [128], "use_foundation": False, **cache})
    model = GFM(config, train.dataset, text=item_text_embeddings(config, train.dataset))
    data = training_data(config, train)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    degree = model.history_indptr[1:] - model.history_indptr[:-1]
    inter_users = train.dataset.inter_feat[model.USER_ID]
    rows = int(degree[inter_users].sum())

    print(f"# GFM adapter epoch profile: {args.dataset}, {args.protocol}, {args.threads} threads{', bf16 autocast' if args.bf16 else ''}\n")
    print(f"`{' '.join(sys.argv)}`; {platform.processor() or platform.machine()}, torch {torch.__version__}\n")
    print(f"train interactions {len(inter_users):,}; history rows gathered per epoch {rows:,} "
          f"({rows / len(inter_users):.0f} per interaction); content dim {model.content.shape[1]}; "
          f"batch {config['train_batch_size']}\n")
    print("| epoch | batches | history s | towers + loss s | backward + step s | total s |")
    print("|---|---|---|---|---|---|")
    original = model.history
    for epoch in range(args.epochs):
        clock = {"history": 0.0, "loss": 0.0, "backward": 0.0}

        def timed_history(users, clock=clock):
            start = time.perf_counter()
            out = original(users)
            clock["history"] += time.perf_counter() - start
            return out

        model.history = timed_history  # the probe's patch: this instance only
        model.train()
        batches, start_epoch = 0, time.perf_counter()
        for interaction in data:
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                loss = model.calculate_loss(interaction)
            clock["loss"] += time.perf_counter() - start
            start = time.perf_counter()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            clock["backward"] += time.perf_counter() - start
            batches += 1
        total = time.perf_counter() - start_epoch
        print(f"| {epoch + 1} | {batches} | {clock['history']:.2f} | {clock['loss'] - clock['history']:.2f} | "
              f"{clock['backward']:.2f} | {total:.2f} |")
    lightgcn_epoch(args)


def lightgcn_epoch(args) -> None:
    """One epoch of RecBole's LightGCN (forward, backward, step) on the same split: the ratio's denominator."""
    from recbole.model.general_recommender import LightGCN

    config, train = train_split("LightGCN", args, {"learning_rate": 0.01})
    model = LightGCN(config, train.dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    print("\n| LightGCN epoch | batches | total s |")
    print("|---|---|---|")
    for epoch in range(args.epochs):
        model.train()
        batches, start = 0, time.perf_counter()
        for interaction in train:
            loss = model.calculate_loss(interaction)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batches += 1
        print(f"| {epoch + 1} | {batches} | {time.perf_counter() - start:.2f} |")


if __name__ == "__main__":
    main()
