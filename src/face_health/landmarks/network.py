"""The landmark heatmap network and its heatmap encoding and decoding.

A view of a scan, ``(C, S, S)``, goes through a truncated timm encoder and a small top-down
(FPN / U-Net style) decoder to one heatmap per landmark at ``S / output_stride``. Training
targets are Gaussians centred on the keypoints; decoding finds each map's peak to sub-pixel
precision.

Pixel conventions follow ``face_health.views.cameras``: ``(col, row)``, pixel centres at integers,
row 0 at the top. Heatmap pixel ``h`` covers input pixels ``h * stride .. (h + 1) * stride``,
so its centre is input pixel ``(h + 0.5) * stride - 0.5``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

DecodeMethod = Literal["gaussian", "soft_argmax"]


class ConvBNReLU(nn.Sequential):
    """3x3 convolution, batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class HeatmapNet(nn.Module):
    """Views ``(B, C, S, S)`` -> raw heatmaps ``(B, K, S / output_stride, S / output_stride)``.

    Parameters
    ----------
    n_landmarks : K, one heatmap per landmark
    encoder : a timm model name that supports ``features_only``
    in_channels : C of the input views
    encoder_indices : which of the encoder's feature levels feed the decoder; stages deeper
        than the last are dropped (resnet18 with levels 0-3 has no ``layer4``: ~2.8M
        parameters instead of 11M, receptive field still larger than a 128 px view)
    decoder_channels : width of the decoder
    output_stride : input pixels per heatmap pixel, a power of two no larger than the deepest
        level's stride (2: heatmaps of ``S/2 x S/2``)

    ``S`` should be a multiple of the deepest level's stride (16 for the default; any multiple
    of 32 works for every resnet depth) so every level tiles the input exactly.
    """

    def __init__(
        self,
        n_landmarks: int,
        *,
        encoder: str = "resnet18",
        in_channels: int = 3,
        encoder_indices: tuple[int, ...] = (0, 1, 2, 3),
        decoder_channels: int = 64,
        output_stride: int = 2,
    ) -> None:
        super().__init__()
        self.n_landmarks = int(n_landmarks)
        self.encoder_name = encoder
        self.in_channels = int(in_channels)
        self.encoder_indices = tuple(int(i) for i in encoder_indices)
        self.decoder_channels = int(decoder_channels)
        self.output_stride = int(output_stride)

        # pretrained=False always: no network access where this runs, and the shipped
        # checkpoint holds the trained weights. features_only truncates after the last index.
        self.encoder = timm.create_model(
            encoder,
            pretrained=False,
            features_only=True,
            out_indices=self.encoder_indices,
            in_chans=self.in_channels,
        )
        channels = list(self.encoder.feature_info.channels())
        strides = list(self.encoder.feature_info.reduction())
        if output_stride < 1 or output_stride & (output_stride - 1):
            raise ValueError(f"output_stride must be a power of two, got {output_stride}")
        if output_stride > strides[-1]:
            raise ValueError(
                f"output_stride {output_stride} exceeds the deepest feature stride {strides[-1]}"
            )
        # Levels finer than the output are not needed by the decoder.
        self._levels = [i for i, s in enumerate(strides) if s >= output_stride]
        d = self.decoder_channels
        self.laterals = nn.ModuleList(nn.Conv2d(channels[i], d, 1) for i in self._levels)
        self.merges = nn.ModuleList(ConvBNReLU(d, d) for _ in self._levels[:-1])
        # When the output is finer than the finest feature level, upsample further.
        finest = strides[self._levels[0]]
        self.upsamples = nn.ModuleList(
            ConvBNReLU(d, d) for _ in range(int(math.log2(finest // output_stride)))
        )
        self.head = nn.Conv2d(d, self.n_landmarks, 1)
        # Start near all-zero maps: the targets are zero almost everywhere.
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def config(self) -> dict:
        """The constructor arguments, to rebuild this network from a state dict."""
        return {
            "n_landmarks": self.n_landmarks,
            "encoder": self.encoder_name,
            "in_channels": self.in_channels,
            "encoder_indices": list(self.encoder_indices),
            "decoder_channels": self.decoder_channels,
            "output_stride": self.output_stride,
        }

    def forward(self, images: Tensor) -> Tensor:
        """``(B, C, S, S)`` -> raw heatmaps ``(B, K, S / stride, S / stride)``."""
        dtype = self.head.weight.dtype
        if images.dtype != dtype and not torch.is_autocast_enabled(images.device.type):
            images = images.to(dtype)  # views may be stored as float16 or float64
        features = self.encoder(images)
        features = [features[i] for i in self._levels]
        x = self.laterals[-1](features[-1])
        for level in range(len(features) - 2, -1, -1):
            skip = features[level]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.merges[level](x + self.laterals[level](skip))
        for block in self.upsamples:
            x = block(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return self.head(x)


def gaussian_heatmaps(
    keypoints: Tensor,
    visible: Tensor,
    input_size: int,
    stride: int,
    sigma: float = 1.5,
) -> Tensor:
    """Target heatmaps: a Gaussian of peak 1 centred exactly on each visible keypoint.

    Parameters
    ----------
    keypoints : (B, K, 2) float, input pixels ``(col, row)``; values of invisible ones are
        ignored (may be nan)
    visible : (B, K) bool
    input_size : S, the input views' width and height
    stride : input pixels per heatmap pixel
    sigma : the Gaussian's standard deviation in *heatmap* pixels

    Returns
    -------
    (B, K, S / stride, S / stride) float, all zeros for invisible keypoints
    """
    keypoints = torch.as_tensor(keypoints)
    if not keypoints.is_floating_point():
        keypoints = keypoints.float()
    visible = torch.as_tensor(visible, device=keypoints.device).bool()
    if input_size % stride:
        raise ValueError(f"input_size {input_size} is not a multiple of stride {stride}")
    size = input_size // stride
    centres = (keypoints + 0.5) / stride - 0.5  # heatmap pixels
    centres = torch.where(visible[..., None], centres, torch.zeros_like(centres))
    grid = torch.arange(size, dtype=keypoints.dtype, device=keypoints.device)
    # The 2D Gaussian is separable: an outer product of two 1D profiles is cheap.
    gx = torch.exp(-((grid - centres[..., 0:1]) ** 2) / (2.0 * sigma**2))  # (B, K, W)
    gy = torch.exp(-((grid - centres[..., 1:2]) ** 2) / (2.0 * sigma**2))  # (B, K, H)
    maps = gy[..., :, None] * gx[..., None, :]
    return maps * visible[..., None, None].to(maps.dtype)


def _window_values(maps: Tensor, rows: Tensor, cols: Tensor, radius: int) -> Tensor:
    """``(N, 2r+1, 2r+1)`` values around ``(rows, cols)`` of ``maps (N, H, W)``; 0 outside."""
    n, h, w = maps.shape
    padded = F.pad(maps, (radius, radius, radius, radius)).reshape(n, -1)
    offsets = torch.arange(-radius, radius + 1, device=maps.device)
    r = rows[:, None, None] + radius + offsets[None, :, None]
    c = cols[:, None, None] + radius + offsets[None, None, :]
    index = (r * (w + 2 * radius) + c).reshape(n, -1)
    return padded.gather(1, index).reshape(n, 2 * radius + 1, 2 * radius + 1)


def _soft_argmax(values: Tensor, offsets: Tensor) -> Tensor:
    """Weighted mean offset ``(N, 2)`` (dx, dy) with clipped positive values as weights."""
    weights = values.clamp(min=0.0)
    total = weights.sum(dim=(1, 2))
    dx = (weights.sum(dim=1) * offsets).sum(dim=1)
    dy = (weights.sum(dim=2) * offsets).sum(dim=1)
    shift = torch.stack([dx, dy], dim=1) / total.clamp(min=1e-12)[:, None]
    return torch.where(total[:, None] > 0, shift, torch.zeros_like(shift))


def _gaussian_fit(values: Tensor, offsets: Tensor, peaks: Tensor) -> tuple[Tensor, Tensor]:
    """Peak offset ``(N, 2)`` of a 2D Gaussian fitted to each window, and whether it is sound.

    Fits a quadratic to the log of the values by least squares weighted by the squared
    values: exact for a Gaussian (any width, also when the window is cut by the border, where
    a soft-argmax is pulled inwards), and since the log of a small noisy value is unreliable
    (error ~ noise / value), the squared weights are the right ones (Guo 2011).
    """
    n, size, _ = values.shape
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    dx, dy = dx.reshape(-1), dy.reshape(-1)
    design = torch.stack([torch.ones_like(dx), dx, dy, dx * dx, dy * dy, dx * dy], dim=1)
    flat = values.reshape(n, -1)
    # Values below a small share of the peak carry noise, not shape.
    used = flat > 0.05 * peaks[:, None]
    weights = torch.where(used, flat * flat, torch.zeros_like(flat))
    logs = torch.log(flat.clamp(min=1e-12))
    normal = torch.einsum("np,pi,pj->nij", weights, design, design)
    rhs = torch.einsum("np,pi,np->ni", weights, design, logs)
    coef, info = torch.linalg.solve_ex(normal, rhs)
    b, c, d, e, f = coef[:, 1], coef[:, 2], coef[:, 3], coef[:, 4], coef[:, 5]
    # Stationary point of the quadratic: [[2d, f], [f, 2e]] @ (x, y) = -(b, c).
    det = 4.0 * d * e - f * f
    safe_det = torch.where(det.abs() > 1e-12, det, torch.ones_like(det))
    x = (-2.0 * e * b + f * c) / safe_det
    y = (-2.0 * d * c + f * b) / safe_det
    shift = torch.stack([x, y], dim=1)
    radius = (size - 1) / 2
    sound = (
        (info == 0)
        & (used.sum(dim=1) >= 6)
        & (d < 0)
        & (det > 1e-12)  # a maximum, not a saddle or a ridge
        & torch.isfinite(shift).all(dim=1)
        & (shift.abs() <= radius).all(dim=1)
    )
    return shift, sound


def decode_heatmaps_torch(
    heatmaps: Tensor, stride: int, window: int = 5, method: DecodeMethod = "gaussian"
) -> tuple[Tensor, Tensor]:
    """Torch version of :func:`decode_heatmaps` (same device, float64 results)."""
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be odd and at least 3, got {window}")
    if method not in ("gaussian", "soft_argmax"):
        raise ValueError(f"unknown decode method {method!r}")
    # Mixed-precision training would run the fit's matrix products in half precision.
    with torch.autocast(heatmaps.device.type, enabled=False):
        return _decode(heatmaps, stride, window, method)


def _decode(
    heatmaps: Tensor, stride: int, window: int, method: DecodeMethod
) -> tuple[Tensor, Tensor]:
    b, k, h, w = heatmaps.shape
    maps = heatmaps.detach().reshape(b * k, h, w).to(torch.float64)
    peaks, flat_index = maps.reshape(b * k, -1).max(dim=1)
    rows, cols = flat_index // w, flat_index % w
    radius = window // 2
    values = _window_values(maps, rows, cols, radius)
    offsets = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    shift = _soft_argmax(values, offsets)
    if method == "gaussian":
        fitted, sound = _gaussian_fit(values, offsets, peaks)
        # The soft-argmax is the fallback for peaks that are not Gaussian-like.
        shift = torch.where(sound[:, None], fitted, shift)
    heatmap_xy = torch.stack([cols, rows], dim=1).to(maps.dtype) + shift
    pixels = (heatmap_xy + 0.5) * stride - 0.5
    return pixels.reshape(b, k, 2), peaks.reshape(b, k)


def decode_heatmaps(
    heatmaps: Tensor | np.ndarray,
    stride: int,
    window: int = 5,
    method: DecodeMethod = "gaussian",
) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of heatmaps in input pixels, to sub-pixel precision.

    The argmax of each map, refined in a ``window x window`` neighbourhood: by default a
    Gaussian fitted to the log values (exact for Gaussian peaks, also at the border), with a
    soft-argmax (weights: the clipped positive values) where the fit is unsound; or only the
    soft-argmax (``method="soft_argmax"``), which is pulled towards the argmax pixel by the
    window's truncation (about 0.3 input px at sigma 1.5, window 5, stride 2) and inwards at
    the border.

    Parameters
    ----------
    heatmaps : (B, K, H, W) raw network output or targets
    stride : input pixels per heatmap pixel
    window : odd size of the refinement neighbourhood, in heatmap pixels
    method : "gaussian" or "soft_argmax"

    Returns
    -------
    pixels : (B, K, 2) float64 input pixels ``(col, row)``
    peaks : (B, K) float64 the maps' maximum values (a confidence; <= 0 means no peak)
    """
    pixels, peaks = decode_heatmaps_torch(torch.as_tensor(heatmaps), stride, window, method)
    return pixels.cpu().numpy(), peaks.cpu().numpy()
