"""Heatmap encoding and decoding, and the network's shapes and size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face_health.landmarks.network import HeatmapNet, decode_heatmaps, gaussian_heatmaps


def _keypoints(n: int, k: int, size: int, seed: int = 0) -> torch.Tensor:
    """Random sub-pixel keypoints; a third near each border (the outermost pixel centres)."""
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(n, k, 2, generator=g, dtype=torch.float64) * (size - 1)
    third = n // 3
    points[:third] = torch.rand(third, k, 2, generator=g, dtype=torch.float64) * 2.0
    points[third : 2 * third] = size - 1 - points[:third]
    return points


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_decode_recovers_subpixel_keypoints_also_at_borders(stride: int) -> None:
    size = 64
    keypoints = _keypoints(60, 4, size)
    visible = torch.ones(60, 4, dtype=torch.bool)
    maps = gaussian_heatmaps(keypoints, visible, size, stride, sigma=1.5)
    pixels, peaks = decode_heatmaps(maps, stride)
    error = np.linalg.norm(pixels - keypoints.numpy(), axis=-1)
    assert error.max() < 0.15
    assert peaks.min() > 0.75  # a sampled peak of height 1, at most ~0.7 px off its centre


def test_decode_accepts_numpy_and_is_robust_to_noise() -> None:
    size, stride = 64, 2
    keypoints = torch.rand(40, 3, 2, generator=torch.Generator().manual_seed(1)) * 40 + 12
    maps = gaussian_heatmaps(keypoints, torch.ones(40, 3, dtype=torch.bool), size, stride)
    noisy = maps.numpy() + np.random.default_rng(0).normal(0.0, 0.02, maps.shape)
    pixels, _ = decode_heatmaps(noisy.astype(np.float32), stride)
    assert np.linalg.norm(pixels - keypoints.numpy(), axis=-1).mean() < 0.2


def test_soft_argmax_method_is_close_inside_the_image() -> None:
    keypoints = torch.tensor([[[20.3, 31.7], [40.0, 12.5]]])
    maps = gaussian_heatmaps(keypoints, torch.ones(1, 2, dtype=torch.bool), 64, 2)
    pixels, _ = decode_heatmaps(maps, 2, method="soft_argmax")
    # Biased towards the argmax pixel by the window's truncation, but within a pixel.
    assert np.abs(pixels - keypoints.numpy()).max() < 0.75


def test_peak_is_one_at_keypoint_and_invisible_maps_are_zero() -> None:
    # Keypoint exactly on the centre of heatmap pixel (5, 7) at stride 2: input (10.5, 14.5).
    keypoints = torch.tensor([[[10.5, 14.5], [float("nan"), float("nan")]]])
    visible = torch.tensor([[True, False]])
    maps = gaussian_heatmaps(keypoints, visible, 32, 2)
    assert maps.shape == (1, 2, 16, 16)
    assert maps[0, 0, 7, 5] == pytest.approx(1.0)
    assert maps[0, 0].argmax() == 7 * 16 + 5
    assert torch.all(maps[0, 1] == 0)


def test_decode_of_an_empty_map_reports_no_peak() -> None:
    pixels, peaks = decode_heatmaps(np.zeros((1, 1, 8, 8), np.float32), 2)
    assert np.isfinite(pixels).all()
    assert peaks[0, 0] <= 0


@pytest.mark.parametrize("size", [64, 128])
def test_output_shape(size: int) -> None:
    net = HeatmapNet(4).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, size, size))
    assert out.shape == (2, 4, size // 2, size // 2)


@pytest.mark.parametrize("stride", [1, 4])
def test_other_output_strides(stride: int) -> None:
    net = HeatmapNet(3, output_stride=stride, decoder_channels=16).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 3, 64 // stride, 64 // stride)


def test_default_network_is_small() -> None:
    net = HeatmapNet(33)
    n_parameters = sum(p.numel() for p in net.parameters())
    assert 2_000_000 < n_parameters < 3_500_000
    assert not any(name.startswith("encoder.layer4") for name, _ in net.named_parameters())


def test_float16_input_is_cast() -> None:
    net = HeatmapNet(2, decoder_channels=16).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x.half()), net(x.half().float()))


def test_invalid_output_stride() -> None:
    with pytest.raises(ValueError, match="power of two"):
        HeatmapNet(2, output_stride=3)
    with pytest.raises(ValueError, match="deepest"):
        HeatmapNet(2, output_stride=32)
