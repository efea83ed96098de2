"""On-the-fly augmentation of rendered landmark views, with keypoints that follow the image.

:class:`Augmentation` says which random changes to make and how strong: a horizontal flip that
swaps left and right landmarks, in-plane rotation and whole-pixel shifts, brightness, contrast
and noise on the rendered foreground, dropping the texture channel, and holes set to the
background. :func:`augment_batch` applies them to a batch already on the training device, with
every random number drawn from one CPU generator so results depend only on its seed.
``LandmarkDataModule`` in :mod:`face_health.landmarks.training` calls it on training batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Augmentation:
    """Random changes to training views; each is off at 0.

    Photometric changes (brightness, contrast, noise) touch only foreground pixels (those not
    equal to the background) so that "nothing rendered" stays unambiguous.
    """

    brightness: float = 0.15  # additive shift of channels 0 and 2, uniform in +-brightness
    contrast: float = 0.25  # gain of channels 0 and 2, uniform in 1 +- contrast
    noise_std: float = 0.02  # per image std uniform in [0, noise_std], all channels
    drop_texture: float = 0.5  # probability to zero channel 2, as for scans without texture
    max_holes: int = 3  # 0..max_holes rectangles set to the background
    hole_size: tuple[float, float] = (0.05, 0.2)  # hole side as a share of S
    max_shift: float = 0.1  # translation, share of S (whole pixels, so no resampling blur)
    max_rotation_deg: float = 10.0  # in-plane rotation about the image centre
    flip: float = 0.5  # probability of a horizontal flip (only with flip pairs)
    # Lighting baked into real textures: the texture channel times 1 + a linear ramp across
    # the image whose slope is uniform in +-texture_lighting per half image.
    texture_lighting: float = 0.3


def augment_batch(
    batch: dict[str, Tensor],
    augmentation: Augmentation,
    *,
    generator: torch.Generator,
    background: tuple[float, ...] = (0.0, 1.0, 0.0),
    flip_pairs: list[tuple[int, int]] | None = None,
) -> dict[str, Tensor]:
    """A randomly changed copy of a batch, with keypoints that follow the image.

    Parameters
    ----------
    batch : ``images (B, C, S, S)`` float, ``keypoints (B, K, 2)`` input px, ``visible (B, K)``
    augmentation : what to change and how much
    generator : CPU generator that draws every random number, so results depend only on its
        seed, not on the device
    background : per-channel value where nothing was rendered (padding, holes)
    flip_pairs : (left, right) landmark indices swapped by a horizontal flip; no flip if None

    Returns
    -------
    The changed batch; keypoints that leave the image (outside ``[0, S - 1]``) are invisible.
    """
    images, keypoints, visible = batch["images"], batch["keypoints"], batch["visible"]
    b, c, s, _ = images.shape
    a = augmentation
    dev = images.device

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        return (torch.rand(shape, generator=generator) * (high - low) + low).to(dev)

    bg = torch.tensor(background[:c], dtype=images.dtype, device=dev).view(1, c, 1, 1)

    # Geometry: output pixel u' = R F u + d about the image centre (F: flip, R: rotation).
    flip = uniform(b) < (a.flip if flip_pairs else 0.0)
    angle = uniform(b, low=-1.0, high=1.0) * math.radians(a.max_rotation_deg)
    max_px = int(a.max_shift * s)
    shift = torch.randint(-max_px, max_px + 1, (b, 2), generator=generator).to(dev, images.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    mirror = torch.ones(b, 2, device=dev)
    mirror[:, 0] = torch.where(flip, -1.0, 1.0)
    forward = rotation * mirror[:, None, :]  # R @ diag(mirror)
    # grid_sample wants the source of each output pixel, in [-1, 1] units of S / 2.
    inverse = forward.transpose(1, 2)  # (R F)^-1 = F R^T, F and R orthogonal
    offset = -(inverse @ (shift * (2.0 / s))[..., None])[..., 0]
    theta = torch.cat([inverse, offset[..., None]], dim=2).to(images.dtype)
    grid = F.affine_grid(theta, [b, c, s, s], align_corners=False)
    # Sampling image minus background with zero padding pads with the background.
    images = F.grid_sample(images - bg, grid, align_corners=False) + bg
    centre = (s - 1) / 2.0
    keypoints = (forward[:, None].to(keypoints.dtype) @ (keypoints - centre)[..., None])[..., 0]
    keypoints = keypoints + centre + shift[:, None, :].to(keypoints.dtype)
    if flip_pairs and flip.any():
        order = list(range(keypoints.shape[1]))
        for left, right in flip_pairs:
            order[left], order[right] = right, left
        keypoints = torch.where(flip[:, None, None], keypoints[:, order], keypoints)
        visible = torch.where(flip[:, None], visible[:, order], visible)
    inside = ((keypoints >= 0) & (keypoints <= s - 1)).all(dim=-1)
    visible = visible & inside

    # Photometry on the foreground of the shaded and texture channels.
    foreground = ((images - bg).abs() > 1e-6).any(dim=1, keepdim=True)
    channels = [ch for ch in (0, 2) if ch < c]
    gain = uniform(b, len(channels), low=1.0 - a.contrast, high=1.0 + a.contrast)
    bias = uniform(b, len(channels), low=-a.brightness, high=a.brightness)
    for j, ch in enumerate(channels):
        x = images[:, ch : ch + 1]
        # An all-zero texture channel means no texture: keep it that way.
        present = x.flatten(1).abs().amax(dim=1).gt(0).view(b, 1, 1, 1)
        jittered = (x * gain[:, j].view(b, 1, 1, 1) + bias[:, j].view(b, 1, 1, 1)).clamp(0, 1)
        images[:, ch : ch + 1] = torch.where(foreground & present, jittered, x)
    if c > 2 and a.texture_lighting > 0:
        slope = uniform(b, 2, low=-a.texture_lighting, high=a.texture_lighting)
        ramp = torch.linspace(-1.0, 1.0, s, device=dev, dtype=images.dtype)
        lit = (
            1.0
            + slope[:, 0, None, None] * ramp[None, None, :]
            + slope[:, 1, None, None] * ramp[None, :, None]
        )
        images[:, 2] = torch.where(foreground[:, 0], (images[:, 2] * lit).clamp(0, 1), images[:, 2])
    if c > 2:
        drop = (uniform(b) < a.drop_texture).view(b, 1, 1)
        images[:, 2] = torch.where(drop, torch.zeros_like(images[:, 2]), images[:, 2])
    if a.noise_std > 0:
        std = uniform(b, low=0.0, high=a.noise_std).view(b, 1, 1, 1)
        noise = torch.randn(images.shape, generator=generator).to(dev, images.dtype)
        images = torch.where(foreground, images + std * noise, images)

    # Holes: up to max_holes rectangles per image, set to the background.
    if a.max_holes > 0:
        n_holes = torch.randint(0, a.max_holes + 1, (b, 1), generator=generator).to(dev)
        active = torch.arange(a.max_holes, device=dev)[None, :] < n_holes  # (B, H)
        size = uniform(b, a.max_holes, 2, low=a.hole_size[0], high=a.hole_size[1]) * s
        corner = uniform(b, a.max_holes, 2) * (s - size)
        pixels = torch.arange(s, device=dev, dtype=size.dtype)
        in_col = (pixels >= corner[..., 0:1]) & (pixels < corner[..., 0:1] + size[..., 0:1])
        in_row = (pixels >= corner[..., 1:2]) & (pixels < corner[..., 1:2] + size[..., 1:2])
        holes = (in_row[..., :, None] & in_col[..., None, :] & active[..., None, None]).any(1)
        images = torch.where(holes[:, None], bg.expand_as(images), images)
    return {**batch, "images": images, "keypoints": keypoints, "visible": visible}
