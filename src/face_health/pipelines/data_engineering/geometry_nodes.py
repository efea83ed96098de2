"""Nodes of data_engineering after ingest: landmarks, template, alignment, directional views."""

from __future__ import annotations

import dataclasses
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
from face_health.alignment.similarity import align_subject, build_template, landmark_table_to_dict
from face_health.config import AlignmentSettings, LandmarkSettings, QcSettings, ViewSettings
from face_health.ingest.splits import subjects_in
from face_health.ingest.storage import EncodedMesh
from face_health.landmarks.detector import detect_one, read_checkpoint, write_checkpoint
from face_health.landmarks.fit import train_checkpoint
from face_health.parallel import check_failures, map_subjects
from face_health.reporting import template_figure, views_contact_sheet
from face_health.spool import loaded, spooled
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
    settings = LandmarkSettings.from_parameters(landmarks)
    if not settings.train:
        checkpoint = read_checkpoint(settings.checkpoint)
        return checkpoint, {"source": "file" if settings.checkpoint else "shipped"}
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
        settings,
        logger_=lightning_logger("landmarks"),
    )


def detect_landmarks(
    clean_meshes: dict[str, Callable[[], trimesh.Trimesh]],
    landmark_model: dict,
    landmarks: dict[str, Any],
    qc_parameters: dict[str, Any],
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, dict[str, pd.DataFrame]]:
    """Landmarks of every clean mesh (mm, the mesh's frame), a QC row per subject, and the
    face model fitted to each (its vertices ``x, y, z``, the mesh's frame; none with
    ``landmarks.method: cnn``)."""
    settings = LandmarkSettings.from_parameters(landmarks)
    with tempfile.TemporaryDirectory() as tmp:
        # Workers load the network once each from a file instead of receiving it per scan.
        path = Path(tmp) / "landmarks.pt"
        write_checkpoint(landmark_model, path)
        outcomes = map_subjects(
            _detect_one,
            dict(clean_meshes.items()),
            n_jobs=settings.n_jobs,
            desc="detecting landmarks",
            detector=str(path),
            settings=settings,
        )
    tables, rows, fitted = {}, [], {}
    for sid, outcome in outcomes.items():
        if outcome.ok:
            table, qc, vertices = outcome.value
            tables[f"{sid}.csv"] = table
            if vertices is not None:
                fitted[sid] = vertices
            rows.append({"subject_id": sid, **qc, "landmark_seconds": round(outcome.seconds, 3)})
        else:
            rows.append(outcome.failed_row("landmark"))
    table = pd.DataFrame(rows)
    limit = QcSettings.from_parameters(qc_parameters).max_failed_fraction
    check_failures(table, "landmark", max_failed_fraction=limit)
    return tables, table, fitted


def _detect_one(mesh_loader: Callable[[], trimesh.Trimesh], **options: Any):
    table, qc, vertices = detect_one(mesh_loader, **options)
    if vertices is not None:  # the fitted face, left in the run's spool until it is saved
        vertices = spooled(pd.DataFrame(vertices, columns=["x", "y", "z"]))
    return table, qc, vertices


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


def _align_one(job: tuple, template_table: pd.DataFrame, settings: AlignmentSettings):
    mesh_loader, landmark_loader, fitted_loader = job
    fitted = None if fitted_loader is None else fitted_loader()[["x", "y", "z"]].to_numpy(float)
    subject = align_subject(mesh_loader(), landmark_loader(), fitted, template_table, settings)
    # encoded here, in the worker, and left in the run's spool (with the fitted face) until
    # the main process writes it
    return dataclasses.replace(
        subject,
        mesh=spooled(EncodedMesh.of(subject.mesh, ".glb")),
        fitted=None if subject.fitted is None else spooled(subject.fitted),
    )


def align_faces(
    clean_meshes: dict[str, Callable[[], trimesh.Trimesh]],
    detected_landmarks: dict[str, Callable[[], pd.DataFrame]],
    fitted_faces: dict[str, Callable[[], pd.DataFrame]],
    template_landmarks: pd.DataFrame,
    alignment: dict[str, Any],
    qc_parameters: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, pd.DataFrame], pd.DataFrame, dict[str, Any]]:
    """Move every face onto the template (similarity fit of landmarks) and crop to the face.

    Returns the aligned meshes (encoded as GLB, what ``aligned_meshes`` stores; spooled in a
    Kedro run, as the fitted faces, see ``face_health.spool``), their
    landmarks in the template frame, a QC row each (the transform, the scale and the landmark
    residual in mm), and the fitted face models moved the same way (for the subjects that
    have one).
    """
    settings = AlignmentSettings.from_parameters(alignment)
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
        n_jobs=settings.n_jobs,
        desc="aligning to the template",
        template_table=template_landmarks,
        settings=settings,
    )
    meshes, landmark_tables, rows, fitted = {}, {}, [], {}
    for sid, outcome in outcomes.items():
        if not outcome.ok:
            rows.append(outcome.failed_row("alignment"))
            continue
        subject = outcome.value
        meshes[sid] = subject.mesh
        if subject.fitted is not None:
            fitted[sid] = subject.fitted
        landmark_tables[f"{sid}.csv"] = subject.landmarks
        rows.append({"subject_id": sid, **subject.qc})
    table = pd.DataFrame(rows)
    limit = QcSettings.from_parameters(qc_parameters).max_failed_fraction
    check_failures(table, "alignment", max_failed_fraction=limit)
    return meshes, landmark_tables, table, fitted


def _render_one(mesh_loader: Callable[[], trimesh.Trimesh], settings: ViewSettings) -> dict:
    # each view an image, left in the run's spool until the main process writes it
    views = render_directional_views(mesh_loader(), settings)
    return {name: spooled(Image.fromarray(image)) for name, image in views.items()}


def render_face_views(
    aligned_meshes: dict[str, Callable[[], trimesh.Trimesh]], views: dict[str, Any]
) -> tuple[dict[str, Image.Image], plt.Figure]:
    """Directional views of every aligned face, saved as ``<subject_id>/<view>.png``."""
    settings = ViewSettings.from_parameters(views)
    outcomes = map_subjects(
        _render_one,
        dict(aligned_meshes.items()),
        n_jobs=settings.n_jobs,
        desc="rendering views",
        settings=settings,
    )
    rendered = {}
    for sid, outcome in outcomes.items():
        if outcome.ok:
            rendered[sid] = outcome.value
        else:
            logger.warning("views of %s failed: %s", sid, outcome.error)
    shown = sorted(rendered)[: settings.contact_sheet_subjects]
    sheet = views_contact_sheet(
        {
            sid: {name: np.asarray(loaded(image)) for name, image in rendered[sid].items()}
            for sid in shown
        }
    )
    images = {
        f"{sid}/{name}": image  # a PIL image, or its Spooled handle in a Kedro run
        for sid, by_view in rendered.items()
        for name, image in by_view.items()
    }
    return images, sheet
