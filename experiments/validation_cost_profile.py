"""What does a validation pass cost against a training epoch? (issue 29: at most ~10% of an epoch)

    .venv/bin/python experiments/validation_cost_profile.py [--dataset amazon-food-kitchen] [--protocol temporal]
        [--models GFM-noGNN LightGCN] [--threads 1] [--config-files properties/dataset/amazon-food-kitchen.yaml]
        [--eval-batch-size 2809500]

For each model (GFM-noGNN: GFM without a foundation, so nothing else is trained), the run's own
stages build the split and the model, then its trainer times one training epoch
(``_train_epoch``) and one validation pass (``evaluate`` on the validation split: the full
ranking, RecBole's evaluator and this package's per-type and per-item-history groups), each
twice. GFM-noGNN is also timed with ``per_type_eval`` off, which leaves RecBole's overall
metrics only. ``--eval-batch-size``: scores per evaluation batch (RecBole's ``eval_batch_size``: a
full-ranking batch holds this / item count users; default RecBole's 4096, one user at a time on
amazon's 28,095 items; the amazon boards set 2,809,500, about 100 users). The seconds are read as
ratios within one run. Prints Markdown.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

MODELS = {
    "GFM-noGNN": ("GFM", {"use_foundation": False}),
    "GFM-noGNN, overall metrics only": ("GFM", {"use_foundation": False, "per_type_eval": False}),
    "LightGCN": ("LightGCN", {"learning_rate": 0.002}),
    "BPR": ("BPR", {}),
}


def timed(label: str, model_name: str, settings: dict, args) -> list[str]:
    """Markdown rows: one epoch's and one validation pass's seconds, twice."""
    from recbole.utils import init_seed

    from recbole_gfm.config import Config
    from recbole_gfm.data.protocol import protocol_file
    from recbole_gfm.registry import get_trainer, training_data
    from recbole_gfm.run.stages import build_model, model_inputs, prepare_data

    files = [protocol_file(args.protocol), *args.config_files]
    given = {**settings, "show_progress": False, "state": "WARNING"}
    if args.eval_batch_size:
        given["eval_batch_size"] = args.eval_batch_size
    config = Config(model_name, args.dataset, files, given)
    init_seed(config["seed"], config["reproducibility"])
    split = prepare_data(config, evaluate_test=False)
    if model_inputs(config):
        from recbole_gfm.run.inputs import build_with_inputs

        model = build_with_inputs(config, split, None)
    else:
        model = build_model(config, split)
    trainer = get_trainer(config)(config, model)
    train = training_data(config, split.train_data)
    rows = []
    for repeat in range(2):
        start = time.perf_counter()
        trainer._train_epoch(train, repeat, show_progress=False)
        epoch = time.perf_counter() - start
        start = time.perf_counter()
        trainer.evaluate(split.valid_data, load_best_model=False, show_progress=False)
        valid = time.perf_counter() - start
        rows.append(f"| {label} | {repeat + 1} | {epoch:.1f} | {valid:.1f} | {valid / epoch:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="amazon-food-kitchen")
    parser.add_argument("--protocol", default="temporal")
    parser.add_argument("--config-files", nargs="*", default=["properties/dataset/amazon-food-kitchen.yaml"])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-batch-size", type=int, default=None, help="scores per evaluation batch (default: RecBole's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# Validation pass against a training epoch: {args.dataset}, {args.protocol}, {args.threads} threads\n")
    print(f"`{' '.join(sys.argv)}`; {platform.processor() or platform.machine()}, torch {torch.__version__}\n")
    print("| model | repeat | epoch s | validation s | validation / epoch |")
    print("|---|---|---|---|---|")
    for label in args.models:
        model_name, settings = MODELS[label]
        for row in timed(label, model_name, settings, args):
            print(row, flush=True)


if __name__ == "__main__":
    main()
