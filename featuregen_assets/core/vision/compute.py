"""Where and in which precision models run: device, dtype, batching and loader settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

from featuregen_assets.core.runtime.processes import usable_cpus
from featuregen_assets.core.vision.settings import ComputeSettings

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(settings: ComputeSettings) -> torch.device:
    """The torch device the settings ask for; raises if a GPU is asked for and there is none."""
    name = settings.device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(
            f"unsupported device {settings.device!r} (auto, cpu, cuda or cuda:N)"
        ) from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {settings.device!r} asked for, but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {settings.device!r}: only {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {settings.device!r} (auto, cpu, cuda or cuda:N)")
    return device


def resolve_dtype(settings: ComputeSettings, device: torch.device) -> torch.dtype:
    """The parameter dtype: explicit, or bfloat16 on a bf16-capable GPU and float32 elsewhere."""
    name = settings.dtype.strip().lower()
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in _DTYPES:
        raise ValueError(f"unsupported dtype {settings.dtype!r} (auto, {', '.join(_DTYPES)})")
    return _DTYPES[name]


def place(settings: ComputeSettings) -> tuple[torch.device, torch.dtype]:
    """The device and parameter dtype a model runs in (`resolve_device`, `resolve_dtype`); on
    the CPU, torch first gets `cpu_threads(settings)` threads."""
    device = resolve_device(settings)
    if device.type == "cpu":
        configure_cpu_threads(settings)
    return device, resolve_dtype(settings, device)


def load_pretrained(model_class, name_or_path: str, settings: ComputeSettings, device, dtype):
    """``model_class.from_pretrained`` in `dtype` with the settings' attention, in eval mode on
    `device`."""
    model = model_class.from_pretrained(
        name_or_path, dtype=dtype, attn_implementation=settings.attn_implementation
    )
    return model.eval().to(device)


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """Autocast to ``dtype`` on a GPU with reduced precision; a no-op otherwise."""
    if device.type == "cuda" and dtype != torch.float32:
        return torch.autocast("cuda", dtype=dtype)
    return nullcontext()


def cpu_threads(settings: ComputeSettings) -> int:
    """torch's intra-op threads for a model on the CPU: as set, else one per CPU this process
    may use."""
    if settings.torch_threads is not None:
        return max(1, settings.torch_threads)
    return max(1, usable_cpus())


def configure_cpu_threads(settings: ComputeSettings) -> int:
    """Give torch `cpu_threads(settings)` intra-op threads; returns the count."""
    torch.set_num_threads(cpu_threads(settings))
    return torch.get_num_threads()


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `count` (None: left alone) inside, restored after."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def loader_workers(settings: ComputeSettings, device: torch.device) -> int:
    """Data-loader worker processes: as set, else all CPUs but two on a GPU (one for the
    main process, one for PostgreSQL's COPY) and 2 on the CPU, where the model needs them."""
    if settings.num_workers is not None:
        return max(0, settings.num_workers)
    return max(2, usable_cpus() - 2) if device.type == "cuda" else 2


def loader_worker_init(_worker_id: int) -> None:
    """DataLoader worker init: one torch thread per worker so workers don't oversubscribe."""
    torch.set_num_threads(1)


def free_memory(device: torch.device) -> None:
    """Return cached GPU memory to the driver after a model is dropped."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
