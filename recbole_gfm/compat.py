"""Every fix RecBole 1.2.1 needs on today's numpy / scipy / torch, in one place.

Applied once when :mod:`recbole_gfm` is imported. Each fix checks that it is still needed (so a
future RecBole release that mends the problem is left alone) and records its name in
:data:`APPLIED`, which the tests read. pandas 3 is not patched but excluded by the requirement
``pandas<3``: under copy-on-write RecBole's chained ``fillna(inplace=True)`` silently does
nothing, and the places it happens are in the middle of long loader methods.

Checkpoints: RecBole's ``Trainer._save_checkpoint`` writes plain data (torch >= 2.6 loads it with
``weights_only=True``) atomically, with its sha256 in a sidecar ``<file>.sha256``
(:mod:`recbole_gfm.checkpoint`), and ``Trainer.evaluate(load_best_model=True)`` /
``resume_checkpoint`` check that hash before ``torch.load`` reads the file. On torch < 2.6
RecBole's own writer is kept, and its checkpoints unchecked.

Scores a loader gives itself: ``Trainer._full_sort_batch_eval`` overwrites the rows a batch flags
with the scores it carries (the temporal protocol's popularity fallback for sequential models,
:class:`recbole_gfm.data.protocol.FallbackBatch`); other batches pass through untouched.

Multi-process runs (RecBole's ``nproc`` / ``world_size`` / ``ip`` / ``port`` / ``offset``; the plugin's
launcher is :func:`recbole_gfm.quick_start.run`): RecBole 1.2.1 asks for nccl and ``cuda:local_rank``
whatever the device, passes ``device_ids`` to DistributedDataParallel (CUDA only), shards its
evaluation loaders with a DistributedSampler that pads them with duplicated users and averages the
ranks' metrics weighted by those padded counts (wrong metrics: RecBole PR #1872, never merged).
:func:`_init_device`, :func:`_trainer_init`, :func:`_loader_init` and :func:`_evaluate_on_rank0` fix
that: gloo on the CPU and nccl on CUDA, and evaluation exact by construction. Evaluation loaders
are never sharded and global rank 0 evaluates the whole split, exactly as one process would
(same batches, same code), while the other ranks wait for its result, so every rank takes the same
early-stopping decision. Training loaders keep RecBole's DistributedSampler.

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

import inspect
import os
import warnings
from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist

from recbole_gfm.checkpoint import decode_other_parameter, encode_other_parameter, save_checkpoint, to_plain, verify_checkpoint

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

    if not is_leader(self.config):  # RecBole: local rank 0, i.e. once per machine
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


def _evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
    """Trainer.evaluate, the checkpoint it is asked to load checked first."""
    if eval_data and load_best_model:
        verify_checkpoint(model_file or self.saved_model_file)
    return _recbole_evaluate(self, eval_data, load_best_model, model_file, show_progress)


def _resume_checkpoint(self, resume_file):
    """Trainer.resume_checkpoint, the checkpoint checked first."""
    verify_checkpoint(str(resume_file))
    return _recbole_resume_checkpoint(self, resume_file)


def _full_sort_batch_eval(self, batched_data):
    """``Trainer._full_sort_batch_eval``, then the scores a batch gives for the rows it flags.

    A loader may score some of its rows itself (``fallback_rows``, ``fallback_scores``: the
    temporal protocol's sequential loader scores the users without history by popularity,
    :class:`recbole_gfm.data.protocol.FallbackBatch`); every other batch passes through untouched.
    """
    interaction, scores, positive_u, positive_i = _recbole_full_sort_batch_eval(self, batched_data)
    rows = getattr(batched_data, "fallback_rows", None)
    if rows is not None and bool(rows.any()):
        scores[rows.to(scores.device)] = batched_data.fallback_scores.to(scores.device, scores.dtype)
    return interaction, scores, positive_u, positive_i


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


# --- multi-process runs -----------------------------------------------------------------------

# The longest the other ranks wait for work global rank 0 does alone (preparing a foundation,
# evaluating): far beyond torch's 30-minute default. A rank that dies is caught sooner: the
# launcher (torch.multiprocessing.spawn) stops the others when one fails.
RANK0_WORK_TIMEOUT = timedelta(hours=24)
_control_group = None  # gloo group with that timeout, made with the default group


def is_leader(config) -> bool:
    """True in a one-process run and in global rank 0 of a multi-process run: the rank that writes."""
    return config["single_spec"] or not dist.is_initialized() or dist.get_rank() == 0


def wait_for_rank0() -> None:
    """A barrier of every rank that may wait :data:`RANK0_WORK_TIMEOUT` (rank 0 may be working alone)."""
    dist.barrier(group=_control_group)


def from_rank0(value: Any) -> Any:
    """``value`` as global rank 0 has it, on every rank (pickled; waits up to :data:`RANK0_WORK_TIMEOUT`)."""
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control_group)
    return box[0]


def _nccl_hard_coded() -> bool:
    """True when RecBole's ``Config._init_device`` asks for nccl whatever the device (1.2.1 does)."""
    from recbole.config import Config

    return 'backend="nccl"' in inspect.getsource(Config._init_device)


def _init_device(self) -> None:
    """``Config._init_device``; for a rank of a multi-process run (``local_rank`` set) gloo on the CPU.

    RecBole 1.2.1 always initialises nccl on ``cuda:local_rank`` (CUDA only), behind an assert. Here
    the backend follows the device: nccl and ``cuda:local_rank`` when ``use_gpu`` and CUDA are there,
    gloo and the CPU otherwise. The process group is made once per process (the run's other Configs,
    e.g. its foundation's, find it made), with a gloo group of long timeout for waiting on rank 0.
    The process's rank is ``local_rank + offset``; ranks other than 0 log only errors, as in RecBole.
    """
    global _control_group
    final = self.final_config_dict
    if "local_rank" not in final:
        return _recbole_init_device(self)
    gpu_id = final["gpu_id"]
    gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
    final["gpu_id"] = gpu_id
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
    local_rank, offset = int(final["local_rank"]), int(final["offset"] or 0)
    cuda = bool(final["use_gpu"]) and len(gpu_id) > 0 and torch.cuda.is_available()
    if cuda and local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"local_rank {local_rank} has no GPU: gpu_id '{gpu_id}' shows {torch.cuda.device_count()} device(s); "
            "give one GPU per process (gpu_id: 0,1,...) or run on the CPU (use_gpu: False)."
        )
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            init_method=f"tcp://{final['ip'] or 'localhost'}:{final['port'] or 5678}",  # RecBole run()'s defaults
            rank=local_rank + offset,
            world_size=int(final["world_size"]),
        )
        _control_group = dist.new_group(backend="gloo", timeout=RANK0_WORK_TIMEOUT)
    final["device"] = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    final["single_spec"] = False
    if cuda:
        torch.cuda.set_device(local_rank)
    if dist.get_rank() != 0:
        final.update(state="error", show_progress=False, verbose=False)


def _trainer_init(self, config, model) -> None:
    """``AbstractTrainer.__init__`` that also runs on the CPU.

    RecBole 1.2.1 wraps the model in DistributedDataParallel with ``device_ids=[local_rank]`` and
    SyncBatchNorm, both CUDA only: on the CPU neither is used (BatchNorm layers then normalise by
    their rank's batch). Buffers are never broadcast (``broadcast_buffers=False``): the trainer runs
    DDP's forward once per batch only to arm the gradient all-reduce (``set_reduce_hook``), and the
    buffers (GFM's content table, HGNN's sparse history, which gloo cannot broadcast) are built from
    the train split, identical on every rank, so a broadcast would copy them for nothing.
    """
    from torch.nn.parallel import DistributedDataParallel

    self.config = config
    self.model = model
    if not config["single_spec"]:
        cuda = torch.device(config["device"]).type == "cuda"
        if cuda:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [config["local_rank"]] if cuda else None
        if "init_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
            self.distributed_model = DistributedDataParallel(
                self.model, device_ids=device_ids, forward_sync_buffers=False, init_sync_buffers=False
            )
        else:  # torch's advice until init_sync_buffers exists (forward_sync_buffers=False still syncs at wrapping)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*broadcast_buffers.*is deprecated", category=FutureWarning)
                self.distributed_model = DistributedDataParallel(self.model, device_ids=device_ids, broadcast_buffers=False)


def _ddp_device_ids_cuda_only() -> bool:
    """True when RecBole's ``AbstractTrainer.__init__`` passes ``device_ids`` whatever the device (1.2.1 does)."""
    from recbole.trainer.trainer import AbstractTrainer

    return 'device_ids=[config["local_rank"]]' in inspect.getsource(AbstractTrainer.__init__)


def _eval_loader_classes() -> tuple[type, ...]:
    from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader

    return FullSortEvalDataLoader, NegSampleEvalDataLoader


@contextmanager
def one_process(config):
    """RecBole's code inside the block sees a one-process run (``single_spec``), whatever the run is."""
    single = config["single_spec"]
    config["single_spec"] = True
    try:
        yield
    finally:
        config["single_spec"] = single


def _loader_init(self, config, dataset, sampler, shuffle=False) -> None:
    """``AbstractDataLoader.__init__`` that never shards an evaluation loader (rank 0 evaluates it whole)."""
    if config["single_spec"] or not isinstance(self, _eval_loader_classes()):
        return _recbole_loader_init(self, config, dataset, sampler, shuffle)
    with one_process(config):
        _recbole_loader_init(self, config, dataset, sampler, shuffle)


def _eval_loaders_padded() -> bool:
    """True when RecBole shards every loader of a multi-process run with a padding DistributedSampler."""
    from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader

    return "DistributedSampler" in inspect.getsource(AbstractDataLoader.__init__)


def _evaluate_on_rank0(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
    """``Trainer.evaluate``; in a multi-process run global rank 0 evaluates and every rank gets its result.

    Rank 0 runs RecBole's own evaluation on the unsharded loader, as one process (no ``_map_reduce``
    of per-rank averages), so a checkpoint gets the same metrics from 1 or N processes; the other
    ranks neither load the checkpoint nor score anything.
    """
    if self.config["single_spec"] or not eval_data:
        return _evaluate_before_rank0(self, eval_data, load_best_model, model_file, show_progress)
    result = None
    if dist.get_rank() == 0:
        with one_process(self.config):
            result = _evaluate_before_rank0(self, eval_data, load_best_model, model_file, show_progress)
    return from_rank0(result)


class _NoTensorboard:
    """What ranks other than 0 get instead of a SummaryWriter: every call does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _get_tensorboard(logger):
    """RecBole's ``get_tensorboard`` for rank 0 (and one-process runs) only: one event folder per run."""
    if dist.is_initialized() and dist.get_rank() != 0:
        return _NoTensorboard()
    return _recbole_get_tensorboard(logger)


_recbole_pop_init = _recbole_evaluate = _recbole_resume_checkpoint = None
_recbole_init_device = _recbole_loader_init = _evaluate_before_rank0 = _recbole_get_tensorboard = None
_recbole_full_sort_batch_eval = None


def apply() -> None:
    """Apply every fix that this environment still needs (idempotent)."""
    global _done, _recbole_pop_init, _recbole_evaluate, _recbole_resume_checkpoint
    global _recbole_init_device, _recbole_loader_init, _evaluate_before_rank0, _recbole_get_tensorboard
    global _recbole_full_sort_batch_eval
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
    if _nccl_hard_coded():
        _recbole_init_device, Config._init_device = Config._init_device, _init_device
        APPLIED.append("distributed-backend-by-device")
    if _ddp_device_ids_cuda_only():
        import recbole.trainer.trainer as recbole_trainer
        from recbole.trainer.trainer import AbstractTrainer

        AbstractTrainer.__init__ = _trainer_init
        _recbole_get_tensorboard, recbole_trainer.get_tensorboard = recbole_trainer.get_tensorboard, _get_tensorboard
        APPLIED.append("distributed-trainer")
    if _eval_loaders_padded():
        from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader

        _recbole_loader_init, AbstractDataLoader.__init__ = AbstractDataLoader.__init__, _loader_init
        _evaluate_before_rank0, Trainer.evaluate = Trainer.evaluate, _evaluate_on_rank0
        APPLIED.append("distributed-evaluation-exact")
    _recbole_full_sort_batch_eval, Trainer._full_sort_batch_eval = Trainer._full_sort_batch_eval, _full_sort_batch_eval
    APPLIED.append("loader-scored-rows")
    if _pop_miscounts():
        from recbole.model.general_recommender import Pop

        _recbole_pop_init = Pop.__init__
        Pop.__init__ = _pop_init
        Pop.calculate_loss = _pop_calculate_loss
        APPLIED.append("pop-counts-train-interactions")
    _done = True
