"""Evaluation metrics: retrieval (recall@k, median rank, chance) and image quality (PSNR, SSIM)."""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np
import torch
import torch.nn.functional as F


def ranks_of_positives(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """1-based rank of each query's best-scoring positive among all candidates.

    `scores` and `positives` are (queries, candidates); every query needs at least one
    positive. Ties with negatives count against the query (a constant scorer ranks last).
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if scores.shape != positives.shape:
        raise ValueError(f"scores {scores.shape} and positives {positives.shape} differ")
    if not positives.any(axis=1).all():
        raise ValueError("every query needs at least one positive candidate")
    best_positive = np.where(positives, scores, -np.inf).max(axis=1, keepdims=True)
    beaten_by = (~positives) & (scores >= best_positive)
    return 1 + beaten_by.sum(axis=1)


def chance_recall_at_k(n_candidates: int, n_positives: int, k: int) -> float:
    """Probability that a random ordering puts one of `n_positives` in the top `k`."""
    k = min(k, n_candidates)
    return 1.0 - comb(n_candidates - n_positives, k) / comb(n_candidates, k)


def retrieval_metrics(
    scores: np.ndarray, positives: np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@k and median rank of `scores` against `positives`, beside their chance values.

    Chance is exact for a uniformly random ranking of each query's candidates:
    recall@k = 1 - C(N-p, k) / C(N, k), expected best-positive rank (N+1)/(p+1).
    """
    ranks = ranks_of_positives(scores, positives)
    n_candidates = positives.shape[1]
    n_pos = positives.sum(axis=1)
    out: dict[str, float] = {"queries": float(len(ranks)), "candidates": float(n_candidates)}
    for k in ks:
        out[f"recall@{k}"] = float((ranks <= k).mean())
        out[f"chance_recall@{k}"] = float(
            np.mean([chance_recall_at_k(n_candidates, int(p), k) for p in n_pos])
        )
    out["median_rank"] = float(np.median(ranks))
    out["chance_median_rank"] = float(np.median((n_candidates + 1) / (n_pos + 1)))
    return out


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [0, 1], shape (B, C, H, W) -> (B,)."""
    mse = (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


def _gaussian_window(size: int, sigma: float, channels: int) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(
    prediction: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004; Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03).

    Images in [0, 1], shape (B, C, H, W) -> (B,), averaged over channels and valid
    window positions. The window shrinks to the image size for very small images.
    """
    x, y = prediction.float(), target.float()
    channels = x.shape[1]
    window = min(window, x.shape[-1], x.shape[-2])
    w = _gaussian_window(window, sigma, channels).to(x.device)
    c1, c2 = 0.01**2, 0.03**2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).flatten(1).mean(dim=1)


def self_retrieval_top1(queries: np.ndarray, candidates: np.ndarray) -> float:
    """Fraction of rows i whose nearest candidate by cosine is candidates[i]."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    c = candidates / np.linalg.norm(candidates, axis=1, keepdims=True).clip(1e-12)
    return float((np.argmax(q @ c.T, axis=1) == np.arange(len(q))).mean())
