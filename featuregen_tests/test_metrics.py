"""Retrieval and image-quality metrics against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from featuregen_assets.core.training.metrics import (
    chance_recall_at_k,
    psnr,
    ranks_of_positives,
    retrieval_metrics,
    self_retrieval_top1,
    ssim,
)


def test_ranks_use_best_positive_and_count_ties_against():
    scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.7, 0.7], [0.3, 0.2, 0.8]])
    positives = np.array([[False, True, False], [False, True, False], [True, False, True]])
    assert ranks_of_positives(scores, positives).tolist() == [2, 2, 1]


def test_ranks_need_a_positive_per_query():
    with pytest.raises(ValueError, match="positive"):
        ranks_of_positives(np.zeros((1, 2)), np.zeros((1, 2), dtype=bool))


def test_chance_recall_is_exact():
    assert chance_recall_at_k(100, 1, 5) == pytest.approx(0.05)
    assert chance_recall_at_k(10, 2, 1) == pytest.approx(0.2)
    assert chance_recall_at_k(4, 1, 10) == 1.0
    # two positives among 10, top 3: 1 - C(8,3)/C(10,3)
    assert chance_recall_at_k(10, 2, 3) == pytest.approx(1 - 56 / 120)


def test_retrieval_metrics_perfect_and_reversed():
    n = 20
    perfect = retrieval_metrics(np.eye(n), np.eye(n, dtype=bool))
    assert perfect["recall@1"] == 1.0 and perfect["median_rank"] == 1.0
    assert perfect["chance_recall@5"] == pytest.approx(5 / n)
    assert perfect["chance_median_rank"] == pytest.approx((n + 1) / 2)
    worst = retrieval_metrics(-np.eye(n), np.eye(n, dtype=bool))
    assert worst["recall@10"] == 0.0 and worst["median_rank"] == n


def test_psnr_known_values():
    target = torch.zeros(2, 3, 8, 8)
    prediction = torch.full_like(target, 0.1)  # MSE 0.01 -> 20 dB
    assert psnr(prediction, target).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)


def test_ssim_of_constant_images_matches_the_formula():
    a, b = 0.6, 0.3
    x, y = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # zero variances: structure term is 1
    assert ssim(x, y).item() == pytest.approx(expected, rel=1e-4)


def test_ssim_ranks_noise_below_the_image_itself():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 32, 32, generator=g)
    noisy = (image + 0.2 * torch.randn(1, 3, 32, 32, generator=g)).clamp(0, 1)
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(noisy, image).item() < 0.9
    assert math.isfinite(ssim(image[:, :, :5, :5], image[:, :, :5, :5]).item())  # tiny window


def test_self_retrieval_top1():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4))
    assert self_retrieval_top1(x * 3, x) == 1.0
    assert self_retrieval_top1(x, -x) == 0.0
