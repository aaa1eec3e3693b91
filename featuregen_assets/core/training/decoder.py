"""Decode a stored DINOv2 feature vector back into an image.

Why a convolutional upsampling decoder: the stored vector is one global descriptor (CLS, or
CLS with the mean of the patch tokens), not a grid of patch tokens. Decoders that see every
patch token reconstruct almost perfectly (RAE); decoders conditioned on one global vector
give semantically faithful images, not pixel copies (RCDM, RCG). A small deterministic
decoder - a linear map to a 4x4 feature map, then 2x sub-pixel upsampling steps (3x3 conv,
PixelShuffle, GroupNorm, GELU) up to the output size - learns that global-to-image map in
seconds on a CPU (sub-pixel steps are several times faster there than upsample + conv).
It is trained with pixel MSE and judged mainly by feature consistency: re-encode each
reconstruction with the same DINOv2 and check that it lands next to its source vector.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from featuregen_assets.core.training.common import (
    BestWeights,
    EpochHooks,
    Fit,
    fit_epochs,
    load_weights,
    mixed_precision,
    read_model_config,
    save_model_dir,
    training_device,
)
from featuregen_assets.core.training.decoder_metrics import (
    Encode,
    held_out_metrics,
    mean_psnr,
    to_tensor,
)
from featuregen_assets.core.training.splits import DEFAULT_SALT, held_out_mask, held_out_score
from featuregen_assets.core.vision.preprocess import open_rgb, to_rgb

FORMAT = "featuregen-feature-decoder/1"


@dataclass(frozen=True)
class DecoderConfig:
    """How to train the decoder. Reproducible from these fields alone.

    image_size: output side in pixels (a power of two >= 8); base_channels: channels at the
    output resolution, doubled per lower level up to max_channels; convs_per_level: 3x3
    convolutions per 2x upsampling step (the first one upsamples). Inputs are standardised with
    the train mean/std (stored in the model). max_steps caps optimiser steps (tests, benchmarks).
    held_out_fraction / validation_fraction: the shares of images (by id score) kept for test
    and validation; test is scored once, at the end. Early stopping reads validation only:
    training stops after `patience` epochs (None or 0: never) without a validation PSNR more
    than `min_delta_db` above the best, and ends with the best epoch's weights (`keep_best`).
    """

    image_size: int = 32
    base_channels: int = 16
    max_channels: int = 128
    convs_per_level: int = 1
    epochs: int = 150
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_ratio: float = 0.05
    seed: int = 0
    held_out_fraction: float = 0.2
    validation_fraction: float = 0.1
    patience: int | None = 10
    min_delta_db: float = 0.05
    keep_best: bool = True
    split_salt: str = DEFAULT_SALT
    device: str = "auto"
    autocast: bool = True
    max_steps: int | None = None
    grid_images: int = 8

    def __post_init__(self) -> None:
        size = self.image_size
        if size < 8 or size & (size - 1):
            raise ValueError(f"image_size must be a power of two >= 8, got {size}")
        if not 0.0 <= self.validation_fraction < 1.0 - self.held_out_fraction:
            raise ValueError(
                f"validation_fraction must be in [0, {1.0 - self.held_out_fraction:g}),"
                f" got {self.validation_fraction}"
            )


class _ImageDecoder(nn.Module):
    """What both decoders share: inputs standardised by `input_mean` / `input_std` (the
    training rows', per channel), images out in [0, 1]."""

    image_size: int

    @torch.no_grad()
    def decode(self, vectors: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Images as uint8 arrays (N, S, S, 3)."""
        device = self.input_std.device
        was_training = self.training
        self.eval()
        out = [
            self(torch.as_tensor(vectors[s : s + batch_size], device=device)).cpu()
            for s in range(0, len(vectors), batch_size)
        ]
        self.train(was_training)
        images = torch.cat(out) if out else torch.zeros(0, 3, self.image_size, self.image_size)
        return (images.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).byte().numpy()


class FeatureDecoder(_ImageDecoder):
    """Feature vector (dim) -> RGB image (3 x S x S) in [0, 1]."""

    def __init__(
        self,
        in_dim: int,
        image_size: int = 32,
        base_channels: int = 16,
        max_channels: int = 128,
        convs_per_level: int = 1,
        training_config: dict | None = None,
    ) -> None:
        super().__init__()
        self.in_dim, self.image_size = in_dim, image_size
        self.shape = {
            "base_channels": base_channels,
            "max_channels": max_channels,
            "convs_per_level": convs_per_level,
        }
        self.training_config = training_config or {}
        levels = int(math.log2(image_size // 4))
        widths = [min(max_channels, base_channels * 2 ** (levels - i)) for i in range(levels + 1)]
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self.stem = nn.Linear(in_dim, widths[0] * 16)
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            # sub-pixel upsampling: a 3x3 conv at the low resolution, then PixelShuffle(2)
            blocks += [
                nn.Conv2d(c_in, 4 * c_out, 3, padding=1),
                nn.PixelShuffle(2),
                nn.GroupNorm(min(8, c_out), c_out),
                nn.GELU(),
            ]
            for _ in range(convs_per_level - 1):
                blocks += [
                    nn.Conv2d(c_out, c_out, 3, padding=1),
                    nn.GroupNorm(min(8, c_out), c_out),
                    nn.GELU(),
                ]
        self.body = nn.Sequential(*blocks, nn.Conv2d(widths[-1], 3, 3, padding=1))
        self.first_width = widths[0]

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        x = (vectors.float() - self.input_mean) / self.input_std
        x = self.stem(x).view(len(x), self.first_width, 4, 4)
        return torch.sigmoid(self.body(x).float())

    def save(self, directory: str | Path, metrics: dict | None = None) -> Path:
        """Write model.safetensors and config.json (+ metrics.json) into `directory`."""
        config = {
            "format": FORMAT,
            "in_dim": self.in_dim,
            "image_size": self.image_size,
            **self.shape,
            "training_config": self.training_config,
        }
        return save_model_dir(self, directory, config, metrics)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> FeatureDecoder:
        """Rebuild a saved decoder."""
        config = read_model_config(directory, FORMAT)
        decoder = cls(
            config["in_dim"],
            config["image_size"],
            config["base_channels"],
            config["max_channels"],
            config["convs_per_level"],
            training_config=config.get("training_config"),
        )
        return load_weights(decoder, directory, device)


class PatchDecoder(_ImageDecoder):
    """Patch-token grid (rows, cols, dim) -> RGB image (3 x S x S) in [0, 1]: the tokens
    already hold the layout, so a 1x1 and a 3x3 convolution at the grid's resolution, a
    bilinear resize to S/2 and one sub-pixel step to S (the RAE idea at this small scale)."""

    def __init__(
        self, dim: int, image_size: int = 32, width: int = 32, training_config: dict | None = None
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.training_config = training_config or {}
        self.register_buffer("input_mean", torch.zeros(dim))
        self.register_buffer("input_std", torch.ones(dim))
        half = width // 2
        self.stem = nn.Sequential(
            nn.Conv2d(dim, width, 1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GroupNorm(8, width),
            nn.GELU(),
        )
        self.body = nn.Sequential(
            nn.Conv2d(width, 4 * half, 3, padding=1),
            nn.PixelShuffle(2),
            nn.GroupNorm(8, half),
            nn.GELU(),
            nn.Conv2d(half, 3, 3, padding=1),
        )

    def forward(self, grids: torch.Tensor) -> torch.Tensor:
        x = ((grids.float() - self.input_mean) / self.input_std).permute(0, 3, 1, 2)
        x = F.interpolate(self.stem(x), size=self.image_size // 2, mode="bilinear")
        return torch.sigmoid(self.body(x).float())


def _new_decoder(shape: tuple[int, ...], config: DecoderConfig) -> _ImageDecoder:
    """A FeatureDecoder for (dim,) vectors, a PatchDecoder for (rows, cols, dim) grids."""
    if len(shape) == 3:
        return PatchDecoder(shape[-1], config.image_size, training_config=asdict(config))
    return FeatureDecoder(
        shape[0],
        config.image_size,
        config.base_channels,
        config.max_channels,
        config.convs_per_level,
        training_config=asdict(config),
    )


@dataclass
class DecoderResult:
    """A trained decoder, held-out metrics, loss curve and an originals/reconstructions grid."""

    decoder: _ImageDecoder
    metrics: dict = field(default_factory=dict)
    loss_curve: list[float] = field(default_factory=list)
    grid: Image.Image | None = None


def square_image(image: Image.Image | str | Path, size: int) -> np.ndarray:
    """Upright RGB, shorter side resized to `size` (bicubic), centre-cropped: (size, size, 3)."""
    image = open_rgb(image) if not isinstance(image, Image.Image) else to_rgb(image)
    scale = size / min(image.size)
    w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((w, h), Image.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


def _as_array(
    images: np.ndarray | Sequence, size: int, log: Callable[[str], None]
) -> tuple[np.ndarray, list[int]]:
    """The images as uint8 (N, size, size, 3), and the rows kept: an image that cannot be read
    or decoded is named in `log` and left out, never failing the training."""
    if isinstance(images, np.ndarray) and images.shape[1:] == (size, size, 3):
        return images.astype(np.uint8), list(range(len(images)))
    arrays, kept = [], []
    for row, image in enumerate(images):
        try:
            arrays.append(
                square_image(
                    Image.fromarray(image) if isinstance(image, np.ndarray) else image, size
                )
            )
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors on a bad file
            log(f"decoder: skipped {image if isinstance(image, str | Path) else row}: {exc}")
            continue
        kept.append(row)
    empty = np.zeros((0, size, size, 3), np.uint8)
    return (np.stack(arrays) if arrays else empty), kept


def comparison_grid(
    originals: np.ndarray, reconstructions: np.ndarray, pad: int = 2, min_tile: int = 64
) -> Image.Image:
    """Originals on the top row, reconstructions beneath (uint8 (N, S, S, 3) each).

    Tiles smaller than `min_tile` are enlarged (nearest neighbour) so the grid is legible.
    """
    n, size = len(originals), originals.shape[1]
    tile = max(size, min_tile)
    grid = Image.new("RGB", (n * (tile + pad) + pad, 2 * (tile + pad) + pad), (255, 255, 255))
    for i in range(n):
        x = pad + i * (tile + pad)
        for row, image in enumerate((originals[i], reconstructions[i])):
            enlarged = Image.fromarray(image).resize((tile, tile), Image.NEAREST)
            grid.paste(enlarged, (x, pad + row * (tile + pad)))
    return grid


def encoder_for(embedder, pooling: str | None = None) -> Encode:
    """PIL images -> vectors with an `embedding.ImageEmbedder` (its own crop/resize + model;
    `pooling` instead of its settings' when given)."""

    def encode(images: list[Image.Image]) -> np.ndarray:
        out = []
        for s in range(0, len(images), 64):
            pixels = np.stack([embedder.transform(im.convert("RGB")) for im in images[s : s + 64]])
            x = embedder.pixels_to_input(torch.from_numpy(pixels))
            out.append(embedder.embed_pixels(x, pooling).float().cpu().numpy())
        return np.concatenate(out)

    return encode


def _split_rows(image_ids: list[str], config: DecoderConfig) -> dict[str, np.ndarray]:
    """Row numbers of the train, validation and test (held-out) images. Test is what
    `held_out_mask` holds out; validation the images scoring next, by `validation_fraction`."""
    held = held_out_mask(image_ids, config.held_out_fraction, config.split_salt)
    cut = config.held_out_fraction + config.validation_fraction
    scores = np.array([held_out_score(i, config.split_salt) for i in image_ids])
    validation = ~held & (scores < cut)
    if not (~held & ~validation).any():  # too few images to spare any: no validation
        validation[:] = False
    return {
        "train": np.flatnonzero(~held & ~validation),
        "validation": np.flatnonzero(validation),
        "test": np.flatnonzero(held),
    }


def _fit(decoder, x_all, y_all, split, config: DecoderConfig, device, log) -> Fit:
    """Train `decoder` on the split's train rows, one validation PSNR an epoch, until the
    epochs or steps run out or validation stops rising (`patience`); the best validation
    epoch's weights restored."""
    validation_rows = split["validation"]
    best = BestWeights(keep=config.keep_best, min_delta=config.min_delta_db)

    def batch_loss(batch: torch.Tensor) -> torch.Tensor:
        with mixed_precision(device, config.autocast):
            return F.mse_loss(decoder(x_all[batch]), y_all[batch])

    def end_epoch(epoch: int, loss: float, lr: float) -> str:
        validation = "no validation images"
        if len(validation_rows):
            value = mean_psnr(decoder, x_all, y_all, validation_rows)
            best.offer(value, epoch, decoder)
            validation = f"validation PSNR {value:.2f} dB"
        return (
            f"mse {loss:.5f} (train PSNR {-10 * math.log10(max(loss, 1e-10)):.2f} dB), {validation}"
        )

    hooks = EpochHooks(
        batch_loss=batch_loss,
        end_epoch=end_epoch,
        stopped=lambda best: (
            f"validation PSNR last rose by more than {config.min_delta_db} dB"
            f" at epoch {best.epoch} ({best.value:.2f} dB)"
        ),
        kept=lambda best: f"validation PSNR {best.value:.2f} dB",
    )
    return fit_epochs(
        decoder,
        decoder.parameters(),
        torch.from_numpy(split["train"]),
        config,
        hooks,
        best=best,
        generator=torch.Generator().manual_seed(config.seed),
        device=device,
        log=log,
    )


def train_decoder(
    vectors: np.ndarray,
    images: np.ndarray | Sequence[str | Path | Image.Image],
    image_ids: Sequence[str],
    config: DecoderConfig,
    *,
    encode: Encode | None = None,
    log: Callable[[str], None] = print,
) -> DecoderResult:
    """Train a FeatureDecoder on (vector, image) rows, one row per image (a PatchDecoder when
    `vectors` are (N, rows, cols, dim) patch-token grids; no `encode` then).

    `images` are file paths, PIL images or a uint8 array (N, H, W, 3). Held-out metrics:
    PSNR/SSIM beside predicting the train mean image, and with `encode` (the same image
    embedder that made `vectors`, PIL images -> vectors) feature consistency: cosine of the
    re-encoded reconstruction to its source vector and top-1 self-retrieval among the held-out
    set, beside chance, the mean image and the downsized original (the resolution ceiling).
    """
    if not (len(vectors) == len(images) == len(image_ids)):
        raise ValueError("vectors, images and image_ids must have one row per image")
    if encode is not None and np.ndim(vectors) != 2:
        raise ValueError("feature consistency (encode) needs vectors, not patch grids")
    device = training_device(config.device)
    vectors = np.asarray(vectors, dtype=np.float32)
    pixels, kept = _as_array(images, config.image_size, log)
    vectors, image_ids = vectors[kept], [image_ids[row] for row in kept]
    split = _split_rows(list(image_ids), config)
    train_rows, validation_rows, test_rows = split["train"], split["validation"], split["test"]

    torch.manual_seed(config.seed)
    decoder = _new_decoder(vectors.shape[1:], config)
    channels = vectors[train_rows].reshape(-1, vectors.shape[-1])
    decoder.input_mean.copy_(torch.from_numpy(channels.mean(0)))
    decoder.input_std.copy_(torch.from_numpy(channels.std(0) + 1e-6))
    decoder.to(device)
    x_all = torch.from_numpy(vectors).to(device)
    y_all = to_tensor(pixels).to(device)

    log(
        f"decoder: {len(vectors)} images ({len(train_rows)} train / {len(validation_rows)}"
        f" validation / {len(test_rows)} held out), "
        f"input {'x'.join(map(str, vectors.shape[1:]))} -> {config.image_size}px, "
        f"{sum(p.numel() for p in decoder.parameters()):,} parameters, device={device}"
    )
    fit = _fit(decoder, x_all, y_all, split, config, device, log)
    loss_curve, best, seconds = fit.loss_curve, fit.best, fit.seconds

    decoder.eval()
    metrics: dict = {
        "train_images": len(train_rows),
        "validation_images": len(validation_rows),
        "held_out_images": len(test_rows),
        "epochs_trained": len(loss_curve),
        "kept_epoch": best.epoch if best.state is not None else len(loss_curve),
        "steps": fit.steps,
        "train_seconds": seconds,
        "samples_per_s": fit.samples / seconds if seconds else 0.0,
        "epoch_losses": loss_curve,
    }
    if len(validation_rows):
        metrics["validation_psnr"] = best.value
    grid = None
    if len(test_rows):
        stats = (decoder.input_mean.cpu().numpy(), decoder.input_std.cpu().numpy())
        figures, recon = held_out_metrics(decoder.decode, vectors, pixels, split, stats, encode)
        metrics.update(figures)
        shown = slice(0, config.grid_images)
        grid = comparison_grid(pixels[test_rows][shown], recon[shown])
        log(
            f"decoder done in {seconds:.1f}s: held-out PSNR {metrics['psnr']:.2f} dB "
            f"(mean image {metrics['mean_image_psnr']:.2f} dB, +{metrics['psnr_gain_db']:.2f}), "
            f"SSIM {metrics['ssim']:.3f}"
            + (
                f", re-encoded cosine {metrics['reencoded_cosine']:.3f}, top-1 "
                f"{metrics['reencoded_top1']:.3f} (chance {metrics['chance_top1']:.3f})"
                if encode is not None
                else ""
            )
        )
    return DecoderResult(decoder=decoder.cpu(), metrics=metrics, loss_curve=loss_curve, grid=grid)
