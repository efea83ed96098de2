"""Putting a face into a frontal frame from its landmarks.

``landmark_frame`` gives the rigid transform that makes a face look along +z with +y up from
five landmarks (eye corners, nose tip, mouth corners), which is all a contact sheet needs.
``similarity_transform`` is the least-squares similarity (Umeyama 1991, IEEE TPAMI 13:376)
that moves one landmark set onto another.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FRAME_LANDMARKS = ("en_r", "en_l", "prn", "ch_r", "ch_l")


def landmark_table_to_dict(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """``name,x,y,z`` table -> ``{name: (3,) float}``."""
    missing = {"name", "x", "y", "z"} - set(table.columns)
    if missing:
        raise ValueError(f"landmark table lacks columns {sorted(missing)}")
    return {str(r.name): np.array([r.x, r.y, r.z], float) for r in table.itertuples(index=False)}


def landmark_frame(landmarks: dict[str, np.ndarray]) -> np.ndarray:
    """4x4 rigid transform from the scan frame to a frontal frame centred on the nose tip.

    x runs from the subject's right to left (mouth and eye corners), y from the mouth up to the
    eyes, z = x cross y points out of the face.
    """
    missing = [n for n in FRAME_LANDMARKS if n not in landmarks]
    if missing:
        raise ValueError(f"need landmarks {FRAME_LANDMARKS} for a frontal frame; missing {missing}")
    p = {n: np.asarray(landmarks[n], float) for n in FRAME_LANDMARKS}
    x = (p["en_l"] - p["en_r"]) + (p["ch_l"] - p["ch_r"])
    x /= np.linalg.norm(x)
    up = (p["en_r"] + p["en_l"]) / 2.0 - (p["ch_r"] + p["ch_l"]) / 2.0
    y = up - (up @ x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    rotation = np.stack([x, y, z])  # rows: new axes in scan coordinates
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = -rotation @ p["prn"]
    return transform


def similarity_transform(
    source: np.ndarray, target: np.ndarray, *, allow_scale: bool = True
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``s, R, t`` with ``target ~ s * R @ source + t`` (Umeyama 1991).

    Parameters
    ----------
    source, target : (n, 3) float, corresponding points, n >= 3 not collinear

    Returns
    -------
    scale : float; rotation : (3, 3) proper rotation; translation : (3,)
    """
    source, target = np.asarray(source, float), np.asarray(target, float)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3:
        raise ValueError(
            f"need two (n, 3) arrays of equal shape, got {source.shape}, {target.shape}"
        )
    if len(source) < 3:
        raise ValueError("need at least 3 corresponding points")
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    cov = xt.T @ xs / len(source)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0  # a reflection would fit better; force a proper rotation
    rotation = u @ sign @ vt
    var_s = (xs**2).sum() / len(source)
    scale = float(np.trace(np.diag(d) @ sign) / var_s) if allow_scale else 1.0
    translation = mu_t - scale * rotation @ mu_s
    return scale, rotation, translation
