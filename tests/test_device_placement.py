"""Every tensor a model step creates is on the model's device; CPU and CUDA give the same numbers.

No GPU here, so the CPU check makes any tensor created without an explicit device visible: the
steps run with torch's default device set to ``meta``, and every op's outputs are recorded. A
tensor that lands on ``meta`` was created without a device and would sit on the CPU in a CUDA run.
"""

from __future__ import annotations

import pytest
import torch
from recbole.utils import init_seed
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from conftest import typed_overrides
from recbole_gfm.config import Config
from recbole_gfm.model.gfm import GFM
from recbole_gfm.model.hgnn import HGNN
from recbole_gfm.registry import training_data
from recbole_gfm.run.inputs import build_with_inputs, prepare_foundation
from recbole_gfm.run.stages import prepare_data


class DeviceRecorder(TorchDispatchMode):
    """Records (op, device) of every tensor any op returns."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, torch.device]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.seen.append((str(func), value.device))
        return out


def off_device(step, device: torch.device) -> list[str]:
    recorder = DeviceRecorder()
    with torch.device("meta"), recorder:
        step()
    return sorted({op for op, where in recorder.seen if where.type != device.type})


def setup(typed: dict, model: str, device: str = "cpu", **settings):
    config = Config(model, typed["dataset"], config_dict=typed_overrides(typed, use_gpu=device != "cpu", **settings))
    init_seed(config["seed"], config["reproducibility"])
    split = prepare_data(config)
    model_obj = build_with_inputs(config, split, prepare_foundation(config, split))
    batch = next(iter(training_data(config, split.train_data, graph=getattr(model_obj, "graph", None)))).to(config["device"])
    return config, model_obj, batch


def steps(model, batch):
    users = {"user_id": torch.arange(1, 5, device=model.device)}
    return {
        "train step": lambda: model.calculate_loss(batch).backward(),
        "item vectors": lambda: model.eval() and model.full_sort_predict(users),
    }


@pytest.mark.parametrize("name", ["HGNN", "GFM"])
def test_no_step_creates_a_tensor_off_the_models_device(typed_slice, workdir, name):
    _, model, batch = setup(typed_slice, name)
    for step, run in steps(model, batch).items():
        model.train()
        assert off_device(run, model.device) == [], f"{name} {step} creates tensors without a device"


def test_the_check_catches_a_tensor_created_without_a_device():
    assert off_device(lambda: torch.arange(3) + 1, torch.device("cpu")) != []
    assert off_device(lambda: torch.arange(3, device="cpu") + 1, torch.device("cpu")) == []


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", [HGNN, GFM], ids=["HGNN", "GFM"])
def test_cpu_and_cuda_give_the_same_loss_and_scores(typed_slice, workdir, name):
    results = {}
    for device in ("cpu", "cuda"):
        _, model, batch = setup(typed_slice, name.__name__, device)
        torch.manual_seed(0)
        model.eval()  # no dropout: the loss is a function of the weights and the batch
        loss = model.calculate_loss(batch).item() if name is HGNN else None
        scores = model.full_sort_predict({"user_id": torch.arange(1, 5, device=model.device)}).cpu()
        results[device] = (loss, scores)
    assert results["cpu"][0] == pytest.approx(results["cuda"][0], rel=1e-4, abs=1e-6) if results["cpu"][0] is not None else True
    assert torch.allclose(results["cpu"][1], results["cuda"][1], atol=1e-4)
