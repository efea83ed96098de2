"""The landmark stage as one call: CNN detection, then the morphable-model fit.

``locate_landmarks`` is what the pipeline's node (through ``detector.detect_one``), the
scorer of new scans and ``face-health landmarks`` all call, with the same settings:

- ``method="fit"`` (default): the CNN's landmarks start a fit of the ICT face model to the
  scan (``model_fit``); the landmarks are read off the fitted model. A scan whose fit
  residual is above ``FitSettings.max_residual_mm`` or whose face the scan covers less than
  ``min_coverage`` raises ``ModelFitError``, a ``DataError`` (the subject's QC row says
  failed, and why).
- ``method="cnn"``: the CNN's multi-view consensus alone (the first stage), to compare.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import trimesh

from face_health.errors import ModelFitError, NoFaceFoundError
from face_health.landmarks.fitted import fitted_landmarks, region_residuals
from face_health.landmarks.model_fit import FitSettings

METHODS = ("fit", "cnn")


def fit_settings(options: dict[str, Any] | None) -> FitSettings:
    """``FitSettings`` from a ``landmarks.model_fit`` mapping (lists become tuples; unknown
    keys refused, naming them)."""
    from face_health.config import DE, build_dataclass

    return build_dataclass(FitSettings, options, f"{DE}, section landmarks: model_fit")


def locate_landmarks(
    detector: Any,
    mesh: trimesh.Trimesh,
    *,
    method: str = "fit",
    settings: FitSettings | None = None,
    min_confidence: float = 0.3,
    min_mean_confidence: float = 0.5,
) -> tuple[pd.DataFrame, dict[str, Any], np.ndarray | None]:
    """Landmarks of ``mesh`` (mm), the stage's QC record and the fitted model's vertices.

    Returns a table ``name, x, y, z, confidence, status`` (with ``method="fit"`` also
    ``fit_residual_mm, cnn_distance_mm, snap_mm``) and a QC dict: ``landmark_method``,
    ``landmark_status`` ('ok', or 'warning' when a landmark could not be placed or the CNN's
    confidence is below ``min_confidence``), ``landmark_reason``,
    ``landmark_mean_confidence``, ``landmark_low_confidence`` and, for the fit,
    ``fit_residual_mm``, ``fit_coverage``, ``fit_refined_residual_mm`` and
    ``fit_residual_mm_<region>`` for each of the 20 regions. The third value is the fitted
    model's ``(n, 3)`` vertices in the scan's frame (None with ``method="cnn"``): the dense
    correspondence that ``fitted.transfer_regions`` cuts the regions with.

    Raises a ``DataError`` (also a ``ValueError``) when no face is found
    (``NoFaceFoundError``; also when the CNN's mean confidence is below
    ``min_mean_confidence``: not a face the network can read), too few landmarks start the
    fit (``TooFewLandmarksError``) or the model cannot follow the scan (``ModelFitError``);
    an unknown ``method`` is a ``ValueError`` (a setting, not the data).
    """
    if method not in METHODS:
        raise ValueError(f"unknown landmark method {method!r}; use one of {METHODS}")
    cnn = detector.detect(mesh)
    mean_confidence = float(cnn["confidence"].fillna(0.0).mean())
    if not mean_confidence >= min_mean_confidence:
        unsure = int((cnn["status"] != "ok").sum() + (cnn["confidence"] < min_confidence).sum())
        raise NoFaceFoundError(
            f"the landmark network is unsure this is a face: mean confidence "
            f"{mean_confidence:.2f} < {min_mean_confidence:g} (landmarks.min_mean_confidence; "
            f"faces it reads: 0.85-0.92), {unsure} of {len(cnn)} landmarks unplaced or below "
            f"{min_confidence:g}"
        )
    failed = cnn.loc[cnn["status"] != "ok", "name"].tolist()
    low = cnn.loc[(cnn["status"] == "ok") & (cnn["confidence"] < min_confidence), "name"]
    reasons = []
    if failed:
        reasons.append(f"not placed by the CNN: {', '.join(failed)}")
    if len(low):
        reasons.append(f"low CNN confidence: {', '.join(low)}")
    qc: dict[str, Any] = {
        "landmark_method": method,
        "landmark_mean_confidence": round(float(cnn["confidence"].mean()), 3),
        "landmark_low_confidence": len(low) + len(failed),
    }
    vertices = None
    if method == "cnn":
        table = cnn[["name", "x", "y", "z", "confidence", "status"]].copy()
    else:
        s = settings or FitSettings()
        table, fit = fitted_landmarks(mesh, cnn, s)
        vertices = fit.vertices
        qc |= {
            "fit_residual_mm": round(fit.residual_mm, 3),
            "fit_coverage": round(fit.coverage, 3),
            "fit_refined_residual_mm": round(fit.refined_residual_mm, 3),
            "fit_identity_rms": round(fit.identity_rms, 3),
            **{f"fit_residual_mm_{r}": v for r, v in region_residuals(fit).items()},
        }
        if not np.isfinite(fit.residual_mm) or fit.residual_mm > s.max_residual_mm:
            raise ModelFitError(
                f"the face model does not follow this scan: fit residual "
                f"{fit.residual_mm:.2f} mm > {s.max_residual_mm} mm (not a face, or not one "
                "the landmarks found)"
            )
        if fit.identity_rms > s.max_identity_rms:
            raise ModelFitError(
                f"the face model does not follow this scan without leaving the faces it knows: "
                f"identity RMS {fit.identity_rms:.2f} > {s.max_identity_rms} (about 1 for a "
                "face; not a face, or not one the landmarks found)"
            )
        if fit.coverage < s.min_coverage:
            raise ModelFitError(
                f"the scan covers {fit.coverage:.0%} of the fitted face (< "
                f"{s.min_coverage:.0%}): too little face to place the landmarks"
            )
    qc["landmark_status"] = "warning" if reasons else "ok"
    qc["landmark_reason"] = "; ".join(reasons)
    return table.reset_index(drop=True), qc, vertices
