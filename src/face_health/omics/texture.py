"""Colour channels and texture statistics of a masked 2D image.

``colour_channels`` turns sRGB into the channels the facial signs live in: luma (wrinkles,
spots), CIELAB a* (redness, pallor) and b* (a sallow, yellow tone). ``texture_features(image,
mask)`` gives a flat dictionary of named floats for the pixels of ``image`` where ``mask`` is
set; pixels outside the mask never change the result. Images are intensities in [0, 1]
(values outside are clipped), so that every region, subject and channel shares one scale:

- **first-order** (``first_*``): mean, standard deviation, skewness and excess kurtosis of
  the pixel values (population moments, as ``numpy.std`` and ``scipy.stats.skew`` /
  ``kurtosis`` with their defaults), and the entropy (bits) and uniformity (sum of squared
  probabilities) of a histogram with ``levels`` bins over the fixed range [0, 1];
- **GLCM** (``glcm_*``): contrast, correlation, homogeneity (inverse difference moment) and
  uniformity (angular second moment) of the grey-level co-occurrence matrix at distance 1,
  mean over the four directions (Haralick, Shanmugam & Dinstein 1973, "Textural features
  for image classification", IEEE SMC 3(6):610-621; computed by ``mahotas``);
- **Tamura** (``tamura_*``): coarseness, contrast and directionality, written from Tamura,
  Mori & Yamawaki 1978, "Textural features corresponding to visual perception", IEEE SMC
  8(6):460-473 (no maintained library has them). Directionality uses an edge threshold
  relative to the region and a normalisation of its own (``tamura_directionality``), so it
  does not depend on contrast.

Grey levels are quantised over the fixed range [0, 1], not over each region's own min-max:
a region's texture is then comparable across regions and subjects, and GLCM contrast grows
with the real intensity step (a min-max rescaling would make every two-tone pattern alike).
"""

from __future__ import annotations

import numpy as np
from mahotas.features import texture as mahotas_texture

FEATURE_NAMES: tuple[str, ...] = (
    "first_mean",
    "first_std",
    "first_skewness",
    "first_kurtosis",
    "first_entropy",
    "first_uniformity",
    "glcm_contrast",
    "glcm_correlation",
    "glcm_homogeneity",
    "glcm_uniformity",
    "tamura_coarseness",
    "tamura_contrast",
    "tamura_directionality",
)

# Fixed CIELAB ranges mapped onto [0, 1] (clipped). Skin is about a* 5..20 and b* 10..25,
# lips a* 15..30 (CIE L*a*b* surveys of facial skin); [0, 40] holds them with margin while
# 32 grey levels still resolve 1.25 units. Negative a* or b* (greenish, bluish) occur only in
# eyes, where clipping loses nothing of health.
A_STAR_RANGE: tuple[float, float] = (0.0, 40.0)
B_STAR_RANGE: tuple[float, float] = (0.0, 40.0)
_SRGB_TO_XYZ = np.array(  # IEC 61966-2-1, D65
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
# mahotas.features.haralick column order: 0 ASM, 1 contrast, 2 correlation, 3 variance, 4 IDM.
_ASM, _CONTRAST, _CORRELATION, _VARIANCE, _IDM = 0, 1, 2, 3, 4
# Edge strengths at or below this are rounding, not edges (one 8-bit grey level is 1/255).
_FLAT_GRADIENT = 1e-9


def colour_channels(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Grey, CIELAB L*, a* and b* of sRGB colours, each scaled to [0, 1].

    ``grey`` is Rec. 601 luma of the gamma-encoded values (as PIL's ``convert("L")``);
    ``L`` is L*/100; ``a`` and ``b`` map ``A_STAR_RANGE`` and ``B_STAR_RANGE`` onto [0, 1]
    (clipped), so higher ``a`` is redder and higher ``b`` yellower.

    Parameters
    ----------
    rgb : (..., 3) float
        sRGB in [0, 1].

    Returns
    -------
    dict[str, np.ndarray]
        ``grey``, ``L``, ``a``, ``b``, each of shape ``rgb.shape[:-1]``.
    """
    lab = srgb_to_lab(rgb)
    rgb = np.clip(np.asarray(rgb, dtype=float), 0.0, 1.0)
    return {
        "grey": rgb @ np.array([0.299, 0.587, 0.114]),
        "L": np.clip(lab[..., 0] / 100.0, 0.0, 1.0),
        "a": _rescale(lab[..., 1], A_STAR_RANGE),
        "b": _rescale(lab[..., 2], B_STAR_RANGE),
    }


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (CIE 1976, D65 white) of sRGB colours.

    sRGB -> linear (IEC 61966-2-1) -> XYZ -> L*, a*, b*.

    Parameters
    ----------
    rgb : (..., 3) float
        sRGB in [0, 1].

    Returns
    -------
    (..., 3) float
        L* in [0, 100], a*, b*.
    """
    rgb = np.clip(np.asarray(rgb, dtype=float), 0.0, 1.0)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    lightness = 116.0 * f[..., 1] - 16.0
    return np.stack(
        [lightness, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], axis=-1
    )


def texture_features(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    levels: int = 32,
    tamura_kmax: int = 5,
    edge_threshold: float = 12.0 / 255.0,
) -> dict[str, float]:
    """First-order, GLCM and Tamura features of the masked pixels of one image.

    Parameters
    ----------
    image : (h, w) float
        Intensities in [0, 1]; values outside are clipped, NaN pixels count as outside the mask.
    mask : (h, w) bool
        Pixels that belong to the region.
    levels : int
        Grey levels for the histogram and the GLCM (2..254), over the fixed range [0, 1].
    tamura_kmax : int
        Largest window exponent of Tamura coarseness (windows 2^0 .. 2^kmax; the paper uses 5).
    edge_threshold : float
        Least edge strength for Tamura directionality as a fraction of the region's robust
        intensity range (the paper's 12 of 255 grey levels); the region's median edge
        strength applies as well, so contrast does not change directionality (see
        ``tamura_directionality``).

    Returns
    -------
    dict[str, float]
        The features named in ``FEATURE_NAMES``; NaN where a feature is undefined (an empty
        mask, skewness of a constant region, GLCM of a region without neighbouring pixels).
        Never raises on small or constant regions.
    """
    image = np.asarray(image, dtype=float)
    mask = np.asarray(mask, dtype=bool)
    if image.ndim != 2 or image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must be equal 2D shapes")
    if not 2 <= levels <= 254:
        raise ValueError(
            f"levels must be in 2..254 (uint8 with 0 kept for 'outside'), got {levels}"
        )
    mask = mask & np.isfinite(image)
    if not mask.any():
        return dict.fromkeys(FEATURE_NAMES, float("nan"))
    rows, cols = np.nonzero(mask)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    mask = mask[box]
    image = np.where(mask, np.clip(image[box], 0.0, 1.0), 0.0)
    features = first_order_features(image[mask], levels=levels)
    features |= glcm_features(image, mask, levels=levels)
    features |= {
        "tamura_coarseness": tamura_coarseness(image, mask, kmax=tamura_kmax),
        "tamura_contrast": tamura_contrast(image[mask]),
        "tamura_directionality": tamura_directionality(image, mask, threshold=edge_threshold),
    }
    return features


def first_order_features(values: np.ndarray, *, levels: int = 32) -> dict[str, float]:
    """Moments and histogram statistics of pixel values.

    Parameters
    ----------
    values : (n,) float
        Pixel values in [0, 1].
    levels : int
        Histogram bins over [0, 1] for entropy (bits) and uniformity.
    """
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        return {k: float("nan") for k in FEATURE_NAMES if k.startswith("first_")}
    mean = values.mean()
    deviations = values - mean
    variance = np.mean(deviations**2)
    std = float(np.sqrt(variance))
    # Rounding leaves a constant region a tiny variance; its shape moments are undefined.
    if std <= 1e-12 * max(1.0, abs(mean)):
        std, skewness, kurtosis = 0.0, float("nan"), float("nan")
    else:
        skewness = float(np.mean(deviations**3) / variance**1.5)
        kurtosis = float(np.mean(deviations**4) / variance**2 - 3.0)
    counts = np.bincount(_quantise(values, levels), minlength=levels)
    probabilities = counts[counts > 0] / values.size
    return {
        "first_mean": float(mean),
        "first_std": std,
        "first_skewness": skewness,
        "first_kurtosis": kurtosis,
        "first_entropy": float(-np.sum(probabilities * np.log2(probabilities))) + 0.0,
        "first_uniformity": float(np.sum(probabilities**2)),
    }


def glcm_features(image: np.ndarray, mask: np.ndarray, *, levels: int = 32) -> dict[str, float]:
    """Haralick (1973) GLCM contrast, correlation, homogeneity and uniformity (4-direction mean).

    Pixel values are quantised to ``1..levels``; 0 marks "outside the mask" and is dropped from
    the co-occurrence matrices (mahotas ``ignore_zeros``). Contrast is in squared grey levels.
    Directions without any pair of neighbouring region pixels (a one-pixel-wide region) are left
    out of the mean; correlation is NaN where the grey-level variance is zero (it is 0/0).

    Parameters
    ----------
    image : (h, w) float
        Values in [0, 1].
    mask : (h, w) bool
        Region pixels.
    levels : int
        Number of grey levels.
    """
    quantised = np.where(mask, _quantise(image, levels) + 1, 0).astype(np.uint8)
    rows = []
    for direction in range(4):
        cmat = np.zeros((levels + 1, levels + 1), np.int32)
        mahotas_texture.cooccurence(quantised, direction, output=cmat, symmetric=True)
        # mahotas raises on a matrix that is empty once the zero row and column are dropped.
        if cmat[1:, 1:].sum() > 0:
            rows.append(mahotas_texture.haralick_features([cmat], ignore_zeros=True)[0])
    names = ("glcm_contrast", "glcm_correlation", "glcm_homogeneity", "glcm_uniformity")
    if not rows:
        return dict.fromkeys(names, float("nan"))
    per_direction = np.array(rows)
    # mahotas adds a tiny epsilon to the variance, so a constant region reads correlation 1.
    correlation = np.where(
        per_direction[:, _VARIANCE] > 1e-6, per_direction[:, _CORRELATION], np.nan
    )
    return {
        "glcm_contrast": float(per_direction[:, _CONTRAST].mean()),
        "glcm_correlation": float(correlation.mean()),
        "glcm_homogeneity": float(per_direction[:, _IDM].mean()),
        "glcm_uniformity": float(per_direction[:, _ASM].mean()),
    }


def tamura_coarseness(image: np.ndarray, mask: np.ndarray, *, kmax: int = 5) -> float:
    """Tamura (1978) coarseness: mean over pixels of the best window size 2^k_best.

    For each pixel and ``k = 0..kmax``, the mean intensities of two adjacent, non-overlapping
    2^k x 2^k windows that meet at the pixel's left (top) edge are compared; ``E_k`` is the
    larger of the horizontal and vertical absolute differences. ``k_best`` maximises ``E_k``;
    ties go to the larger window (at the edge of a checkerboard's 4-pixel squares, windows of
    1, 2 and 4 pixels see the same step, and the texture element is 4). Pixels where every
    ``E_k`` is zero (flat at all scales) are left out of the mean; a constant image is as
    coarse as its largest window. Windows must lie wholly inside the mask, so the region's
    outline is never read as texture; pixels with no valid window at all are skipped.

    Parameters
    ----------
    image : (h, w) float
    mask : (h, w) bool

    Returns
    -------
    float
        Mean best window size in pixels (1 .. 2^kmax); NaN when no pixel has a valid window.
    """
    h, w = image.shape
    weights = mask.astype(float)
    sums = _integral(np.where(mask, image, 0.0))
    counts = _integral(weights)
    best_energy = np.full((h, w), -1.0)
    best_size = np.zeros((h, w))
    for k in range(kmax + 1):
        n = 2**k
        if n > h or n > w or 2 * n > max(h, w):
            break  # no pair of such windows fits
        # Window means at every top-left corner; NaN where the window leaves the mask.
        area_sum = sums[n:, n:] - sums[:-n, n:] - sums[n:, :-n] + sums[:-n, :-n]
        area_count = counts[n:, n:] - counts[:-n, n:] - counts[n:, :-n] + counts[:-n, :-n]
        means = np.where(area_count > n * n - 0.5, area_sum / (n * n), np.nan)
        energy = np.full((h, w), np.nan)
        half = n // 2
        if w >= 2 * n:  # horizontal pair: columns [x-n, x) and [x, x+n), rows from y-half
            diff = np.abs(means[:, n:] - means[:, : w - 2 * n + 1])
            energy[half : half + h - n + 1, n : w - n + 1] = diff
        if h >= 2 * n:  # vertical pair: rows [y-n, y) and [y, y+n), columns from x-half
            diff = np.abs(means[n:, :] - means[: h - 2 * n + 1, :])
            region = energy[n : h - n + 1, half : half + w - n + 1]
            energy[n : h - n + 1, half : half + w - n + 1] = np.fmax(region, diff)
        # Ties go to the larger window: the texture element is the largest window over which
        # the contrast holds. The margin keeps float noise of the summed-area table from
        # breaking ties.
        better = np.isfinite(energy) & (np.nan_to_num(energy, nan=-1.0) >= best_energy - 1e-9)
        best_energy = np.where(better, energy, best_energy)
        best_size = np.where(better, float(n), best_size)
    seen = mask & (best_energy >= 0.0)
    if not seen.any():
        return float("nan")
    # A pixel flat at every scale says nothing about the size of texture elements.
    textured = seen & (best_energy > 1e-9)
    if not textured.any():
        return float(best_size[seen].max())
    return float(best_size[textured].mean())


def tamura_contrast(values: np.ndarray) -> float:
    """Tamura (1978) contrast ``sigma / alpha4^(1/4)`` with ``alpha4 = mu4 / sigma^4``.

    ``values`` : (n,) float pixel values. A constant region has contrast 0 (its kurtosis is
    undefined, but the limit of ``sigma / alpha4^(1/4)`` as sigma -> 0 is 0).
    """
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        return float("nan")
    deviations = values - values.mean()
    variance = np.mean(deviations**2)
    fourth = np.mean(deviations**4)
    if variance <= 1e-24 or fourth <= 0.0:
        return 0.0
    # sigma / (mu4 / sigma^4)^(1/4) = sigma^2 / mu4^(1/4)
    return float(variance / fourth**0.25)


def tamura_directionality(
    image: np.ndarray, mask: np.ndarray, *, bins: int = 16, threshold: float = 12.0 / 255.0
) -> float:
    """Tamura (1978) directionality in [0, 1]: 1 for sharp orientations, 0 for none.

    The value depends on the pattern, not on its contrast: the image scaled about its mean by
    any factor gives the same directionality (the edge threshold below is relative; only
    gradients at rounding level, and clipping to [0, 1] in ``texture_features``, break this).

    **From the paper** (Tamura, Mori & Yamawaki 1978, IEEE SMC 8(6):460-473, section on
    directionality): the 3x3 edge operators ``dH = [[-1,0,1]]*3`` and
    ``dV = [[1,1,1],[0,0,0],[-1,-1,-1]]``, the edge angle ``theta = arctan(dV / dH) + pi/2``
    in [0, pi), the histogram ``H_D`` of ``theta`` over ``n = bins`` bins centred on
    ``k pi / n``, counting the pixels whose edge strength ``|dG|`` reaches a threshold ``t``
    (a plain count, normalised to sum 1), and the sharpness of its peaks::

        F_dir = 1 - r * n_p * sum_p sum_{phi in w_p} (phi - phi_p)^2 H_D(phi)

    with ``n_p`` peaks at ``phi_p``, ``w_p`` the range of peak ``p`` between its valleys and
    ``r`` a normalising factor that the paper only describes as related to the quantisation
    of ``phi``; angles are cyclic modulo pi. The paper's ``n = 16`` and ``t = 12`` (of 0-255
    grey levels) are the defaults of ``bins`` and ``threshold``, the latter now relative.

    **Our choices**, and why:

    - ``r = 1 / (n_p * sum_p sum_{phi in w_p} (phi - phi_p)^2 / n)``: the same double sum
      for a histogram with no preferred direction (``H_D = 1/n``), with the same peaks and
      windows. A histogram with no preferred direction then scores 0 however many peaks were
      found in it, and all mass on the peak bins scores 1; the result is clipped to [0, 1]
      (it could only fall below 0 with more mass far from the peaks than a flat histogram).
      With one constant ``r`` (the flat histogram's sum for one peak), a flat histogram
      split into ``n_p`` windows scores ``1 - 1/n_p`` (each window's spread falls as
      ``1/n_p^2``, the factor grows as ``n_p``), so a noisy histogram with 2 to 4 spurious
      peaks read 0.5 to 0.8. ``n_p`` now cancels from the ratio, but more peaks still mean
      narrower windows, so the same spread about them costs more.
    - ``t`` is relative to the region: ``t = max(median |dG|, threshold * (p99 - p1))``,
      the median of ``|dG|`` over the pixels that have an edge value and ``threshold`` times
      the region's robust intensity range (1st to 99th percentile of its pixels). The
      paper's fixed ``t`` suits photographs that span the grey scale; on a low-contrast
      region only the noise tail passes it (1% of the pixels of isotropic noise of SD 0.01),
      a sparse histogram with spurious peaks: such noise read 0.5 to 0.8, and 0 from SD 0.05
      on, where nearly every pixel passes.
      The median keeps the stronger half of the region's edges, which carry its direction,
      and drops the weaker half, where noise decides the angle; the second term is the
      paper's threshold on the region stretched to its robust range and matters only where
      most pixels are flat (median 0). Gradients of at most 1e-9 (rounding; one 8-bit grey
      level is 1/255) are never edges.
    - ``|dG| = sqrt(dH^2 + dV^2) / 2`` instead of the paper's ``(|dH| + |dV|) / 2``: both
      equal ``|dH| / 2`` on a vertical edge, but the paper's sum is up to sqrt(2) larger on a
      diagonal edge of the same contrast, so a threshold keeps diagonal edges first and
      turns isotropic noise into peaks at 45 and 135 degrees (at SD 0.01 under the fixed
      threshold no horizontal or vertical edge was left at all).
    - Peaks are local maxima of the circular histogram, kept when the valley towards every
      higher kept peak falls to half their height or less; the valley between two peaks is
      their lowest bin (the middlemost of equal ones) and goes to the nearer peak.
    - Only pixels whose 3x3 neighbourhood lies in the mask have an edge value; a region
      without edges (constant, or no 3x3 neighbourhood inside) is not directional: 0. A
      small region has a noisy histogram and reads somewhat directional even for isotropic
      noise: on average about 0.6 at 45 pixels, 0.13 at 200 and under 0.05 from 1,000.

    Parameters
    ----------
    image : (h, w) float
    mask : (h, w) bool
    bins : int
        Angle bins over [0, pi) (the paper's n = 16).
    threshold : float
        Minimum edge strength ``|dG|`` as a fraction of the region's robust intensity range
        (the paper's 12 of 255 grey levels); the median of ``|dG|`` applies as well.
    """
    if image.shape[0] < 3 or image.shape[1] < 3:
        return 0.0
    f = np.where(mask, image, 0.0)
    d_h = (f[:-2, 2:] + f[1:-1, 2:] + f[2:, 2:]) - (f[:-2, :-2] + f[1:-1, :-2] + f[2:, :-2])
    d_v = (f[:-2, :-2] + f[:-2, 1:-1] + f[:-2, 2:]) - (f[2:, :-2] + f[2:, 1:-1] + f[2:, 2:])
    inside = np.ones_like(d_h, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            inside &= mask[dy : dy + d_h.shape[0], dx : dx + d_h.shape[1]]
    if not inside.any():
        return 0.0
    strength = np.hypot(d_h, d_v) / 2.0
    low, high = np.percentile(image[mask], [1.0, 99.0])
    cut = max(float(np.median(strength[inside])), threshold * float(high - low))
    edges = inside & (strength >= cut) & (strength > _FLAT_GRADIENT)
    if not edges.any():
        return 0.0
    theta = np.mod(np.arctan2(d_v[edges], d_h[edges]) + np.pi / 2.0, np.pi)
    index = np.floor(theta / (np.pi / bins) + 0.5).astype(int) % bins
    histogram = np.bincount(index, minlength=bins) / index.size
    deviation = _peak_deviation(histogram, _histogram_peaks(histogram))
    spread = np.sum(deviation**2 * histogram)
    flat_spread = np.mean(deviation**2)  # the same sum for H_D = 1/n
    if flat_spread <= 0.0:  # a single bin cannot tell directions apart
        return 0.0
    return float(np.clip(1.0 - spread / flat_spread, 0.0, 1.0))


def _peak_deviation(histogram: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Angle (radians, modulo pi) from each bin to the peak whose window ``w_p`` holds it.

    Windows run between valleys: the lowest bin on the arc between two neighbouring peaks
    (the middlemost of equal ones, so a flat floor splits evenly) goes to the nearer peak
    (the earlier one on a tie). One peak's window is the whole circle.
    """
    n = histogram.size
    step = np.pi / n
    index = np.arange(n)
    peaks = np.sort(peaks)
    if peaks.size == 1:
        offset = (index - peaks[0]) % n
        return np.minimum(offset, n - offset) * step
    deviation = np.zeros(n)
    for here, there in zip(peaks, np.roll(peaks, -1), strict=True):
        gap = (there - here) % n  # bins from this peak to the next, going up
        arc = (here + np.arange(1, gap)) % n
        if arc.size == 0:
            continue
        # The valley: the lowest bin between the peaks, the middlemost of equal ones.
        lowest = np.flatnonzero(histogram[arc] <= histogram[arc].min() + 1e-12) + 1
        valley = int(lowest[np.argmin(np.abs(2 * lowest - gap))])  # offset from ``here``
        for offset, bin_ in enumerate(arc, start=1):
            own = offset < valley or (offset == valley and offset <= gap - offset)
            distance = offset if own else gap - offset
            deviation[bin_] = min(distance, n - distance) * step
    return deviation


def _histogram_peaks(histogram: np.ndarray, *, valley_ratio: float = 0.5) -> np.ndarray:
    """Indices of the separate peaks of a circular histogram, highest first."""
    n = histogram.size
    left, right = np.roll(histogram, 1), np.roll(histogram, -1)
    # >= on one side and > on the other keeps one bin of a plateau.
    candidates = np.flatnonzero((histogram > left) & (histogram >= right) & (histogram > 0))
    if candidates.size == 0:
        return np.array([int(np.argmax(histogram))])
    kept: list[int] = []
    for peak in candidates[np.argsort(-histogram[candidates], kind="stable")]:
        separate = True
        for other in kept:
            step = 1 if (other - peak) % n <= n // 2 else -1
            arc = [(peak + step * i) % n for i in range((step * (other - peak)) % n + 1)]
            if histogram[arc].min() > valley_ratio * histogram[peak]:
                separate = False
                break
        if separate:
            kept.append(int(peak))
    return np.array(kept)


def _quantise(values: np.ndarray, levels: int) -> np.ndarray:
    """Bin index 0..levels-1 of values in [0, 1] (equal-width bins over the fixed range)."""
    return np.clip(np.floor(np.asarray(values) * levels), 0, levels - 1).astype(np.intp)


def _integral(array: np.ndarray) -> np.ndarray:
    """(h + 1, w + 1) summed-area table with a zero first row and column."""
    table = np.zeros((array.shape[0] + 1, array.shape[1] + 1))
    table[1:, 1:] = array.cumsum(axis=0).cumsum(axis=1)
    return table


def _rescale(values: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    low, high = value_range
    return np.clip((values - low) / (high - low), 0.0, 1.0)
