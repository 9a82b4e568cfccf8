"""Resuming a stopped training run from its last validated epoch, with the numbers of an unbroken run.

RecBole's Trainer saves the best epoch (``_save_checkpoint``) and ``resume_checkpoint`` restarts
from it; that is not a resume of the run that stopped. It goes back to the best epoch, not the
last, and restores neither the random streams (torch's, NumPy's and Python's global generators, the
CUDA ones, the train loader's shuffling generator) nor the trainer's history (losses, best
result), so the resumed run would train other epochs than the unbroken one. A long cell killed
in its fifth hour (a session's end, a pre-empted node) would lose everything.

A :class:`TrainingResume` is written after every validation that training goes on from, beside
RecBole's checkpoints (``checkpoint_dir``): one file, renamed into place, that starts with the
sha256 of what follows, named by a fingerprint of everything that can change the run: the
settings, the split, the foundation read, the code and the package versions.
A run that finds its own snapshot restores it and goes on from the next epoch. It is removed when
training ends, or fails (a re-run would only fail again); Ctrl-C or SIGTERM keeps it.

Scope: one-process runs of RecBole's Trainer. A multi-process run's ranks each hold other random
streams, and a foundation's trainer (:class:`recbole_gfm.foundation.trainer.FoundationExport`) keeps its best
encoder in memory: those train from the start (``resumable = False``).
"""

from __future__ import annotations

import io
import glob
import os
import random
from logging import getLogger
from typing import Any

import numpy as np
import torch

from recbole_gfm.artifacts import (
    CorruptArtifactError, atomic_write, content_hash, fingerprint, move_aside, package_versions, result_code_fingerprint,
    settings_fingerprint,
)  # fmt: skip
from recbole_gfm.checkpoint import encode_other_parameter, to_plain

SNAPSHOT_FORMAT = 1


def random_streams(train_data) -> dict[str, Any]:
    """Every random generator a training epoch draws from, as plain data (a weights-only checkpoint)."""
    bit_generator, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        # RecBole's negative sampler draws from NumPy's
        "numpy": [bit_generator, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian],
        "python": [version, list(internal), gauss_next],
        "loader": train_data.generator.get_state(),  # RecBole's AbstractDataLoader: the shuffling order
    }


def restore_random_streams(streams: dict[str, Any], train_data) -> None:
    torch.set_rng_state(streams["torch"])
    if streams["cuda"] is not None:
        torch.cuda.set_rng_state_all(streams["cuda"])
    bit_generator, keys, position, has_gauss, cached_gaussian = streams["numpy"]
    np.random.set_state((bit_generator, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    version, internal, gauss_next = streams["python"]
    random.setstate((version, tuple(internal), gauss_next))
    train_data.generator.set_state(streams["loader"])


SNAPSHOT_SUFFIX = ".pth"


def snapshots(checkpoint_dir: str) -> list[str]:
    """The training snapshots kept in ``checkpoint_dir`` (a stopped run's, to resume from)."""
    return glob.glob(os.path.join(checkpoint_dir, f"*-resume-*{SNAPSHOT_SUFFIX}"))


class TrainingResume:
    """The snapshot of one run's training: written after a validation, restored at the run's start.

    ``progress`` is the run's own record of the epochs so far (the validation curve, the best
    epoch and its time): it is stored with the trainer's state and given back by :meth:`restore`.
    """

    def __init__(self, config, trainer, train_data, foundation_path: str | None = None):
        self.trainer, self.train_data = trainer, train_data
        self.folder = config["checkpoint_dir"]
        key = fingerprint(settings_fingerprint(to_plain(config)), foundation_path, result_code_fingerprint(), package_versions())
        self.path = os.path.join(config["checkpoint_dir"], f"{config['model']}-resume-{key}{SNAPSHOT_SUFFIX}")

    @staticmethod
    def applies(config, trainer) -> bool:
        """Whether this run keeps snapshots: asked for, one process, a trainer whose state is RecBole's."""
        return bool(config["resume_training"]) and config["single_spec"] and getattr(trainer, "resumable", True)

    def save(self, epoch: int, progress: dict[str, Any]) -> None:
        """After validating ``epoch``: the state training goes on from, if it goes on."""
        trainer = self.trainer
        if trainer.cur_step > trainer.stopping_step or epoch + 1 >= trainer.epochs:
            return  # training ends here (RecBole's early_stopping, or the last epoch): nothing to resume
        state = {
            "format": SNAPSHOT_FORMAT,
            "epoch": epoch,
            "model": trainer.model.state_dict(),
            "other_parameter": encode_other_parameter(trainer.model.other_parameter()),
            "optimizer": trainer.optimizer.state_dict(),
            "cur_step": trainer.cur_step,
            "best_valid_score": to_plain(trainer.best_valid_score),
            "best_valid_result": to_plain(trainer.best_valid_result),
            "train_loss": to_plain(list(trainer.train_loss_dict.items())),
            "saved_model_file": trainer.saved_model_file,  # the best epoch's checkpoint, when the run saves one
            "random": random_streams(self.train_data),
            "progress": to_plain(progress),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        # one file, renamed into place: a kill at any moment leaves the previous snapshot or this one,
        # never a file without its hash (a sidecar would be a second write)
        with atomic_write(self.path) as f:
            f.write(content_hash(data).encode() + b"\n" + data)

    def restore(self, saved: bool) -> dict[str, Any] | None:
        """Load this run's snapshot into the trainer and the random streams; return its ``progress``.

        None when there is none (a fresh start), or when it cannot be used: an unreadable file is
        moved aside, and a run that saves its best checkpoint needs that file too.
        """
        if not os.path.isfile(self.path):
            return None
        logger = getLogger()
        try:
            with open(self.path, "rb") as f:
                digest, _, data = f.read().partition(b"\n")
            if content_hash(data) != digest.decode(errors="replace"):
                raise CorruptArtifactError(f"{self.path}: its content does not match the sha256 it starts with")
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            if state.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(f"snapshot format {state.get('format')!r}, expected {SNAPSHOT_FORMAT}")
        except Exception as error:  # noqa: BLE001 - any unusable snapshot: start over, keep it for inspection
            aside = move_aside(self.path)
            logger.warning(f"{self.path}: unusable training snapshot ({error}); moved to {aside}, training from the start")
            return None
        # the best checkpoint lies beside the snapshot, wherever the folder was moved to (a board of
        # record's snapshots travel in git: another clone, another absolute path)
        best_file = os.path.join(self.folder, os.path.basename(state["saved_model_file"]))
        if saved and state["best_valid_result"] is not None and not os.path.isfile(best_file):
            logger.warning(f"{self.path}: its best checkpoint {best_file} is gone; training from the start")
            return None
        trainer = self.trainer
        trainer.model.load_state_dict(state["model"])  # copied onto the model's device
        trainer.model.load_other_parameter(state["other_parameter"])
        trainer.optimizer.load_state_dict(state["optimizer"])  # moved to the parameters' device
        trainer.start_epoch = state["epoch"] + 1
        trainer.cur_step = state["cur_step"]
        trainer.best_valid_score = state["best_valid_score"]
        trainer.best_valid_result = state["best_valid_result"]
        trainer.train_loss_dict = {int(epoch): loss for epoch, loss in state["train_loss"]}
        trainer.saved_model_file = best_file
        restore_random_streams(state["random"], self.train_data)
        logger.info(f"{self.path}: resuming training at epoch {trainer.start_epoch}")
        return state["progress"]

    def discard(self) -> None:
        """Training ended (or failed): the snapshot has nothing left to give."""
        if os.path.isfile(self.path):
            os.unlink(self.path)
