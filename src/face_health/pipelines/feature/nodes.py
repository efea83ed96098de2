"""Nodes of the feature pipeline: ResNet-50 embeddings, regions, radiomics, PCA."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import trimesh

from face_health import schema
from face_health.alignment.similarity import landmark_table_to_dict
from face_health.ingest.splits import subjects_in
from face_health.landmarks.fitted import face_regions
from face_health.omics.pca import FacialOmics, explained_variance_figure
from face_health.omics.radiomics import subject_radiomics
from face_health.omics.regions import region_map_figure, region_qc, segment_regions
from face_health.parallel import map_subjects
from face_health.tracking import lightning_logger

logger = logging.getLogger(__name__)


def _views_by_subject(face_views: dict[str, Callable]) -> dict[str, dict[str, Callable]]:
    """``{"S0001/front": loader}`` -> ``{"S0001": {"front": loader}}``."""
    views: dict[str, dict[str, Callable]] = {}
    for key, loader in face_views.items():
        subject, view = key.rsplit("/", 1)
        views.setdefault(subject, {})[view] = loader
    return views


def train_embedding_model(
    face_views: dict[str, Callable],
    clinical: pd.DataFrame,
    splits: pd.DataFrame,
    embedding: dict[str, Any],
) -> tuple[Any, dict[str, float]]:
    """Fit the multi-task ResNet-50 on the training split's views (early stopping on the
    validation split); per-epoch metrics go to the MLflow run."""
    from face_health.embedding.model import ViewDataModule, fit_embedding_model

    names = list(embedding.get("targets", schema.TARGET_NAMES))
    data = ViewDataModule(
        _views_by_subject(face_views),
        clinical[[schema.ID_COLUMN, *names]],
        splits,
        target_names=names,
        image_size=int(embedding.get("image_size", 112)),
        views_per_subject_per_epoch=int(embedding.get("views_per_subject_per_epoch", 4)),
        batch_size=int(embedding.get("batch_size", 32)),
        seed=int(embedding.get("seed", 0)),
    )
    train = set(subjects_in(splits, "train"))
    # What the network and the target scaler learn from: training subjects only.
    assert set(data.subjects["train"]) <= train, "the ResNet would see non-training subjects"
    assert set(data.scaler.fitted_on) <= train, "the target scaler saw non-training subjects"
    module, metrics = fit_embedding_model(
        data,
        module_options={
            "target_names": names,
            "target_kinds": [schema.TARGET_BY_NAME[n].kind for n in names],
            **embedding.get("module", {}),
        },
        trainer_options=embedding.get("trainer", {}),
        logger=lightning_logger("embedding"),
        patience=int(embedding.get("patience", 3)),
        seed=int(embedding.get("seed", 0)),
    )
    metrics["scaler_fitted_on"] = len(data.scaler.fitted_on)
    return module, metrics


def embed_subjects(
    embedding_model: Any, face_views: dict[str, Callable], embedding: dict[str, Any]
) -> pd.DataFrame:
    """One embedding per subject (every split): the mean (or concatenation) of its views'."""
    from face_health.embedding.model import subject_embeddings

    return subject_embeddings(
        embedding_model,
        _views_by_subject(face_views),
        image_size=int(embedding.get("image_size", 112)),
        aggregate=embedding.get("aggregate", "mean"),
    )


def _region_centroids(mesh: trimesh.Trimesh, region_map) -> dict[str, np.ndarray]:
    centres, areas = mesh.triangles_center, mesh.area_faces
    out = {}
    for region in schema.REGIONS:
        faces = region_map.faces_of(region)
        if len(faces):
            out[region] = np.average(centres[faces], axis=0, weights=areas[faces])
    return out


def template_region_centroids(
    template_mesh: trimesh.Trimesh, template_landmarks: pd.DataFrame
) -> dict[str, list[float]]:
    """Centroid of every region on the template face (for the centroid-offset features)."""
    region_map = segment_regions(template_mesh, landmark_table_to_dict(template_landmarks))
    return {r: c.tolist() for r, c in _region_centroids(template_mesh, region_map).items()}


def _subject_regions(job: tuple, centroids: dict, options: dict) -> tuple:
    mesh_loader, landmark_loader, fitted_loader = job
    mesh = mesh_loader()
    table = landmark_loader()
    landmarks = landmark_table_to_dict(
        table[table["status"] == "ok"] if "status" in table else table
    )
    fitted = None if fitted_loader is None else fitted_loader()[["x", "y", "z"]].to_numpy(float)
    region_map = face_regions(mesh, landmarks, fitted, options.get("region_topology", "fitted"))
    qc = region_qc(region_map, mesh)
    row = subject_radiomics(
        mesh,
        {r: region_map.faces_of(r) for r in schema.REGIONS},
        template_centroids={r: np.asarray(c) for r, c in centroids.items()},
        mm_per_pixel=float(options.get("mm_per_pixel", 0.5)),
        levels=int(options.get("levels", 32)),
    )
    return region_map.labels.astype(np.int16), row, qc


def extract_region_radiomics(
    aligned_meshes: dict[str, Callable[[], trimesh.Trimesh]],
    aligned_landmarks: dict[str, Callable[[], pd.DataFrame]],
    aligned_fitted_faces: dict[str, Callable[[], pd.DataFrame]],
    template_region_centroids: dict[str, list[float]],
    radiomics: dict[str, Any],
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame, plt.Figure]:
    """Segment the 20 regions of every aligned face and extract their radiomic features.

    With ``radiomics.region_topology: fitted`` (default) and a fitted face model for the
    subject, the regions come from the model's fixed topology (``fitted.transfer_regions``);
    otherwise (``scan``, or ``landmarks.method: cnn``) they are cut on the scan's own graph.

    Returns per-subject region labels (one row per mesh face), the ``region_radiomics``
    table (one row per subject, columns ``<region>__<feature>``), a QC row per subject and
    a picture of the region map on a few faces.
    """
    jobs = {
        sid: (loader, aligned_landmarks[f"{sid}.csv"], aligned_fitted_faces.get(sid))
        for sid, loader in aligned_meshes.items()
        if f"{sid}.csv" in aligned_landmarks
    }
    outcomes = map_subjects(
        _subject_regions,
        jobs,
        n_jobs=int(radiomics.get("n_jobs", 0)),
        desc="regions and radiomics",
        centroids=template_region_centroids,
        options=radiomics,
    )
    labels, rows, qc_rows = {}, [], []
    for sid, outcome in outcomes.items():
        if not outcome.ok:
            qc_rows.append(outcome.failed_row("region"))
            continue
        face_labels, row, qc = outcome.value
        labels[sid] = pd.DataFrame({"region": face_labels})
        rows.append({"subject_id": sid, **row})
        qc_rows.append({"subject_id": sid, **qc})
    shown = sorted(labels)[: int(radiomics.get("picture_subjects", 3))]
    picture = region_map_figure(
        [(sid, aligned_meshes[sid](), _labels_to_map(labels[sid])) for sid in shown]
    )
    return labels, pd.DataFrame(rows), pd.DataFrame(qc_rows), picture


def _labels_to_map(table: pd.DataFrame):
    from face_health.omics.regions import RegionMap

    return RegionMap(labels=table["region"].to_numpy(), boundaries={})


def fit_facial_omics(
    region_radiomics: pd.DataFrame, splits: pd.DataFrame, facial_omics: dict[str, Any]
) -> tuple[FacialOmics, pd.DataFrame, plt.Figure]:
    """Standardise + PCA fitted on the training split only -> ``local_features``."""
    train = set(subjects_in(splits, "train"))
    model = FacialOmics(
        n_components=facial_omics.get("n_components", 0.9),
        max_missing=float(facial_omics.get("max_missing", 0.2)),
    ).fit(region_radiomics[region_radiomics[schema.ID_COLUMN].isin(train)])
    assert set(model.fitted_on_) <= train, "the PCA saw a validation or test subject"
    logger.info(
        "facial omics: %d features -> %d components (%.0f%% of the variance)",
        len(model.columns_),
        len(model.explained_variance_ratio_),
        100 * model.explained_variance_ratio_.sum(),
    )
    return model, model.transform(region_radiomics), explained_variance_figure(model)
