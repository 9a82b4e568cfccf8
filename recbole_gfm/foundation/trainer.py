"""The foundation models' trainers: RecBole's, then the artifact written (a model names its own: ``trainer``)."""

from __future__ import annotations

import math
import time

from recbole.trainer import TraditionalTrainer, Trainer

from recbole_gfm.compat import is_leader
from recbole_gfm.errors import ConfigError
from recbole_gfm.foundation.store import save_foundation


def foundation_checkpoint(config, valid_data) -> str:
    """Which epoch a foundation artifact keeps: the best-validated one, or the last when RecBole's
    Trainer will not validate (no validation data, ``eval_step`` <= 0 or more than ``epochs``)."""
    return "best" if valid_data is not None and 0 < config["eval_step"] <= config["epochs"] else "last"


class FoundationExport:
    """Mixin for a foundation model's trainer: after RecBole's ``fit``, the artifact is written.

    Early stopping is RecBole's (validated on the recommendation task: a user is the mean of their
    history, every ``eval_step`` epochs, ``stopping_step`` validations of patience), except that a
    validation which only ties the best is not progress (Keras' ``EarlyStopping`` rule; see
    :meth:`_valid_epoch`). The best encoder is also kept in memory, so the artifact written after
    training is the best-validated one whether or not a checkpoint file is saved.
    """

    foundation_path: str | None = None
    resumable = False  # the best encoder lives in fit's memory, not in a snapshot (recbole_gfm.run.resume)

    def _valid_epoch(self, valid_data, show_progress=False):
        """RecBole's validation; then the bar RecBole's ``early_stopping`` compares it with is raised
        to the next float past the best, so only a strict improvement resets the patience.

        RecBole takes ``value >= best`` as a new best: a foundation whose validation metric sits on
        one rounded value (an HGNN at NDCG@10 .0002 on amazon-food-kitchen) never stops before
        ``epochs``. The score itself is returned unchanged; :meth:`fit` returns the true best.
        """
        score, result = super()._valid_epoch(valid_data, show_progress)
        if math.isfinite(self.best_valid_score):
            self.best_valid_score = math.nextafter(self.best_valid_score, math.inf if self.valid_metric_bigger else -math.inf)
        return score, result

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        best: dict = {}

        def keep_best(epoch: int, score: float) -> None:
            if self.cur_step == 0:  # RecBole's early_stopping resets cur_step to 0 on a new best
                best.update(score=score, state={k: v.detach().clone() for k, v in self.model.state_dict().items()})
            if callback_fn is not None:
                callback_fn(epoch, score)

        start = time.perf_counter()
        result = super().fit(train_data, valid_data, verbose, saved, show_progress, keep_best)
        train_time = time.perf_counter() - start
        if best:  # not the raised bar of _valid_epoch
            self.best_valid_score = best["score"]
            result = (best["score"], result[1])
        if not is_leader(self.config):  # a multi-process run writes its artifact once, from rank 0
            return result
        if best:
            self.model.load_state_dict(best["state"])
        self.model.eval()
        self.foundation_path = save_foundation(
            self.config,
            train_data.dataset,
            self.model.item_embeddings(),
            self.model.encoder,
            self.model.encoder_args,
            checkpoint=foundation_checkpoint(self.config, valid_data),
            extra={
                "best_valid_score": float(result[0]),
                "best_valid_result": dict(result[1] or {}),
                "train_time_s": round(train_time, 3),
            },
        )
        return result


def batch_lr_scale(rule: str, batch_growth: float) -> float:
    """The learning rate's factor for a batch ``batch_growth`` times the configured one.

    sqrt: Adam's square-root scaling rule (Malladi et al., NeurIPS 2022, "On the SDEs and Scaling
    Rules for Adaptive Gradient Algorithms"); linear: Goyal et al.'s rule for SGD; none: unchanged.
    """
    scales = {"sqrt": batch_growth**0.5, "linear": batch_growth, "none": 1.0}
    if rule not in scales:
        raise ConfigError(f"batch_lr_scaling '{rule}' unknown: choose sqrt (Adam's rule), linear or none.")
    return scales[rule]


class HGNNTrainer(FoundationExport, Trainer):
    """RecBole's Trainer on link-prediction batches (the run gives HGNN its ``LinkLoader``), then the artifact.

    When the loader grew its batch to keep an epoch within ``max_steps_per_epoch`` steps, the
    learning rate follows ``batch_lr_scaling`` (:func:`batch_lr_scale`).
    """

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        learning_rate = self.learning_rate * batch_lr_scale(self.config["batch_lr_scaling"], train_data.batch_growth)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)


class PropagationTrainer(FoundationExport, TraditionalTrainer):
    """One pass (nothing to fit), a validation, then the artifact."""
