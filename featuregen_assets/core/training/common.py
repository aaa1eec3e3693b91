"""What the two trainings (text encoder, decoder) share: device, precision, schedule, the
epoch loop with early stopping and best weights, files."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from featuregen_assets.core.vision.compute import ComputeSettings, autocast, resolve_device


def training_device(device: str) -> torch.device:
    """The device a training config names (`auto`, `cpu`, `cuda`, `cuda:N`)."""
    return resolve_device(ComputeSettings(device=device))


def mixed_precision(device: torch.device, enabled: bool) -> AbstractContextManager:
    """bfloat16 autocast on a GPU when `enabled`; a no-op on the CPU."""
    return autocast(device, torch.bfloat16 if enabled else torch.float32)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LambdaLR factor: linear warm-up over `warmup_steps`, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


class ScheduleConfig(Protocol):
    """The fields of a training config that set its optimiser and schedule."""

    epochs: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    max_steps: int | None


def optimiser_and_schedule(
    params: Iterable[nn.Parameter], config: ScheduleConfig, steps_per_epoch: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR, int]:
    """AdamW and its warm-up + cosine schedule over the run's optimiser steps (every epoch,
    capped by ``max_steps``); also returns that number of steps."""
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total, max(1, round(config.warmup_ratio * total)))
    )
    return optimizer, scheduler, total


def optimiser_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> float:
    """One step on ``loss``: backward, update, advance the schedule; returns the loss value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


def time_left(started: float, step: int, total: int) -> str:
    """`about H:MM:SS left` of a run at optimiser `step` of `total` begun at `started`
    (`time.perf_counter()`), at its pace so far."""
    elapsed = time.perf_counter() - started
    seconds = round((total - step) * elapsed / step) if step else 0
    return f"about {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d} left"


def save_model_dir(
    module: nn.Module, directory: str | Path, config: dict, metrics: dict | None
) -> Path:
    """Write model.safetensors, config.json and (when given) metrics.json into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(module, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config, indent=2, default=str))
    if metrics is not None:
        (directory / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return directory


def read_model_config(directory: str | Path, expected_format: str) -> dict:
    """config.json of a saved model directory, checked to be of `expected_format`."""
    config = json.loads((Path(directory) / "config.json").read_text())
    if config.get("format") != expected_format:
        raise ValueError(f"{directory} holds no {expected_format} model")
    return config


def load_weights(module: nn.Module, directory: str | Path, device: str) -> nn.Module:
    """Load model.safetensors into `module`; return it on `device` in eval mode."""
    load_model(module, str(Path(directory) / "model.safetensors"), device=device)
    return module.to(device).eval()


class BestWeights:
    """The best validation score offered so far (higher is better), its epoch, the evaluations
    since, and (when `keep`) a copy of its weights on their device. A score beats the best only
    by more than `min_delta`: smaller gains count as stale evaluations."""

    def __init__(self, keep: bool = True, min_delta: float = 0.0) -> None:
        self.keep, self.min_delta = keep, min_delta
        self.value, self.epoch = -math.inf, 0
        self.stale = 0  # evaluations since the best one
        self.state: dict[str, torch.Tensor] | None = None

    def offer(self, value: float, epoch: int, model: nn.Module) -> None:
        if value > self.value + self.min_delta:
            self.value, self.epoch, self.stale = value, epoch, 0
            if self.keep:
                self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.stale += 1


class LoopConfig(ScheduleConfig, Protocol):
    """The fields of a training config that the epoch loop reads."""

    batch_size: int
    patience: int | None


@dataclass(frozen=True)
class EpochHooks:
    """What a training's epoch loop does besides stepping the optimiser."""

    # A batch of training rows (on the device) -> its loss.
    batch_loss: Callable[[torch.Tensor], torch.Tensor]
    # After an epoch (its number, mean loss, learning rate): validate, offering the figure to
    # the loop's `BestWeights`; returns the epoch line's figures.
    end_epoch: Callable[[int, float, float], str]
    # Why the loop stopped early, after "stopping at epoch N: ".
    stopped: Callable[[BestWeights], str]
    # The kept weights' figure, in "kept epoch N's weights (...)".
    kept: Callable[[BestWeights], str]


@dataclass
class Fit:
    """What the epoch loop leaves: each epoch's mean loss, the best validation weights, counts."""

    loss_curve: list[float]
    best: BestWeights
    steps: int
    samples: int
    seconds: float


def fit_epochs(
    model: nn.Module,
    params: Iterable[nn.Parameter],
    rows: torch.Tensor,
    config: LoopConfig,
    hooks: EpochHooks,
    *,
    best: BestWeights,
    generator: torch.Generator,
    device: torch.device,
    log: Callable[[str], None],
) -> Fit:
    """Train `model` on the training `rows`, shuffled by `generator` each epoch, in batches of
    the config's size, until the epochs or steps run out or validation stops improving
    (`patience` evaluations without a better `best`); the best validation weights restored."""
    optimizer, scheduler, total = optimiser_and_schedule(
        params, config, math.ceil(len(rows) / config.batch_size)
    )
    loss_curve: list[float] = []
    step, samples, started = 0, 0, time.perf_counter()
    model.train()
    for epoch in range(1, config.epochs + 1):
        order = rows[torch.randperm(len(rows), generator=generator)]
        losses = []
        for start in range(0, len(order), config.batch_size):
            if step >= total:
                break
            batch = order[start : start + config.batch_size].to(device)
            losses.append(optimiser_step(hooks.batch_loss(batch), optimizer, scheduler))
            step += 1
            samples += len(batch)
        if not losses:
            break
        loss_curve.append(float(np.mean(losses)))
        figures = hooks.end_epoch(epoch, loss_curve[-1], scheduler.get_last_lr()[0])
        log(f"epoch {epoch}/{config.epochs}: {figures}, {time_left(started, step, total)}")
        if config.patience and best.stale >= config.patience:
            log(f"stopping at epoch {epoch}: {hooks.stopped(best)}")
            break
    seconds = time.perf_counter() - started
    if best.state is not None:
        model.load_state_dict(best.state)
        log(f"kept epoch {best.epoch}'s weights ({hooks.kept(best)})")
    return Fit(loss_curve, best, step, samples, seconds)
