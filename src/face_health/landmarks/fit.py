"""Train the landmark network from annotated scans (the simulator's or a real cohort's).

Training views are rendered once per run (random directions, scales, clutter and holes, see
``views``), in parallel worker processes, then the network is fitted with Lightning on the
training split and early-stopped on the validation split.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import trimesh

from face_health import schema
from face_health.config import LandmarkSettings, LandmarkTrainingSettings
from face_health.ingest.scan import read_scan
from face_health.landmarks.views import REAL_SCAN_VARIETY, TrainingViewSettings, training_views
from face_health.parallel import map_subjects

logger = logging.getLogger(__name__)

#: Left/right landmark pairs, for horizontal-flip augmentation.
FLIP_PAIRS_BY_NAME = [(a, a[:-2] + "_l") for a in schema.LANDMARK_NAMES if a.endswith("_r")]

_RENDERER = None  # one OpenGL context per worker process


def _renderer(size: int):
    global _RENDERER
    from face_health.views.rendering import OrthoRenderer

    if _RENDERER is None or _RENDERER.size != size:
        _RENDERER = OrthoRenderer(size)
    return _RENDERER


def _render_subject(job: tuple, settings: dict, landmark_names: list[str]) -> dict:
    subject_id, source, points, seed = job
    mesh = source() if callable(source) else read_scan(source)
    view_settings = TrainingViewSettings(**settings)
    rng = np.random.default_rng(seed)
    out = training_views(
        mesh, points, landmark_names, view_settings, rng, _renderer(view_settings.size)
    )
    out["images"] = out["images"].astype(np.float16)  # halves memory; the net casts back
    return out


def annotation_points(table: pd.DataFrame, landmark_names: list[str]) -> np.ndarray:
    """``(K, 3)`` points of ``landmark_names`` from a ``name,x,y,z`` table (nan if absent)."""
    indexed = table.set_index("name")[["x", "y", "z"]]
    return indexed.reindex(landmark_names).to_numpy(float)


def render_training_set(
    scans: Mapping[str, str | Path | Callable[[], trimesh.Trimesh]],
    annotations: Mapping[str, np.ndarray],
    *,
    settings: TrainingViewSettings,
    landmark_names: list[str],
    seed: int = 0,
    n_jobs: int = 0,
) -> dict[str, np.ndarray]:
    """Render training views for every annotated scan; arrays concatenated over subjects.

    Scans whose annotation lacks any frame landmark are skipped with a warning.
    """
    seeds = np.random.SeedSequence(seed).spawn(len(scans))
    jobs = {}
    for (sid, source), s in zip(sorted(scans.items()), seeds, strict=True):
        points = annotations.get(sid)
        if points is None or np.isnan(points).any():
            logger.warning("landmark training: %s has no complete annotation; skipped", sid)
            continue
        jobs[sid] = (sid, source, points, s)
    outcomes = map_subjects(
        _render_subject,
        jobs,
        n_jobs=n_jobs,
        desc="rendering landmark training views",
        settings=asdict(settings),
        landmark_names=landmark_names,
    )
    parts = [o.value for o in outcomes.values() if o.ok]
    for key, o in outcomes.items():
        if not o.ok:
            logger.warning("landmark training: %s failed to render: %s", key, o.error)
    if not parts:
        raise ValueError("no annotated scan could be rendered for landmark training")
    return {k: np.concatenate([p[k] for p in parts]) for k in ("images", "keypoints", "visible")}


def train_landmark_network(
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray],
    *,
    landmark_names: list[str],
    settings: LandmarkTrainingSettings,
    seed: int,
    logger_: Any = None,
) -> tuple[Any, dict[str, float]]:
    """Fit the network on rendered views (``landmarks.fit``); returns the Lightning module
    and its metrics."""
    from face_health.landmarks.training import fit_landmark_model

    index = {n: i for i, n in enumerate(landmark_names)}
    flip_pairs = [(index[a], index[b]) for a, b in FLIP_PAIRS_BY_NAME if a in index and b in index]
    module_options = {
        "n_landmarks": len(landmark_names),
        "landmark_names": list(landmark_names),
        "input_size": int(train["images"].shape[-1]),
        **settings.module,
    }
    return fit_landmark_model(
        train,
        val,
        module_options=module_options,
        trainer_options=settings.trainer,
        data_options={"flip_pairs": flip_pairs, **settings.data},
        logger=logger_,
        patience=settings.patience,
        seed=seed,
        init_weights=_init_weights(settings.init_weights),
    )


def _init_weights(value: str | None) -> str | None:
    """``"shipped"`` -> the checkpoint shipped in the package; a path or None unchanged."""
    if value == "shipped":
        from face_health.landmarks.detector import shipped_checkpoint

        return str(shipped_checkpoint())
    return value


#: The ``landmarks.views`` keys that ``reshape``, ``scanner_noise`` and ``decimation`` of
#: :func:`training_options` switch together.
VARIETY_GROUPS = {
    "reshape": ("axis_scale", "warp_mm"),
    "scanner_noise": ("surface_noise_mm", "spike_probability"),
    "decimation": ("decimate_probability",),
}


def training_options(
    landmarks: Mapping[str, Any],
    *,
    epochs: int | None = None,
    lr: float | None = None,
    views_per_scan: int | None = None,
    size: int | None = None,
    n_jobs: int | None = None,
    seed: int | None = None,
    init_weights: str | None = None,
    reshape: bool | None = None,
    scanner_noise: bool | None = None,
    decimation: bool | None = None,
) -> dict[str, Any]:
    """The ``options`` of :func:`train_checkpoint`: the project's ``landmarks`` parameters
    section (what the pipeline's ``provide_landmark_model`` passes it) with single keys
    replaced, e.g. by ``face-health train-landmarks`` flags. None keeps the section's value.

    ``epochs`` and ``lr`` set ``fit.module.max_epochs`` and ``fit.module.lr``; ``views_per_scan``
    and ``size`` the ``views`` keys; ``n_jobs``, ``seed`` and ``init_weights`` (``fit``) theirs.
    ``reshape``, ``scanner_noise`` and ``decimation`` set their ``views`` keys
    (:data:`VARIETY_GROUPS`) to :data:`~face_health.landmarks.views.REAL_SCAN_VARIETY` (True)
    or to ``TrainingViewSettings``' defaults, none of that variety (False).
    """
    options = copy.deepcopy(dict(landmarks))
    views = dict(options.get("views") or {})
    fit = dict(options.get("fit") or {})
    module = dict(fit.get("module") or {})
    for key, value in (("max_epochs", epochs), ("lr", lr)):
        if value is not None:
            module[key] = value
    for key, value in (("views_per_scan", views_per_scan), ("size", size)):
        if value is not None:
            views[key] = value
    off = {f.name: f.default for f in dataclasses.fields(TrainingViewSettings)}
    for group, on in (
        ("reshape", reshape),
        ("scanner_noise", scanner_noise),
        ("decimation", decimation),
    ):
        if on is not None:
            source = REAL_SCAN_VARIETY if on else off
            views |= {k: source[k] for k in VARIETY_GROUPS[group]}
    for key, value in (("n_jobs", n_jobs), ("seed", seed)):
        if value is not None:
            options[key] = value
    if init_weights is not None:
        fit["init_weights"] = init_weights
    fit["module"] = module
    options["views"], options["fit"] = views, fit
    return options


def train_checkpoint(
    train_scans: Mapping[str, Callable[[], trimesh.Trimesh]],
    val_scans: Mapping[str, Callable[[], trimesh.Trimesh]],
    annotations: Mapping[str, pd.DataFrame],
    settings: LandmarkSettings,
    logger_: Any = None,
) -> tuple[dict, dict[str, float]]:
    """Render views of annotated training and validation scans, fit, and return the compact
    checkpoint dict (``state_dict`` in fp16, ``hparams``) with the fit's metrics."""
    import io

    import torch

    from face_health.landmarks.training import save_landmark_model

    names = list(schema.LANDMARK_NAMES)
    points = {s: annotation_points(t, names) for s, t in annotations.items()}
    view_settings = settings.views
    seed, n_jobs = settings.seed, settings.n_jobs
    train = render_training_set(
        train_scans, points, settings=view_settings, landmark_names=names, seed=seed, n_jobs=n_jobs
    )
    val_settings = TrainingViewSettings(
        **{**asdict(view_settings), "clutter_probability": 0.0, "hole_probability": 0.0}
    )
    val = render_training_set(
        val_scans, points, settings=val_settings, landmark_names=names, seed=seed + 1, n_jobs=n_jobs
    )
    module, metrics = train_landmark_network(
        train, val, landmark_names=names, settings=settings.fit, seed=seed, logger_=logger_
    )
    buffer = io.BytesIO()
    save_landmark_model(module, buffer, hparams=dict(module.hparams))
    buffer.seek(0)
    checkpoint = torch.load(buffer, map_location="cpu", weights_only=True)  # plain hparams
    metrics = {**metrics, "n_train_views": len(train["images"]), "n_val_views": len(val["images"])}
    checkpoint["provenance"] = checkpoint_provenance(
        settings, metrics, train_subjects=sorted(train_scans), val_subjects=sorted(val_scans)
    )
    return checkpoint, metrics


def checkpoint_provenance(
    settings: LandmarkSettings,
    metrics: Mapping[str, Any],
    *,
    train_subjects: list[str],
    val_subjects: list[str],
    cohort: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a trained checkpoint carries about where it came from: the code's commit, the
    training settings, the subjects it was fitted and stopped on, its validation metrics and
    (when known) the cohort's generator, version and seed. Plain values only, so that the
    file loads with ``torch.load(weights_only=True)``."""
    import datetime

    from face_health.provenance import git_commit

    commit, dirty = git_commit(Path(__file__).resolve().parent)
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": settings.to_parameters(),
        "train_subjects": list(train_subjects),
        "validation_subjects": list(val_subjects),
        "validation_metrics": {
            k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))
        },
        "cohort": dict(cohort or {}),
    }


def train_from_cohort_folder(cohort: Path, out: Path, options: dict[str, Any]) -> dict:
    """Train on a raw cohort folder (``scans/``, ``landmarks/``, ``clinical.csv``): the
    training split fits, the validation split stops early; writes the checkpoint to ``out``.
    ``options`` is a ``landmarks`` parameters mapping (built into ``LandmarkSettings``)."""
    import torch

    from face_health.ingest.clinical import read_clinical, validate_clinical
    from face_health.ingest.scan import group_scan_files
    from face_health.ingest.splits import make_splits, subjects_in

    cohort = Path(cohort)
    files = [str(p.relative_to(cohort / "scans")) for p in (cohort / "scans").rglob("*")]
    scans, _ = group_scan_files(files)
    clinical, _ = validate_clinical(read_clinical(cohort / "clinical.csv"))
    settings = LandmarkSettings.from_parameters(options)
    splits = make_splits(clinical, seed=settings.seed)
    annotated = {p.stem for p in (cohort / "landmarks").glob("*.csv")}

    def pick(split: str) -> dict[str, Path]:
        return {
            s: cohort / "scans" / scans[s]
            for s in subjects_in(splits, split)
            if s in scans and s in annotated
        }

    train, val = pick("train"), pick("validation")
    tables = {s: pd.read_csv(cohort / "landmarks" / f"{s}.csv") for s in {**train, **val}}
    checkpoint, metrics = train_checkpoint(train, val, tables, settings)
    manifest = cohort / "cohort.json"  # the simulator's manifest, for a synthetic cohort
    if manifest.is_file():
        about = json.loads(manifest.read_text())
        checkpoint["provenance"]["cohort"] = {
            k: about[k] for k in ("generator", "generator_version", "n", "seed") if k in about
        } | {"path": str(cohort)}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    return {**metrics, "n_train_subjects": len(train), "n_val_subjects": len(val)}
