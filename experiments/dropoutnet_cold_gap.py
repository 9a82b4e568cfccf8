"""Why does DropoutNet put no held-out item into any top 10 on item-cold-ml100k? (issue 28's open question)

    .venv/bin/python experiments/dropoutnet_cold_gap.py [--seed 2020] [--threads 2]

The board of record ``benchmarks/item-cold-ml100k`` gives DropoutNet ndcg@10[items=cold] = 0 on three
seeds, where ContentKNN gets .077 from the same text vectors. Two explanations predict that zero:

* **the mixed-ranking gap**: the towers order the held-out items among themselves well, but a
  content-only vector scores below the warm items' vectors (which carry a learned ID part), so no
  held-out item ever reaches a top 10 of the full ranking;
* **no content signal**: the towers never learned to score from content, and the held-out items
  are ordered no better than at random even among themselves.

On the board's split (same protocol, seed and settings) this trains DropoutNet as the board does,
then for the test users reads, from the best checkpoint: the held-out items' NDCG@10 in the full
ranking (the board's figure), their NDCG@10 when only the held-out items are ranked (ordering among
themselves), where a held-out positive ranks among all items, and the share of top-10 slots held by
held-out items. The same for ContentKNN (the reference that reaches them) and for two probe variants:
``dropout_ratio`` 1 (no ID part at all: content only, no gap possible) and DropoutNet with the
paper's calibration restored (the content-only score regressed onto the score with the ID part, the
model's own, stop-gradient: the paper regresses onto a pretrained model's scores). The variants
patch the model here; they are not in the product. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch
import yaml

DATASET = "ml-100k-typed"
BOARD_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "item-cold-ml100k", "board.yaml")


def board_settings() -> dict:
    """The settings every row of the board runs with (its ``config:``), read from the board itself."""
    with open(BOARD_FILE) as f:
        return yaml.safe_load(f)["config"]


def calibrated_dropoutnet():
    """DropoutNet plus the paper's objective on dropped items: u . f_V([0; Phi_v]) regressed onto u . f_V([V_v; Phi_v])."""
    from recbole_gfm.model.dropoutnet import DropoutNet

    class CalibratedDropoutNet(DropoutNet):
        def _item_vectors_with(self, items: torch.Tensor, keep: bool) -> torch.Tensor:
            preference = self.item_preference(items) * (self.known_item[items].float().unsqueeze(1) if keep else 0.0)
            return self.item_tower(torch.cat([preference, self.item_content[items]], dim=1))

        def calculate_loss(self, interaction):
            ranking = super().calculate_loss(interaction)
            u = self.users(interaction[self.USER_ID])
            items = torch.cat([interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]])
            u2 = torch.cat([u, u])
            full = (u2 * self._item_vectors_with(items, True)).sum(-1).detach()
            content = (u2 * self._item_vectors_with(items, False)).sum(-1)
            return ranking + torch.mean((content - full) ** 2)

    return CalibratedDropoutNet


def train(model, settings: dict, seed: int, checkpoints: str):
    """The board's run of ``model`` up to its best checkpoint, loaded: (config, split, model, best valid, epochs)."""
    from recbole.utils import init_seed

    from recbole_gfm.config import Config
    from recbole_gfm.schema import PROPERTIES_DIR
    from recbole_gfm.data.protocol import protocol_file
    from recbole_gfm.run.inputs import build_with_inputs
    from recbole_gfm.run.stages import fit, model_inputs, prepare_data, build_model

    # a probe variant (a class) reads DropoutNet's properties file, as the board's DropoutNet does
    files = [protocol_file("item_cold")] + ([] if isinstance(model, str) else [os.path.join(PROPERTIES_DIR, "model", "DropoutNet.yaml")])
    config = Config(model, DATASET, files,
                    {**board_settings(), **settings, "seed": seed, "checkpoint_dir": checkpoints, "results_dir": ""})
    init_seed(config["seed"], config["reproducibility"])
    torch.use_deterministic_algorithms(config["reproducibility"], warn_only=True)
    split = prepare_data(config)
    net = build_with_inputs(config, split) if model_inputs(config) else build_model(config, split)
    result = fit(config, net, split, saved=True)
    state = torch.load(result.trainer.saved_model_file, map_location="cpu", weights_only=False)
    net.load_state_dict(state["state_dict"])
    net.eval()
    return split, net, result.best_valid_score, len(result.curve)


def dcg_at_10(ranks: np.ndarray) -> np.ndarray:
    """DCG@10 contribution of positives at 0-based ``ranks``."""
    return np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)


@torch.no_grad()
def cold_gap(split, net) -> dict[str, float]:
    """The held-out items' figures on the test split (see the module's docstring)."""
    train = split.train_data.dataset.inter_matrix(form="csr")
    cold = np.asarray(train.sum(axis=0)).ravel() == 0
    cold[0] = False  # padding
    cold_t = torch.from_numpy(cold)
    full_dcg, cold_only_dcg, ranks, slots, users = [], [], [], [], 0
    for interaction, history, positive_u, positive_i in split.test_data:
        scores = net.full_sort_predict(interaction).view(-1, net.n_items).float()
        scores[:, 0] = -torch.inf
        if history is not None:
            scores[history] = -torch.inf
        top = scores.topk(10, dim=1).indices
        slots.append(cold_t[top].float().mean().item() * len(top))
        users += len(top)
        cold_scores = scores.masked_fill(~cold_t, -torch.inf)
        for row in range(len(scores)):
            pos = positive_i[positive_u == row]
            pos_cold = pos[cold_t[pos]]
            if len(pos_cold) == 0:
                continue
            s = scores[row]
            rank_full = np.array([(s > s[p]).sum().item() for p in pos_cold])
            cs = cold_scores[row]
            rank_cold = np.array([(cs > cs[p]).sum().item() for p in pos_cold])
            # NDCG@10 over the held-out positives, as the board's items=cold key: ideal = min(#, 10) hits at the top
            ideal = dcg_at_10(np.arange(min(len(pos_cold), 10))).sum()
            full_dcg.append(dcg_at_10(rank_full).sum() / ideal)
            cold_only_dcg.append(dcg_at_10(rank_cold).sum() / ideal)
            ranks.extend(rank_full.tolist())
    return {
        "ndcg@10 held-out, full ranking": float(np.mean(full_dcg)),
        "ndcg@10 held-out, ranked among held-out only": float(np.mean(cold_only_dcg)),
        "median rank of a held-out positive (of all items)": float(np.median(ranks)),
        "top-10 slots held by held-out items": float(np.sum(slots) / (10 * users)),
        "held-out share of the catalogue": float(cold.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [
        ("DropoutNet (the board's)", "DropoutNet", {}),
        ("ContentKNN (the board's)", "ContentKNN", {}),
        ("DropoutNet, dropout_ratio 1 (content only)", "DropoutNet", {"dropout_ratio": 1.0}),
        ("DropoutNet + the paper's calibration (probe)", calibrated_dropoutnet(), {}),
    ]
    results = []
    for label, model, settings in rows:
        with tempfile.TemporaryDirectory() as checkpoints:
            start = time.perf_counter()
            split, net, valid, epochs = train(model, settings, args.seed, checkpoints)
            figures = cold_gap(split, net)
        results.append((label, valid, epochs, time.perf_counter() - start, figures))
        print(f"{label}: {figures}", file=sys.stderr, flush=True)
    keys = list(results[0][4])
    print(f"# DropoutNet's held-out items on item-cold-ml100k (seed {args.seed})\n")
    print(f"`{' '.join(['.venv/bin/python', *sys.argv])}` · {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}\n")  # fmt: skip
    print("| row | best valid NDCG@10 | epochs | s | " + " | ".join(keys) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(keys))
    for label, valid, epochs, seconds, figures in results:
        print(f"| {label} | {valid:.4f} | {epochs} | {seconds:.0f} | " + " | ".join(f"{figures[k]:.4g}" for k in keys) + " |")


if __name__ == "__main__":
    main()
