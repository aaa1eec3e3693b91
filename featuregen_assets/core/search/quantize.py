"""Int8 query encoding on the CPU: the text encoder's linear layers with int8 weights.

Encoding one short query reads every weight once (CLIP-B/32's text tower: 150 MB in float32),
so on a CPU it is bound by memory, not arithmetic. PyTorch's dynamic quantization stores the
linear layers' weights in int8 (per-channel, quantizing activations per call) and runs them on
fbgemm: `benchmarks/search.py` measures the gain and how much the ranking moves.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def with_int8_linear_layers(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for CPU inference whose `nn.Linear` layers run in int8."""
    with warnings.catch_warnings():
        # torch points eager-mode quantization users at torchao, whose CPU path needs
        # torch.compile; this API still runs fbgemm's int8 kernels (torch 2.13 here).
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated")
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor, torch.quantize_per_channel")
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).eval().cpu(),
            {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )
