"""Texture statistics on images whose answers are known (first-order, GLCM, Tamura, colour)."""

from __future__ import annotations

import mahotas
import numpy as np
import pytest
from scipy import ndimage, stats

from face_health.omics.texture import (
    FEATURE_NAMES,
    colour_channels,
    glcm_features,
    srgb_to_lab,
    tamura_coarseness,
    tamura_contrast,
    tamura_directionality,
    texture_features,
)

FULL = np.ones((48, 48), dtype=bool)


def checkerboard(size: int, square: int, low: float = 0.2, high: float = 0.8) -> np.ndarray:
    rows, cols = np.indices((size, size))
    return np.where((rows // square + cols // square) % 2, high, low)


def test_every_named_feature_is_returned() -> None:
    image = np.random.default_rng(0).random((20, 20))
    features = texture_features(image, np.ones_like(image, dtype=bool))
    assert tuple(features) == FEATURE_NAMES
    assert all(np.isfinite(v) for v in features.values())


def test_first_order_matches_numpy_and_scipy() -> None:
    rng = np.random.default_rng(1)
    image = rng.beta(2.0, 5.0, size=(40, 40))
    features = texture_features(image, np.ones_like(image, dtype=bool))
    values = image.ravel()
    probabilities = np.histogram(values, bins=32, range=(0.0, 1.0))[0] / values.size
    assert features["first_mean"] == pytest.approx(values.mean())
    assert features["first_std"] == pytest.approx(values.std())
    assert features["first_skewness"] == pytest.approx(stats.skew(values))
    assert features["first_kurtosis"] == pytest.approx(stats.kurtosis(values))
    assert features["first_entropy"] == pytest.approx(stats.entropy(probabilities, base=2))
    assert features["first_uniformity"] == pytest.approx(np.sum(probabilities**2))


def test_constant_image() -> None:
    features = texture_features(np.full((24, 24), 0.4), np.ones((24, 24), dtype=bool))
    assert features["first_std"] == 0.0
    assert features["first_uniformity"] == 1.0
    assert features["first_entropy"] == 0.0
    assert features["glcm_contrast"] == 0.0
    assert features["glcm_uniformity"] == pytest.approx(1.0)
    assert features["glcm_homogeneity"] == pytest.approx(1.0)
    assert np.isnan(features["glcm_correlation"])  # 0/0: no grey-level variance
    assert features["tamura_contrast"] == 0.0
    assert features["tamura_directionality"] == 0.0
    assert features["tamura_coarseness"] > 4.0  # ties go to the largest window that fits


def test_glcm_matches_mahotas_haralick_on_a_full_image() -> None:
    image = np.random.default_rng(2).random((30, 30))
    quantised = (np.floor(image * 32).clip(0, 31) + 1).astype(np.uint8)
    expected = mahotas.features.haralick(quantised, ignore_zeros=True, return_mean=True)
    features = glcm_features(image, np.ones_like(image, dtype=bool), levels=32)
    assert features["glcm_uniformity"] == pytest.approx(expected[0])
    assert features["glcm_contrast"] == pytest.approx(expected[1])
    assert features["glcm_correlation"] == pytest.approx(expected[2])
    assert features["glcm_homogeneity"] == pytest.approx(expected[4])


def test_glcm_contrast_grows_with_the_step_of_a_checkerboard() -> None:
    contrasts = [
        texture_features(checkerboard(32, 2, 0.5 - step / 2, 0.5 + step / 2), FULL[:32, :32])[
            "glcm_contrast"
        ]
        for step in (0.1, 0.3, 0.6, 0.9)
    ]
    assert all(a < b for a, b in zip(contrasts, contrasts[1:], strict=False))


def test_coarser_checkerboard_is_coarser() -> None:
    values = [tamura_coarseness(checkerboard(48, square), FULL) for square in (1, 2, 4, 8)]
    assert values[0] == 1.0
    assert all(a < b for a, b in zip(values, values[1:], strict=False))


def test_stripes_are_more_directional_than_noise() -> None:
    rows, cols = np.indices((48, 48))
    stripes = 0.5 + 0.4 * np.sin(2 * np.pi * (cols + 0.5 * rows) / 8)
    noise = np.random.default_rng(3).random((48, 48))
    directional = tamura_directionality(stripes, FULL)
    isotropic = tamura_directionality(noise, FULL)
    assert directional > 0.9
    assert isotropic < 0.3
    assert 0.0 <= isotropic < directional <= 1.0


def isotropic_noise(size: int, sd: float, seed: int) -> np.ndarray:
    return 0.5 + sd * np.random.default_rng(seed).standard_normal((size, size))


def oriented_stripes(
    size: int, amplitude: float, degrees: float, *, square: bool = False, seed: int = 0
) -> np.ndarray:
    """Stripes of period 8 pixels across ``degrees``, around 0.5, with noise of SD 0.001."""
    rows, cols = np.indices((size, size))
    angle = np.deg2rad(degrees)
    wave = np.sin(2 * np.pi * (cols * np.cos(angle) + rows * np.sin(angle)) / 8)
    noise = 0.001 * np.random.default_rng(seed).standard_normal((size, size))
    return 0.5 + amplitude * (np.sign(wave) if square else wave) + noise


@pytest.mark.parametrize("sd", [0.01, 0.02, 0.1])
@pytest.mark.parametrize("size", [64, 128])
def test_low_contrast_noise_is_not_directional(sd: float, size: int) -> None:
    # A fixed edge threshold (12/255) let only the noise tail through at SD 0.01-0.02: a
    # sparse histogram with spurious peaks, read as 0.6-0.75 directionality.
    full = np.ones((size, size), dtype=bool)
    values = [tamura_directionality(isotropic_noise(size, sd, seed), full) for seed in range(4)]
    assert max(values) < 0.2


@pytest.mark.parametrize("square", [False, True], ids=["sine", "square"])
@pytest.mark.parametrize("amplitude", [0.01, 0.02])
def test_low_contrast_stripes_are_directional(amplitude: float, square: bool) -> None:
    full = np.ones((64, 64), dtype=bool)
    for degrees in (0, 30, 45, 60, 90, 135):
        image = oriented_stripes(64, amplitude, degrees, square=square, seed=degrees)
        assert tamura_directionality(image, full) > 0.8, degrees


@pytest.mark.parametrize(
    "pattern", ["stripes", "noise", "streaks", "checkerboard"], ids=lambda p: p
)
def test_directionality_does_not_depend_on_contrast(pattern: str) -> None:
    rng = np.random.default_rng(8)
    image = {
        "stripes": oriented_stripes(64, 0.03, 20, seed=1),
        "noise": isotropic_noise(64, 0.03, 2),
        # noise smoothed along rows: partly directional
        "streaks": 0.5 + 0.01 * ndimage.uniform_filter1d(rng.standard_normal((64, 64)), 9, 1),
        "checkerboard": checkerboard(64, 4, 0.47, 0.53) + 0.001 * rng.standard_normal((64, 64)),
    }[pattern]
    full = np.ones(image.shape, dtype=bool)
    mean = image.mean()
    values = [
        texture_features(np.clip(mean + scale * (image - mean), 0.0, 1.0), full)[
            "tamura_directionality"
        ]
        for scale in (0.1, 1.0, 10.0)
    ]
    assert max(values) - min(values) < 0.05, values


def test_directionality_of_a_masked_region() -> None:
    rows, cols = np.indices((80, 80))
    disc = (rows - 40) ** 2 + (cols - 38) ** 2 < 30**2
    stripes = oriented_stripes(80, 0.015, 60, seed=3)
    noise = isotropic_noise(80, 0.015, 4)
    garbage = np.random.default_rng(5).random((80, 80))
    for image, low, high in ((stripes, 0.8, 1.0), (noise, 0.0, 0.2)):
        value = tamura_directionality(image, disc)
        assert low <= value <= high
        # Whatever lies outside the region, garbage or NaN, changes nothing.
        assert tamura_directionality(np.where(disc, image, garbage), disc) == value
        nan_outside = np.where(disc, image, np.nan)
        through_features = texture_features(nan_outside, np.ones_like(disc))
        assert through_features["tamura_directionality"] == pytest.approx(value, abs=1e-12)


def test_a_single_step_edge_is_directional() -> None:
    # Most pixels are flat (median edge strength 0): the edge alone decides the direction.
    image = np.where(np.indices((40, 40))[1] < 20, 0.5, 0.51)
    assert tamura_directionality(image, FULL[:40, :40]) == pytest.approx(1.0)


def test_tamura_contrast_of_a_two_tone_image() -> None:
    # Two equal halves: sigma = half the step and alpha4 = 1, so F_con = sigma.
    values = np.repeat([0.2, 0.8], 50)
    assert tamura_contrast(values) == pytest.approx(0.3)


def test_pixels_outside_the_mask_change_nothing() -> None:
    rng = np.random.default_rng(4)
    rows, cols = np.indices((40, 40))
    mask = (rows - 20) ** 2 + (cols - 18) ** 2 < 15**2
    image = rng.random((40, 40))
    other = np.where(mask, image, rng.random((40, 40)))
    first, second = texture_features(image, mask), texture_features(other, mask)
    np.testing.assert_equal(list(first.values()), list(second.values()))


@pytest.mark.parametrize(
    "mask",
    [
        np.zeros((5, 5), dtype=bool),
        np.pad(np.ones((1, 1), dtype=bool), 2),
        np.pad(np.ones((1, 3), dtype=bool), 2),
        np.pad(np.ones((3, 1), dtype=bool), 2),
    ],
    ids=["empty", "one pixel", "one row", "one column"],
)
def test_tiny_regions_never_raise(mask: np.ndarray) -> None:
    image = np.random.default_rng(5).random(mask.shape)
    features = texture_features(image, mask)
    assert tuple(features) == FEATURE_NAMES
    if not mask.any():
        assert all(np.isnan(v) for v in features.values())


def test_known_lab_values() -> None:
    np.testing.assert_allclose(
        srgb_to_lab(np.array([1.0, 0.0, 0.0])), [53.24, 80.09, 67.20], atol=0.1
    )
    np.testing.assert_allclose(srgb_to_lab(np.array([1.0, 1.0, 1.0])), [100.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(
        srgb_to_lab(np.array([0.0, 0.0, 1.0])), [32.30, 79.19, -107.86], atol=0.1
    )


def test_colour_channels() -> None:
    rgb = np.array([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.9, 0.8, 0.3]]])
    channels = colour_channels(rgb)
    assert set(channels) >= {"grey", "a", "b"}
    assert all(c.shape == (1, 3) and (c >= 0).all() and (c <= 1).all() for c in channels.values())
    red, grey, yellowish = 0, 1, 2
    assert channels["a"][0, red] > channels["a"][0, grey] + 0.5
    assert channels["b"][0, yellowish] > channels["b"][0, grey] + 0.5
    assert channels["grey"][0, grey] == pytest.approx(0.5)
