"""Nodes of the feature pipeline: ResNet-50 embeddings, regions, radiomics, PCA."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import trimesh

from face_health import schema
from face_health.alignment.similarity import landmark_table_to_dict
from face_health.config import (
    EmbeddingSettings,
    FacialOmicsSettings,
    QcSettings,
    RadiomicsSettings,
    ShapeFeatureSettings,
)
from face_health.errors import LeakageError
from face_health.ingest.splits import subjects_in
from face_health.omics.local_features import subject_local_features
from face_health.omics.pca import FacialOmics, explained_variance_figure
from face_health.omics.regions import region_map_figure, segment_regions
from face_health.omics.shape import ShapeFeatures
from face_health.parallel import check_failures, map_subjects
from face_health.spool import loaded, spooled
from face_health.tracking import lightning_logger

logger = logging.getLogger(__name__)


def _views_by_subject(face_views: dict[str, Callable]) -> dict[str, dict[str, Callable]]:
    """``{"S0001/front": loader}`` -> ``{"S0001": {"front": loader}}``."""
    views: dict[str, dict[str, Callable]] = {}
    for key, loader in face_views.items():
        subject, view = key.rsplit("/", 1)
        views.setdefault(subject, {})[view] = loader
    return views


def _check_training_only(seen: Iterable[str], splits: pd.DataFrame, what: str) -> None:
    """Raise :class:`~face_health.errors.LeakageError` when ``what`` saw a subject that is
    not a training subject only: one in validation or test, one listed in train *and*
    another split, or one in no split at all. An explicit check, not an ``assert``, so that
    it also holds under ``python -O``."""
    ids = splits[schema.ID_COLUMN].astype(str)
    split_of = splits["split"].groupby(ids).agg(lambda s: "+".join(sorted(set(s))))
    leaked = sorted(s for s in {str(s) for s in seen} if split_of.get(s) != "train")
    if leaked:
        shown = ", ".join(f"{s} ({split_of.get(s, 'in no split')})" for s in leaked[:5])
        more = f" and {len(leaked) - 5} more" if len(leaked) > 5 else ""
        raise LeakageError(
            f"{what} saw {len(leaked)} subject(s) outside the training split: {shown}{more}"
        )


def _fit_network(
    views: dict[str, dict[str, Callable]],
    clinical: pd.DataFrame,
    splits: pd.DataFrame,
    settings: EmbeddingSettings,
    prefix: str,
    prefix_params: bool = False,
) -> tuple[Any, dict[str, float], list[str]]:
    """One multi-task ResNet-50 on ``splits``' training subjects (early stopping on its
    validation subjects); its metrics and the subjects its target scaler was fitted on."""
    from face_health.embedding.model import ViewDataModule, fit_embedding_model

    names = list(schema.TARGET_NAMES)
    data = ViewDataModule(
        views,
        clinical[[schema.ID_COLUMN, *names]],
        splits,
        target_names=names,
        image_size=settings.image_size,
        views_per_subject_per_epoch=settings.views_per_subject_per_epoch,
        batch_size=settings.batch_size,
        seed=settings.seed,
    )
    # What the network and the target scaler learn from: training subjects only.
    _check_training_only(data.subjects["train"], splits, "the ResNet's training views")
    _check_training_only(data.scaler.fitted_on, splits, "the embedding's target scaler")
    module, metrics = fit_embedding_model(
        data,
        module_options={
            "target_names": names,
            "target_kinds": [schema.TARGET_BY_NAME[n].kind for n in names],
            **settings.module,
        },
        trainer_options=settings.trainer,
        logger=lightning_logger(prefix, prefix_params=prefix_params),
        patience=settings.patience,
        seed=settings.seed,
    )
    return module, metrics, list(data.scaler.fitted_on)


def train_embedding_model(
    face_views: dict[str, Callable],
    clinical: pd.DataFrame,
    splits: pd.DataFrame,
    embedding: dict[str, Any],
) -> tuple[Any, dict[str, float]]:
    """Fit the multi-task ResNet-50 on the training split's views (early stopping on the
    validation split); per-epoch metrics go to the MLflow run.

    With ``embedding.cross_fit_folds: k`` (k >= 2), ``k`` networks instead, network ``j``
    blind to fold ``j`` of the training subjects (``embedding.cross_fit``): a
    ``CrossFittedEmbedding``, whose embeddings of each training subject are out-of-sample."""
    settings = EmbeddingSettings.from_parameters(embedding)
    views = _views_by_subject(face_views)
    if settings.cross_fit_folds < 2:
        module, metrics, scaled_on = _fit_network(views, clinical, splits, settings, "embedding")
        return module, {**metrics, "scaler_fitted_on": len(scaled_on)}

    from face_health.embedding.cross_fit import CrossFittedEmbedding, assign_folds, fold_splits

    k = settings.cross_fit_folds
    folds = assign_folds(subjects_in(splits, "train"), k, seed=settings.seed)
    members, metrics, scaled_on = [], {}, set()
    for j in range(k):
        logger.info(
            "cross-fitting: network %d of %d, blind to %d training subjects",
            j + 1,
            k,
            sum(f == j for f in folds.values()),
        )
        module, fold_metrics, fitted_on = _fit_network(
            views,
            clinical,
            fold_splits(splits, folds, j),
            settings,
            f"embedding_f{j}",
            prefix_params=True,
        )
        if set(fitted_on) & {s for s, f in folds.items() if f == j}:  # explicit, not assert
            raise LeakageError(f"network {j} of the cross-fit saw its own held-out fold")
        members.append(module)
        scaled_on |= set(fitted_on)
        metrics.update({f"f{j}_{name}": value for name, value in fold_metrics.items()})
    metrics["best_val_loss"] = float(np.mean([metrics[f"f{j}_best_val_loss"] for j in range(k)]))
    metrics["train_seconds"] = float(sum(metrics[f"f{j}_train_seconds"] for j in range(k)))
    metrics["cross_fit_folds"] = k
    metrics["scaler_fitted_on"] = len(scaled_on)
    return CrossFittedEmbedding(members, folds), metrics


def embedding_folds(embedding_model: Any) -> pd.DataFrame:
    """Each training subject's cross-fitting fold (``subject_id``, ``fold``); no rows when
    the embedding is a single network (``embedding.cross_fit_folds`` < 2)."""
    folds = getattr(embedding_model, "folds", None) or {}
    return pd.DataFrame(
        {schema.ID_COLUMN: list(folds), "fold": [int(j) for j in folds.values()]},
        columns=[schema.ID_COLUMN, "fold"],
    ).astype({schema.ID_COLUMN: str, "fold": int})


def embed_subjects(
    embedding_model: Any, face_views: dict[str, Callable], embedding: dict[str, Any]
) -> pd.DataFrame:
    """One embedding per subject (every split): the mean (or concatenation) of its views';
    one block of columns per network when cross-fitted (``emb_f{j}_*``)."""
    from face_health.embedding.cross_fit import embed_views

    settings = EmbeddingSettings.from_parameters(embedding)
    return embed_views(
        embedding_model,
        _views_by_subject(face_views),
        image_size=settings.image_size,
        aggregate=settings.aggregate,
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


def _subject_regions(job: tuple, centroids: dict, settings: RadiomicsSettings):
    mesh_loader, landmark_loader, fitted_loader = job
    fitted = None if fitted_loader is None else fitted_loader()[["x", "y", "z"]].to_numpy(float)
    subject = subject_local_features(mesh_loader(), landmark_loader(), fitted, centroids, settings)
    # the region labels (one row per mesh face) wait in the run's spool until they are saved
    return spooled(pd.DataFrame({"region": subject.labels})), subject.radiomics, subject.qc


def extract_region_radiomics(
    aligned_meshes: dict[str, Callable[[], trimesh.Trimesh]],
    aligned_landmarks: dict[str, Callable[[], pd.DataFrame]],
    aligned_fitted_faces: dict[str, Callable[[], pd.DataFrame]],
    template_region_centroids: dict[str, list[float]],
    radiomics: dict[str, Any],
    qc_parameters: dict[str, Any],
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame, plt.Figure]:
    """Segment the 20 regions of every aligned face and extract their radiomic features.

    With ``radiomics.region_topology: fitted`` (default) and a fitted face model for the
    subject, the regions come from the model's fixed topology (``fitted.transfer_regions``);
    otherwise (``scan``, or ``landmarks.method: cnn``) they are cut on the scan's own graph.

    Returns per-subject region labels (one row per mesh face), the ``region_radiomics``
    table (one row per subject, columns ``<region>__<feature>``), a QC row per subject and
    a picture of the region map on a few faces.
    """
    settings = RadiomicsSettings.from_parameters(radiomics)
    jobs = {
        sid: (loader, aligned_landmarks[f"{sid}.csv"], aligned_fitted_faces.get(sid))
        for sid, loader in aligned_meshes.items()
        if f"{sid}.csv" in aligned_landmarks
    }
    outcomes = map_subjects(
        _subject_regions,
        jobs,
        n_jobs=settings.n_jobs,
        desc="regions and radiomics",
        centroids=template_region_centroids,
        settings=settings,
    )
    labels, rows, qc_rows = {}, [], []
    for sid, outcome in outcomes.items():
        if not outcome.ok:
            qc_rows.append(outcome.failed_row("region"))
            continue
        labels[sid], subject_radiomics, subject_qc = outcome.value
        rows.append({"subject_id": sid, **subject_radiomics})
        qc_rows.append({"subject_id": sid, **subject_qc})
    limit = QcSettings.from_parameters(qc_parameters).max_failed_fraction
    check_failures(pd.DataFrame(qc_rows), "region", max_failed_fraction=limit)
    shown = sorted(labels)[: settings.picture_subjects]
    picture = region_map_figure(
        [(sid, aligned_meshes[sid](), _labels_to_map(loaded(labels[sid]))) for sid in shown]
    )
    return labels, pd.DataFrame(rows), pd.DataFrame(qc_rows), picture


def _labels_to_map(table: pd.DataFrame):
    from face_health.omics.regions import RegionMap

    return RegionMap(labels=table["region"].to_numpy(), boundaries={})


def fit_facial_omics(
    region_radiomics: pd.DataFrame, splits: pd.DataFrame, facial_omics: dict[str, Any]
) -> tuple[FacialOmics, pd.DataFrame, plt.Figure]:
    """Standardise + PCA fitted on the training split only -> ``local_features``."""
    settings = FacialOmicsSettings.from_parameters(facial_omics)
    train = set(subjects_in(splits, "train"))
    model = FacialOmics(
        n_components=settings.n_components,
        max_missing=settings.max_missing,
        per_region=settings.per_region,
    ).fit(region_radiomics[region_radiomics[schema.ID_COLUMN].isin(train)])
    _check_training_only(model.fitted_on_, splits, "the facial-omics PCA")
    logger.info(
        "facial omics: %d features -> %d components (%.0f%% of the variance)",
        len(model.columns_),
        len(model.explained_variance_ratio_),
        100 * model.explained_variance_ratio_.sum(),
    )
    return model, model.transform(region_radiomics), explained_variance_figure(model)


def fit_shape_features(
    aligned_fitted_faces: dict[str, Callable[[], pd.DataFrame]],
    splits: pd.DataFrame,
    shape_features: dict[str, Any],
) -> tuple[ShapeFeatures, pd.DataFrame]:
    """The shape family (``omics.shape``): identity and expression coefficients and the
    displacement PCA of every fitted face, fitted on the training split only.

    Without fitted faces (``landmarks.method: cnn``) the family is empty: a model without
    columns and a table of subject ids only (``modelling.inputs`` naming it use the others)."""
    settings = ShapeFeatureSettings.from_parameters(shape_features)
    faces = {
        sid: loader()[["x", "y", "z"]].to_numpy(float)
        for sid, loader in sorted(aligned_fitted_faces.items())
    }
    if not faces:
        logger.warning("no fitted faces (landmarks.method: cnn): no shape features")
    train = set(subjects_in(splits, "train"))
    model = ShapeFeatures(n_displacement=settings.n_displacement).fit(
        {sid: v for sid, v in faces.items() if sid in train}
    )
    _check_training_only(model.fitted_on_, splits, "the shape features")
    logger.info(
        "shape features: %d columns (%d displacement components, %.0f%% of its variance)",
        len(model.columns_),
        len(model.explained_variance_ratio_),
        100 * model.explained_variance_ratio_.sum(),
    )
    return model, model.transform(faces)
