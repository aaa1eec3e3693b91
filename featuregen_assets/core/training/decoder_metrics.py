"""How a decoder is judged: PSNR/SSIM against the originals and the train mean image, and
feature consistency (reconstructions embedded again, compared with their source vectors)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from featuregen_assets.core.training.metrics import psnr, self_retrieval_top1, ssim

Encode = Callable[[list[Image.Image]], np.ndarray]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> float (N, 3, S, S) in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


@torch.no_grad()
def mean_psnr(
    decoder: nn.Module, inputs: torch.Tensor, images: torch.Tensor, rows: np.ndarray
) -> float:
    """The mean PSNR of `rows`' reconstructions (the decoder is left in training mode)."""
    decoder.eval()
    index = torch.from_numpy(rows).to(inputs.device)
    value = float(torch.cat([psnr(decoder(inputs[b]), images[b]) for b in index.split(64)]).mean())
    decoder.train()
    return value


def _feature_consistency(
    encode: Encode,
    originals: np.ndarray,
    reconstructions: np.ndarray,
    vectors: np.ndarray,
    mean_image: np.ndarray,
    standardize: tuple[np.ndarray, np.ndarray],
) -> dict[str, float]:
    """Re-encode reconstructions (and references) with the image encoder, compare to vectors.

    Top-1 is reported by cosine in the stored space and, as a second view, after
    standardising with the train mean/std (random-weight ViT vectors share a large common
    component that plain cosine is dominated by).
    """

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)

    target = unit(vectors)
    recon = unit(encode([Image.fromarray(i) for i in reconstructions]))
    small = unit(encode([Image.fromarray(i) for i in originals]))
    mean = unit(encode([Image.fromarray(mean_image)]))
    mu, sigma = standardize

    def std(x: np.ndarray) -> np.ndarray:
        return (x - mu) / sigma

    return {
        "reencoded_cosine": float((recon * target).sum(1).mean()),
        "reencoded_top1": self_retrieval_top1(recon, target),
        "reencoded_top1_standardized": self_retrieval_top1(std(recon), std(target)),
        "mean_image_cosine": float((mean @ target.T).mean()),
        "downsized_original_cosine": float((small * target).sum(1).mean()),
        "downsized_original_top1": self_retrieval_top1(small, target),
        "downsized_original_top1_standardized": self_retrieval_top1(std(small), std(target)),
        "chance_top1": 1.0 / len(target),
    }


def held_out_metrics(
    decode: Callable[[np.ndarray], np.ndarray],
    vectors: np.ndarray,
    pixels: np.ndarray,
    split: dict[str, np.ndarray],
    standardize: tuple[np.ndarray, np.ndarray],
    encode: Encode | None,
) -> tuple[dict[str, float], np.ndarray]:
    """PSNR/SSIM of the test images' reconstructions beside the train mean image, the train
    PSNR on as many train images, and with `encode` feature consistency (`standardize`: the
    decoder's input mean and std); and the reconstructions."""
    train_rows, test_rows = split["train"], split["test"]
    mean_image = pixels[train_rows].astype(np.float32).mean(0).round().astype(np.uint8)
    recon = decode(vectors[test_rows])
    truth = to_tensor(pixels[test_rows])
    pred = to_tensor(recon)
    mean = to_tensor(mean_image[None]).expand_as(truth)
    metrics = {
        "psnr": float(psnr(pred, truth).mean()),
        "ssim": float(ssim(pred, truth).mean()),
        "mean_image_psnr": float(psnr(mean, truth).mean()),
        "mean_image_ssim": float(ssim(mean, truth).mean()),
    }
    metrics["psnr_gain_db"] = metrics["psnr"] - metrics["mean_image_psnr"]
    train_recon = decode(vectors[train_rows[: len(test_rows)]])
    metrics["train_psnr"] = float(
        psnr(to_tensor(train_recon), to_tensor(pixels[train_rows[: len(test_rows)]])).mean()
    )
    if encode is not None:
        metrics.update(
            _feature_consistency(
                encode, pixels[test_rows], recon, vectors[test_rows], mean_image, standardize
            )
        )
    return metrics, recon
