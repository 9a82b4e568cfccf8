"""Devices are chosen with RecBole's use_gpu / gpu_id; a CUDA request without CUDA is one clear line."""

from __future__ import annotations

import logging

import pytest
import torch

from recbole_gfm import cli
from recbole_gfm.config import Config, ConfigError

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")


@pytest.fixture
def visible_devices(monkeypatch):
    """RecBole's Config sets CUDA_VISIBLE_DEVICES from gpu_id: restore it after the test."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def test_default_runs_on_the_cpu_and_the_text_encoder_follows(visible_devices):
    config = Config("BPR", "ml-100k")
    assert config["use_gpu"] is True  # RecBole's default: a preference, not a request
    assert config["device"] == torch.device("cpu") and config["text_device"] == "cpu"


@pytest.mark.parametrize(
    "overrides, key, fix",
    [
        ({"use_gpu": "True"}, "use_gpu=True", "--use_gpu=False"),
        ({"gpu_id": "1"}, "gpu_id=1", "--use_gpu=False"),
        ({"device": "cuda"}, "device=cuda", "--device=cpu"),
        ({"device": "cuda:1"}, "device=cuda:1", "--device=cpu"),
        ({"text_device": "cuda"}, "text_device=cuda", "set text_device to cpu"),
        ({"use_gpu": "False", "text_device": "cuda:0"}, "text_device=cuda:0", "set text_device to cpu"),
    ],
)
def test_a_cuda_request_without_cuda_is_one_line(visible_devices, overrides, key, fix):
    with pytest.raises(ConfigError) as err:
        Config("BPR", "ml-100k", cmd_overrides=overrides)
    message = str(err.value)
    assert message.startswith("CUDA is not available on this machine") and "\n" not in message
    assert f"but {key} asks for it" in message and fix in message


def test_cli_prints_the_cuda_error_as_one_line(visible_devices, capsys):
    assert cli.main(["--model=Pop", "--dataset=ml-100k", "--use_gpu=True"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CUDA is not available on this machine") and err.count("\n") == 1


def test_cpu_requests(visible_devices, caplog):
    with caplog.at_level(logging.WARNING):
        by_device = Config("BPR", "ml-100k", cmd_overrides={"device": "cpu"})
    assert by_device["use_gpu"] is False and by_device["device"] == torch.device("cpu")
    assert "'device'" not in caplog.text  # a known key, not "unused"
    by_recbole_keys = Config("BPR", "ml-100k", cmd_overrides={"use_gpu": "False", "gpu_id": "1"})
    assert by_recbole_keys["device"] == torch.device("cpu") and by_recbole_keys["text_device"] == "cpu"


def test_bad_device_values_name_the_key(visible_devices):
    with pytest.raises(ConfigError, match="command line: 'device' is not a device torch knows, got 'tpu0'. Set 'device' to cpu, cuda or cuda:N"):
        Config("BPR", "ml-100k", cmd_overrides={"device": "tpu0"})
    with pytest.raises(ConfigError, match="command line: 'text_device' is not a device torch knows, got 'gpu'"):
        Config("BPR", "ml-100k", cmd_overrides={"text_device": "gpu"})
    with pytest.raises(ConfigError, match="device and use_gpu are both set"):
        Config("BPR", "ml-100k", cmd_overrides={"device": "cpu", "use_gpu": "True"})


def test_with_cuda_device_maps_to_gpu_id_and_use_gpu_false_means_cpu(visible_devices, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = Config("BPR", "ml-100k", cmd_overrides={"device": "cuda:1"})
    assert config["gpu_id"] == "1" and config["use_gpu"] is True
    assert config["device"] == torch.device("cuda") and config["text_device"] == "cuda"
    # RecBole 1.2.1 alone would run this on CUDA: it only looks at gpu_id
    assert Config("BPR", "ml-100k", cmd_overrides={"use_gpu": "False"})["device"] == torch.device("cpu")
