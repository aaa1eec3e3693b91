"""Device and dtype resolution."""

from __future__ import annotations

import pytest
import torch

from featuregen_assets.core.runtime.processes import usable_cpus
from featuregen_assets.core.vision.compute import (
    ComputeSettings,
    configure_cpu_threads,
    loader_workers,
    resolve_device,
    resolve_dtype,
)


def test_cpu_defaults_to_float32():
    device = resolve_device(ComputeSettings(device="cpu"))
    assert device == torch.device("cpu")
    assert resolve_dtype(ComputeSettings(), device) == torch.float32
    assert resolve_dtype(ComputeSettings(dtype="bfloat16"), device) == torch.bfloat16


def test_auto_picks_what_exists():
    device = resolve_device(ComputeSettings())
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_bad_names_are_rejected():
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype(ComputeSettings(dtype="int8"), torch.device("cpu"))
    with pytest.raises(ValueError, match="device"):
        resolve_device(ComputeSettings(device="tpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_an_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device(ComputeSettings(device="cuda:0"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_auto_dtype_is_bf16_where_supported():
    device = resolve_device(ComputeSettings(device="cuda"))
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert resolve_dtype(ComputeSettings(), device) == expected


def test_loader_workers_default_to_the_cpus_a_gpu_step_can_spare():
    cpus = usable_cpus()
    assert loader_workers(ComputeSettings(), torch.device("cpu")) == 2
    assert loader_workers(ComputeSettings(), torch.device("cuda")) == max(2, cpus - 2)
    assert loader_workers(ComputeSettings(num_workers=0), torch.device("cuda")) == 0
    assert loader_workers(ComputeSettings(num_workers=5), torch.device("cpu")) == 5


def test_cpu_threads_are_the_settings_else_one_per_cpu():
    before = torch.get_num_threads()
    try:
        assert configure_cpu_threads(ComputeSettings(torch_threads=1)) == 1
        assert torch.get_num_threads() == 1
        assert configure_cpu_threads(ComputeSettings()) == usable_cpus()
    finally:
        torch.set_num_threads(before)
