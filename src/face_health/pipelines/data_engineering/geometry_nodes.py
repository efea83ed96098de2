"""Nodes of data_engineering after ingest: landmarks, template, alignment, directional views."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import trimesh
from PIL import Image

from face_health import schema
from face_health.alignment.similarity import (
    Template,
    align_face,
    build_template,
    landmark_table_to_dict,
    transform_points,
)
from face_health.ingest.splits import subjects_in
from face_health.landmarks.detector import detect_one, read_checkpoint, write_checkpoint
from face_health.landmarks.fit import train_checkpoint
from face_health.parallel import map_subjects
from face_health.reporting import template_figure, views_contact_sheet
from face_health.tracking import lightning_logger
from face_health.views.rendering import render_directional_views

logger = logging.getLogger(__name__)


def provide_landmark_model(
    clean_meshes: dict[str, Callable[[], trimesh.Trimesh]],
    annotations: dict[str, Callable[[], pd.DataFrame]],
    splits: pd.DataFrame,
    landmarks: dict[str, Any],
) -> tuple[dict, dict]:
    """The landmark network: the shipped checkpoint, or one retrained on the training split's
    annotations when ``landmarks.train`` is true. Returns the checkpoint and its metrics."""
    if not landmarks.get("train", False):
        checkpoint = read_checkpoint(landmarks.get("checkpoint"))
        return checkpoint, {"source": "shipped" if not landmarks.get("checkpoint") else "file"}
    tables = {k.removesuffix(".csv"): load for k, load in annotations.items()}
    train_ids = [s for s in subjects_in(splits, "train") if s in tables and s in clean_meshes]
    val_ids = [s for s in subjects_in(splits, "validation") if s in tables and s in clean_meshes]
    if len(train_ids) < 2 or not val_ids:
        raise ValueError(
            "landmarks.train is true but fewer than 2 training or no validation subjects have "
            "a landmark annotation (landmarks/<subject_id>.csv)"
        )
    return train_checkpoint(
        {s: clean_meshes[s] for s in train_ids},
        {s: clean_meshes[s] for s in val_ids},
        {s: tables[s]() for s in train_ids + val_ids},
        landmarks,
        logger_=lightning_logger("landmarks"),
    )


def detect_landmarks(
    clean_meshes: dict[str, Callable[[], trimesh.Trimesh]],
    landmark_model: dict,
    landmarks: dict[str, Any],
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, dict[str, pd.DataFrame]]:
    """Landmarks of every clean mesh (mm, the mesh's frame), a QC row per subject, and the
    face model fitted to each (its vertices ``x, y, z``, the mesh's frame; none with
    ``landmarks.method: cnn``)."""
    with tempfile.TemporaryDirectory() as tmp:
        # Workers load the network once each from a file instead of receiving it per scan.
        path = Path(tmp) / "landmarks.pt"
        write_checkpoint(landmark_model, path)
        outcomes = map_subjects(
            detect_one,
            dict(clean_meshes.items()),
            n_jobs=int(landmarks.get("n_jobs", 0)),
            desc="detecting landmarks",
            checkpoint=str(path),
            min_confidence=float(landmarks.get("min_confidence", 0.3)),
            method=str(landmarks.get("method", "fit")),
            fit=landmarks.get("model_fit"),
        )
    tables, rows, fitted = {}, [], {}
    for sid, outcome in outcomes.items():
        if outcome.ok:
            table, qc, vertices = outcome.value
            tables[f"{sid}.csv"] = table
            if vertices is not None:
                fitted[sid] = pd.DataFrame(vertices, columns=["x", "y", "z"])
            rows.append({"subject_id": sid, **qc, "landmark_seconds": round(outcome.seconds, 3)})
        else:
            rows.append(outcome.failed_row("landmark"))
    return tables, pd.DataFrame(rows), fitted


def make_template(
    detected_landmarks: dict[str, Callable[[], pd.DataFrame]],
    clean_meshes: dict[str, Callable[[], trimesh.Trimesh]],
    splits: pd.DataFrame,
    landmark_qc: pd.DataFrame,
) -> tuple[pd.DataFrame, trimesh.Trimesh, plt.Figure]:
    """The template face from the training split's detected landmarks, and its picture."""
    ok = set(landmark_qc.loc[landmark_qc["landmark_status"] != "failed", "subject_id"])
    train = [s for s in subjects_in(splits, "train") if s in ok]
    sets = {s: landmark_table_to_dict(detected_landmarks[f"{s}.csv"]()) for s in train}
    meshes = {s: clean_meshes[s] for s in train}
    template = build_template(sets, list(schema.LANDMARK_NAMES), _LazyMeshes(meshes))
    logger.info("template: %d training faces, mesh of %s", len(sets), template.source_subject)
    return template.table(), template.mesh, template_figure(template)


class _LazyMeshes(dict):
    """A mapping of loaders that loads a mesh only when it is looked up."""

    def __getitem__(self, key: str) -> trimesh.Trimesh:
        return super().__getitem__(key)()


def _template(table: pd.DataFrame) -> Template:
    return Template(list(table["name"]), table[["x", "y", "z"]].to_numpy(float))


def _align_one(job: tuple, template_table: pd.DataFrame, options: dict) -> tuple:
    mesh_loader, landmark_loader, fitted_loader = job
    table = landmark_loader()
    found = table[table["status"] == "ok"] if "status" in table else table
    mesh, moved, fit = align_face(
        mesh_loader(),
        landmark_table_to_dict(found),
        _template(template_table),
        allow_scale=bool(options.get("scale", True)),
        crop_margin_mm=float(options.get("crop_margin_mm", 10.0)),
    )
    moved_table = pd.DataFrame([(n, *p) for n, p in moved.items()], columns=["name", "x", "y", "z"])
    qc = {k: v for k, v in fit.items() if k != "matrix"}
    qc["transform"] = " ".join(f"{v:.6g}" for v in fit["matrix"][:3].ravel())
    qc["n_faces_cropped"] = len(mesh.faces)
    fitted = None
    if fitted_loader is not None:  # the fitted face model moves with the scan
        xyz = transform_points(fit["matrix"], fitted_loader()[["x", "y", "z"]].to_numpy(float))
        fitted = pd.DataFrame(xyz.astype(np.float32), columns=["x", "y", "z"])
    return mesh, moved_table, qc, fitted


def align_faces(
    clean_meshes: dict[str, Callable[[], trimesh.Trimesh]],
    detected_landmarks: dict[str, Callable[[], pd.DataFrame]],
    fitted_faces: dict[str, Callable[[], pd.DataFrame]],
    template_landmarks: pd.DataFrame,
    alignment: dict[str, Any],
) -> tuple[
    dict[str, trimesh.Trimesh], dict[str, pd.DataFrame], pd.DataFrame, dict[str, pd.DataFrame]
]:
    """Move every face onto the template (similarity fit of landmarks) and crop to the face.

    Returns the aligned meshes, their landmarks in the template frame, a QC row each (the
    transform, the scale and the landmark residual in mm), and the fitted face models moved
    the same way (for the subjects that have one).
    """
    jobs = {
        key.removesuffix(".csv"): (
            clean_meshes[key.removesuffix(".csv")],
            loader,
            fitted_faces.get(key.removesuffix(".csv")),
        )
        for key, loader in detected_landmarks.items()
        if key.removesuffix(".csv") in clean_meshes
    }
    outcomes = map_subjects(
        _align_one,
        jobs,
        n_jobs=int(alignment.get("n_jobs", 0)),
        desc="aligning to the template",
        template_table=template_landmarks,
        options=alignment,
    )
    meshes, landmark_tables, rows, fitted = {}, {}, [], {}
    limit = float(alignment.get("max_residual_mm", 6.0))
    for sid, outcome in outcomes.items():
        if not outcome.ok:
            rows.append(outcome.failed_row("alignment"))
            continue
        mesh, moved, qc, moved_fit = outcome.value
        meshes[sid] = mesh
        if moved_fit is not None:
            fitted[sid] = moved_fit
        landmark_tables[f"{sid}.csv"] = moved
        high = qc["residual_mm"] > limit
        reason = f"landmark residual {qc['residual_mm']:.1f} mm > {limit:g} mm" if high else ""
        rows.append(
            {
                "subject_id": sid,
                "alignment_status": "warning" if high else "ok",
                "alignment_reason": reason,
                **qc,
            }
        )
    return meshes, landmark_tables, pd.DataFrame(rows), fitted


def _render_one(mesh_loader: Callable[[], trimesh.Trimesh], options: dict) -> dict[str, np.ndarray]:
    return render_directional_views(mesh_loader(), options)


def render_face_views(
    aligned_meshes: dict[str, Callable[[], trimesh.Trimesh]], views: dict[str, Any]
) -> tuple[dict[str, Image.Image], plt.Figure]:
    """Directional views of every aligned face, saved as ``<subject_id>/<view>.png``."""
    outcomes = map_subjects(
        _render_one,
        dict(aligned_meshes.items()),
        n_jobs=int(views.get("n_jobs", 0)),
        desc="rendering views",
        options=views,
    )
    rendered = {}
    for sid, outcome in outcomes.items():
        if outcome.ok:
            rendered[sid] = outcome.value
        else:
            logger.warning("views of %s failed: %s", sid, outcome.error)
    shown = sorted(rendered)[: int(views.get("contact_sheet_subjects", 4))]
    sheet = views_contact_sheet({sid: rendered[sid] for sid in shown})
    images = {
        f"{sid}/{name}": Image.fromarray(image)
        for sid, by_view in rendered.items()
        for name, image in by_view.items()
    }
    return images, sheet
