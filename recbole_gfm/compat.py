"""Every fix RecBole 1.2.1 needs on today's numpy / scipy / torch, in one place.

Applied once when :mod:`recbole_gfm` is imported. Each fix checks that it is still needed (so a
future RecBole release that mends the problem is left alone) and records its name in
:data:`APPLIED`, which the tests read. pandas 3 is not patched but excluded by the requirement
``pandas<3``: under copy-on-write RecBole's chained ``fillna(inplace=True)`` silently does
nothing, and the places it happens are in the middle of long loader methods.

Checkpoints: the plugin's ``Trainer._save_checkpoint`` writes plain data (torch >= 2.6 loads it
with ``weights_only=True``) atomically, with its sha256 in a sidecar ``<file>.sha256``, and RecBole's
``Trainer.evaluate(load_best_model=True)`` / ``resume_checkpoint`` check that hash before
``torch.load`` reads the file (:func:`verify_checkpoint`); :func:`load_checkpoint` does the same for
the plugin's own readers. On torch < 2.6 RecBole's own writer is kept, and its checkpoints unchecked.

Besides the stack fixes, one model fix: RecBole's ``Pop`` counts an item at most once per training
batch (and counts sampled negatives), so its scores depend on batch size and seed; see
:func:`_pop_init`. RecBole's other non-gradient models were audited for the same kind of fault
(state built per batch, negatives counted, dependence on batch size); none has it:

- ItemKNN, AsymKNN, EASE, ADMMSLIM, SLIMElastic (``ModelType.TRADITIONAL``) and NCEPLRec (typed
  GENERAL, so RecBole runs all ``epochs`` of its constant loss: a constant validation score never
  stops early, as RecBole's ``early_stopping`` counts ``value >= best`` as progress; slow, not wrong) build
  everything from ``dataset.inter_matrix()`` of the train split in ``__init__``; their
  ``calculate_loss`` returns a constant and reads no batch.
- Random draws fresh scores on every call: one vector per *evaluation* batch, so its metrics
  depend on ``eval_batch_size`` and the order of calls; that is noise by design and left alone.
- Left alone too: ``inter_matrix()`` sums repeated (user, item) rows, so with duplicate
  interactions kept (``rm_dup_inter: ~``, RecBole's default) those models weight a pair by its
  count, although RecBole's docstring says the entry is 1. Deterministic and batch-independent;
  drop duplicates in the data if binary input is wanted.
"""

from __future__ import annotations

import io
import numbers
import os
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recbole_gfm.artifacts import atomic_write, content_hash, verify_sidecar, write_sidecar

APPLIED: list[str] = []
_done = False

# numpy aliases RecBole 1.2.1 uses in its own code (np.float in the evaluator, np.long in layers,
# np.bool ...). They were removed in numpy 1.24 / 2.0.
_NUMPY_ALIASES = {
    "bool": np.bool_,
    "int": np.int_,
    "float": np.float64,
    "complex": np.complex128,
    "object": np.object_,
    "str": np.str_,
    "long": np.int_,
    "unicode": np.str_,
}


def _numpy_aliases_needed() -> bool:
    return not hasattr(np, "float_")  # numpy >= 2: Config.compatibility_settings crashes


def _compatibility_settings(self) -> None:
    """Config.compatibility_settings without the numpy-1-only names (``np.float_``, ``np.unicode_``)."""
    for name, alias in _NUMPY_ALIASES.items():
        setattr(np, name, alias)


def _dok_update_needed() -> bool:
    return not hasattr(sp.dok_matrix, "_update")  # removed in scipy 1.12


def _dok_update(self, data: dict) -> None:
    """dok_matrix._update (scipy < 1.12): bulk insert without per-key checks, used by LightGCN & co."""
    self._dict.update(data)


def _weights_only_default() -> bool:
    """torch >= 2.6 loads with weights_only=True unless told otherwise: RecBole's pickled Config fails."""
    return torch.torch_version.TorchVersion(torch.__version__) >= "2.6"


def to_plain(value: Any) -> Any:
    """Recursively turn a value into data ``torch.load(weights_only=True)`` accepts.

    Config objects become dicts, enums and devices their names, numpy scalars Python numbers.
    """
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, numbers.Number):
        return float(value)
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_plain(v) for v in value]
    if hasattr(value, "final_config_dict"):  # recbole Config
        return to_plain(value.final_config_dict)
    return str(value)


_ARRAY = "__numpy_array__"
_SPARSE = "__scipy_sparse__"


def encode_other_parameter(value: Any) -> Any:
    """Model extras (numpy arrays, scipy sparse matrices: ItemKNN, EASE ...) as tensors and plain data."""
    if isinstance(value, np.ndarray):
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(value))}
    if sp.issparse(value):
        csr = sp.csr_matrix(value)
        return {
            _SPARSE: value.format,
            "data": torch.from_numpy(csr.data),
            "indices": torch.from_numpy(csr.indices),
            "indptr": torch.from_numpy(csr.indptr),
            "shape": list(csr.shape),
        }
    if isinstance(value, dict):
        return {k: encode_other_parameter(v) for k, v in value.items()}
    return to_plain(value)


def decode_other_parameter(value: Any) -> Any:
    """Inverse of :func:`encode_other_parameter`."""
    if isinstance(value, dict) and _ARRAY in value:
        return value[_ARRAY].numpy()
    if isinstance(value, dict) and _SPARSE in value:
        csr = sp.csr_matrix(
            (value["data"].numpy(), value["indices"].numpy(), value["indptr"].numpy()), shape=value["shape"]
        )
        return csr.asformat(value[_SPARSE])
    if isinstance(value, dict):
        return {k: decode_other_parameter(v) for k, v in value.items()}
    return value


def _load_other_parameter(self, para):
    """AbstractRecommender.load_other_parameter, undoing :func:`encode_other_parameter`."""
    for key, value in (para or {}).items():
        setattr(self, key, decode_other_parameter(value))


def _save_checkpoint(self, epoch, verbose=True, **kwargs):
    """Trainer._save_checkpoint writing only plain data, so torch>=2.6 loads it with weights_only=True,
    atomically and hashed (:func:`save_checkpoint`).

    RecBole pickles its whole Config into the checkpoint; we store it as a plain dict instead
    (``resume_checkpoint`` only reads ``checkpoint['config']['model']``).
    """
    from recbole.utils import set_color

    if not self.config["single_spec"] and self.config["local_rank"] != 0:
        return
    saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
    state = {
        "config": to_plain(self.config),
        # what the run was given (files, dict, command line): enough to rebuild it (recbole_gfm.inference)
        "external_config": to_plain(getattr(self.config, "external_config_dict", {})),
        "epoch": epoch,
        "cur_step": self.cur_step,
        "best_valid_score": to_plain(self.best_valid_score),
        "state_dict": self.model.state_dict(),
        "other_parameter": encode_other_parameter(self.model.other_parameter()),
        "optimizer": self.optimizer.state_dict(),
    }
    save_checkpoint(state, saved_model_file)
    if verbose:
        self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")


CHECKPOINT_ADVICE = "Train the model again, or restore the file and its .sha256 from a copy."


def save_checkpoint(state: dict, path: str) -> None:
    """``torch.save`` plain-data ``state`` to ``path`` atomically, its sha256 in ``<path>.sha256``.

    The checkpoint is replaced before its hash file: a crash between the two leaves a pair that
    fails the check (an error), never a damaged checkpoint that passes it.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)  # default protocol: the weights-only unpickler rejects 4
    data = buffer.getvalue()
    with atomic_write(path) as f:
        f.write(data)
    write_sidecar(path, content_hash(data))


def verify_checkpoint(path: str) -> None:
    """Check a checkpoint against its ``<path>.sha256`` before anything unpickles it.

    Raises :class:`~recbole_gfm.artifacts.CorruptArtifactError` naming the file and what to do when
    the file was changed or truncated, or has no hash file; ``FileNotFoundError`` when it is missing.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    verify_sidecar(path, CHECKPOINT_ADVICE)


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint the plugin wrote, checked (:func:`verify_checkpoint`), then loaded weights-only."""
    verify_checkpoint(path)
    return torch.load(path, map_location=map_location, weights_only=True)


def _evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
    """Trainer.evaluate, the checkpoint it is asked to load checked first."""
    if eval_data and load_best_model:
        verify_checkpoint(model_file or self.saved_model_file)
    return _recbole_evaluate(self, eval_data, load_best_model, model_file, show_progress)


def _resume_checkpoint(self, resume_file):
    """Trainer.resume_checkpoint, the checkpoint checked first."""
    verify_checkpoint(str(resume_file))
    return _recbole_resume_checkpoint(self, resume_file)


def _pop_miscounts() -> bool:
    """True when ``Pop.calculate_loss`` counts a batch wrongly: two rows of one item, one negative.

    RecBole 1.2.1's ``item_cnt[item] = item_cnt[item] + 1`` counts the repeated item once and the
    negative (label 0) too. A version that counts correctly, or elsewhere (no-op), is left alone.
    """
    from recbole.model.general_recommender import Pop

    probe = SimpleNamespace(ITEM_ID="item", LABEL="label", device="cpu", item_cnt=torch.zeros(3, 1, dtype=torch.long))
    Pop.calculate_loss(probe, {"item": torch.tensor([1, 1, 2]), "label": torch.tensor([1.0, 1.0, 0.0])})
    return probe.item_cnt.view(-1).tolist() not in ([0, 2, 0], [0, 0, 0])


def train_item_counts(dataset) -> torch.Tensor:
    """(n_items,) number of positive interactions of each item in ``dataset`` (a train split).

    Every row counts once; rows labelled 0 (RecBole's ``threshold`` keeps them with label 0) do not.
    """
    items = dataset.inter_feat[dataset.iid_field]
    label = dataset.config["LABEL_FIELD"]
    if label in dataset.inter_feat:
        items = items[dataset.inter_feat[label] > 0]
    return torch.bincount(items.long(), minlength=dataset.item_num)


def _pop_init(self, config, dataset) -> None:
    """Pop.__init__, then the counts of every positive train interaction (``dataset`` is the train split).

    RecBole trains Pop (``ModelType.TRADITIONAL``) with one pass of the TraditionalTrainer over
    the train loader, counting in ``calculate_loss``: counting the split once here gives the same
    numbers every batch size, seed and sampler would give if counting were right, and makes the
    model usable before any training. ``predict`` / ``full_sort_predict`` are RecBole's:
    ``item_cnt / max_cnt``.
    """
    _recbole_pop_init(self, config, dataset)
    self.item_cnt = train_item_counts(dataset).view(-1, 1).to(self.device)
    self.max_cnt = torch.max(self.item_cnt, dim=0)[0]


def _pop_calculate_loss(self, interaction) -> torch.Tensor:
    """Nothing left to learn (counted in the constructor): RecBole's constant loss, no count."""
    return torch.nn.Parameter(torch.zeros(1)).to(self.device)


_recbole_pop_init = _recbole_evaluate = _recbole_resume_checkpoint = None


def apply() -> None:
    """Apply every fix that this environment still needs (idempotent)."""
    global _done, _recbole_pop_init, _recbole_evaluate, _recbole_resume_checkpoint
    if _done:
        return
    from recbole.config import Config
    from recbole.trainer import Trainer

    if _numpy_aliases_needed():
        Config.compatibility_settings = _compatibility_settings
        _compatibility_settings(None)  # RecBole modules may use the aliases before any Config exists
        APPLIED.append("numpy2-aliases")
    if _dok_update_needed():
        sp.dok_matrix._update = _dok_update
        APPLIED.append("scipy-dok-update")
    # Deprecation notices from inside RecBole (torch.sparse.FloatTensor, torch.cuda.amp) that a
    # user cannot act on; our own code's warnings stay visible.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")
    warnings.filterwarnings("ignore", message=r".*torch\.sparse\.SparseTensor", category=UserWarning)
    # recbole/model/sequential_recommender/sine.py switches torch's anomaly detection on when it is
    # imported (and Config imports every model): it halves training speed for every model.
    import recbole.model.sequential_recommender  # noqa: F401

    if torch.is_anomaly_enabled():
        torch.autograd.set_detect_anomaly(False)
        APPLIED.append("sine-anomaly-detection-off")
    if _weights_only_default():
        from recbole.model.abstract_recommender import AbstractRecommender

        Trainer._save_checkpoint = _save_checkpoint
        AbstractRecommender.load_other_parameter = _load_other_parameter
        APPLIED.append("torch-weights-only-checkpoint")
    if Trainer._save_checkpoint is _save_checkpoint:  # the plugin writes hashed checkpoints: check them on load
        _recbole_evaluate, _recbole_resume_checkpoint = Trainer.evaluate, Trainer.resume_checkpoint
        Trainer.evaluate, Trainer.resume_checkpoint = _evaluate, _resume_checkpoint
        APPLIED.append("checkpoint-sha256")
    if _pop_miscounts():
        from recbole.model.general_recommender import Pop

        _recbole_pop_init = Pop.__init__
        Pop.__init__ = _pop_init
        Pop.calculate_loss = _pop_calculate_loss
        APPLIED.append("pop-counts-train-interactions")
    _done = True
