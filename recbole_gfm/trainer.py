"""Trainers for what RecBole's Trainer cannot already do (found by name: ``<Model>Trainer``)."""

from __future__ import annotations

import time

import torch
from recbole.trainer import Trainer

from recbole_gfm.foundation import save_foundation


class HGNNTrainer(Trainer):
    """RecBole's Trainer, fed link-prediction edge batches instead of user-item pairs.

    Early stopping and checkpoints stay RecBole's (validated on the recommendation task: a user
    is the mean of their history); after training the best encoder's item embeddings are written
    as the foundation artifact.
    """

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        return super()._train_epoch(self.model.edge_loader, epoch_idx, loss_func, show_progress)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        start = time.perf_counter()
        result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        train_time = time.perf_counter() - start
        if saved:
            checkpoint = torch.load(self.saved_model_file, map_location=self.device, weights_only=True)
            self.model.load_state_dict(checkpoint["state_dict"])
        self.model.eval()
        self.foundation_path = save_foundation(
            self.config,
            train_data._dataset,
            self.model.item_embeddings(),
            self.model.encoder,
            self.model.encoder_args,
            extra={
                "best_valid_score": float(result[0]),
                "best_valid_result": dict(result[1] or {}),
                "train_time_s": round(train_time, 3),
            },
        )
        return result
