"""Scoring new scans with a trained model: the whole method for one raw scan at a time.

``ScanScorer`` bundles what ``training`` fitted (landmark network, template, ResNet-50,
facial-omics PCA, per-target MLPs) and runs ingest -> landmarks -> alignment -> views ->
features -> predictions. ``FaceHealthPyfunc`` wraps it as an MLflow pyfunc model so that a
run id or a registered alias loads it; ``newest_model_uri`` finds the newest model that
``training`` logged in a tracking backend.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import trimesh

from face_health import schema
from face_health.alignment.similarity import (
    Template,
    align_face,
    landmark_table_to_dict,
    transform_points,
)
from face_health.ingest.scan import IngestSettings, ingest_scan

MODEL_NAME = "face_health"
ARTIFACT_PATH = "face_health_model"


@dataclass
class AlignedFace:
    """One scan as the model sees it: aligned to the template and cropped (mm), its
    landmarks in that frame, its 20 regions, the detector's table (scan frame) and QC."""

    mesh: trimesh.Trimesh
    landmarks: dict[str, np.ndarray]
    regions: Any  # face_health.omics.regions.RegionMap
    detected: pd.DataFrame
    qc: dict[str, Any]


@dataclass
class ScanScorer:
    """Everything needed to score a raw scan, fitted by one ``training`` run."""

    landmark_checkpoint: dict
    template_landmarks: pd.DataFrame
    embedding_model: Any
    template_region_centroids: dict[str, list[float]]
    facial_omics: Any
    health_models: Any
    options: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    _detector: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_detector"] = None  # rebuilt from the checkpoint after unpickling
        return state

    def _landmark_detector(self):
        if self._detector is None:
            import io

            import torch

            from face_health.landmarks.detector import LandmarkDetector

            buffer = io.BytesIO()
            torch.save(self.landmark_checkpoint, buffer)
            buffer.seek(0)
            self._detector = LandmarkDetector.from_checkpoint(buffer)
        return self._detector

    def warm_up(self) -> None:
        """Build the landmark detector now rather than on the first scan (a service)."""
        self._landmark_detector()

    def ingest(
        self, source: str | Path | Callable[[], trimesh.Trimesh], subject_id: str
    ) -> tuple[trimesh.Trimesh | None, dict[str, Any]]:
        """Read and clean one raw scan as the training run did (the same ``IngestSettings``,
        ``min_component_fraction`` included): mesh in mm and its QC."""
        settings = IngestSettings.from_parameters(self.options.get("ingest"))
        return ingest_scan(source, subject_id, **settings.as_kwargs())

    def align(self, mesh: trimesh.Trimesh) -> AlignedFace:
        """Landmarks (the model's detector), alignment to the model's template, face crop and
        the 20 regions: what the features are computed from."""
        from face_health.landmarks.fitted import face_regions
        from face_health.landmarks.locate import fit_settings, locate_landmarks

        landmarks = self.options.get("landmarks", {})
        table, landmark_qc, fitted = locate_landmarks(
            self._landmark_detector(),
            mesh,
            method=str(landmarks.get("method", "fit")),
            settings=fit_settings(landmarks.get("model_fit")),
            min_confidence=float(landmarks.get("min_confidence", 0.3)),
        )
        found = table[table["status"] == "ok"]
        template = Template(
            list(self.template_landmarks["name"]),
            self.template_landmarks[["x", "y", "z"]].to_numpy(float),
        )
        alignment = self.options.get("alignment", {})
        aligned, aligned_landmarks, fit = align_face(
            mesh,
            landmark_table_to_dict(found),
            template,
            allow_scale=bool(alignment.get("scale", True)),
            crop_margin_mm=float(alignment.get("crop_margin_mm", 10.0)),
        )
        qc = {
            **{k: v for k, v in landmark_qc.items() if not k.startswith("fit_residual_mm_")},
            "alignment_residual_mm": round(fit["residual_mm"], 2),
        }
        regions = face_regions(
            aligned,
            aligned_landmarks,
            None if fitted is None else transform_points(fit["matrix"], fitted),
            self.options.get("radiomics", {}).get("region_topology", "fitted"),
        )
        return AlignedFace(aligned, aligned_landmarks, regions, table, qc)

    def features(self, mesh: trimesh.Trimesh, subject_id: str) -> tuple[pd.DataFrame, dict]:
        """Global + local features of one clean mesh (mm), and the QC of each stage."""
        from face_health.embedding.model import subject_embeddings
        from face_health.omics.radiomics import subject_radiomics
        from face_health.omics.regions import region_qc
        from face_health.views.rendering import render_directional_views

        face = self.align(mesh)
        qc: dict[str, Any] = dict(face.qc)
        aligned, region_map = face.mesh, face.regions
        views = render_directional_views(aligned, self.options.get("views", {}))
        embedding_options = self.options.get("embedding", {})
        global_row = subject_embeddings(
            self.embedding_model,
            {subject_id: views},
            image_size=int(embedding_options.get("image_size", 112)),
            aggregate=embedding_options.get("aggregate", "mean"),
        )
        qc.update(region_qc(region_map, aligned))
        radiomics_options = self.options.get("radiomics", {})
        radiomics = subject_radiomics(
            aligned,
            {r: region_map.faces_of(r) for r in schema.REGIONS},
            template_centroids={
                r: np.asarray(c) for r, c in self.template_region_centroids.items()
            },
            mm_per_pixel=float(radiomics_options.get("mm_per_pixel", 0.5)),
            levels=int(radiomics_options.get("levels", 32)),
        )
        local_row = self.facial_omics.transform(
            pd.DataFrame([{schema.ID_COLUMN: subject_id, **radiomics}])
        )
        features = global_row.merge(local_row, on=schema.ID_COLUMN)
        return features, qc

    def score(
        self, source: str | Path | Callable[[], trimesh.Trimesh], subject_id: str | None = None
    ) -> dict[str, Any]:
        """Predict every target for one raw scan (a file, or a loader of one). Never raises
        for a bad scan: the record then says ``qc_status: failed`` and why, with no
        predictions."""
        if subject_id is None:
            if callable(source):
                raise ValueError("a subject_id is needed when the scan is given as a loader")
            subject_id = Path(source).stem
        started = time.perf_counter()
        record: dict[str, Any] = {schema.ID_COLUMN: subject_id, "model_run_id": self.run_id}
        mesh, ingest_qc = self.ingest(source, subject_id)
        record["qc_status"] = ingest_qc["status"]
        record["qc_reason"] = ingest_qc["reason"]
        if mesh is not None and not (ingest_qc["has_texture"] or ingest_qc["has_vertex_colors"]):
            # Skin colour and texture are half the features: without them the model would
            # answer from shape alone something it never learnt (ages off by decades).
            record["qc_status"] = "failed"
            record["qc_reason"] = (
                "no colour: the model reads skin colour and texture, and this scan has neither "
                "a texture image nor vertex colours (for an OBJ, send its MTL and texture too)"
            )
            mesh = None
        if mesh is not None:
            try:
                features, stage_qc = self.features(mesh, subject_id)
                predictions = self.health_models.predict(features, model="mlp")
                record.update(predictions.drop(columns=schema.ID_COLUMN).iloc[0].to_dict())
                record.update(stage_qc)
                if stage_qc.get("region_status") == "warning":
                    record["qc_status"] = "warning"
                    record["qc_reason"] = _join(record["qc_reason"], stage_qc["region_reason"])
            except Exception as exc:  # noqa: BLE001 - one bad scan must not stop a batch
                record["qc_status"] = "failed"
                record["qc_reason"] = _join(record["qc_reason"], f"{type(exc).__name__}: {exc}")
        record["seconds"] = round(time.perf_counter() - started, 2)
        return record


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def predictions_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records of ``ScanScorer.score`` -> the ``predictions`` table: every target, its unit
    in the column name (``age_years``, ``bmi_kg_m2``; probabilities as ``anemia_probability``),
    QC status and reason, and the model's run id."""
    rows = []
    for record in records:
        row = {schema.ID_COLUMN: record[schema.ID_COLUMN]}
        for target in schema.TARGETS:
            value = record.get(target.name, math.nan)
            row[column_name(target.name)] = value
        for key in ("qc_status", "qc_reason", "model_run_id", "seconds"):
            row[key] = record.get(key)
        rows.append(row)
    return pd.DataFrame(rows)


def column_name(target: str) -> str:
    t = schema.TARGET_BY_NAME[target]
    if t.kind != "regression":
        return f"{target}_probability"
    unit = t.unit.replace("/", "_").replace("^2", "2").replace("%", "percent")
    return f"{target}_{unit}"


def json_record(record: dict[str, Any]) -> dict[str, Any]:
    """One scan's predictions as JSON: keys named as in DESIGN.md (``age``, ``bmi``, ...,
    ``anemia``) each with ``value`` and ``unit`` (``probability`` for binary targets)."""
    out: dict[str, Any] = {schema.ID_COLUMN: record[schema.ID_COLUMN]}
    for target in schema.TARGETS:
        value = record.get(target.name)
        value = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        unit = target.unit if target.kind == "regression" else "probability"
        out[target.name] = {
            "value": None if value is None else round(float(value), 4),
            "unit": unit,
        }
    out["qc"] = {"status": record.get("qc_status"), "reason": record.get("qc_reason") or ""}
    out["model_run_id"] = record.get("model_run_id")
    return out


try:  # mlflow is a dependency; the class below is what a logged model unpickles into.
    import mlflow.pyfunc

    class FaceHealthPyfunc(mlflow.pyfunc.PythonModel):
        """MLflow pyfunc around a ``ScanScorer``: input a DataFrame with a ``scan`` column
        of file paths (and optionally ``subject_id``); output the ``predictions`` table."""

        def load_context(self, context) -> None:
            import pickle

            with open(context.artifacts["scorer"], "rb") as fh:
                self.scorer: ScanScorer = pickle.load(fh)

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            if "scan" not in model_input:
                raise ValueError("the model input needs a 'scan' column of scan file paths")
            ids = model_input.get(schema.ID_COLUMN, pd.Series([None] * len(model_input)))
            records = [
                self.scorer.score(path, sid)
                for path, sid in zip(model_input["scan"], ids, strict=True)
            ]
            return predictions_table(records)

except ImportError:  # pragma: no cover - mlflow is always installed with the project
    FaceHealthPyfunc = None  # type: ignore[assignment,misc]


def log_scorer(scorer: ScanScorer, *, register: bool = True, alias: str = "newest") -> str:
    """Log ``scorer`` as a pyfunc model in the active MLflow run (register it under
    ``MODEL_NAME`` with ``alias``); returns the model URI."""
    import pickle
    import tempfile

    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run to log the model to")
    scorer.run_id = run.info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scorer.pkl"
        with open(path, "wb") as fh:
            pickle.dump(scorer, fh)
        info = mlflow.pyfunc.log_model(
            name=ARTIFACT_PATH,
            python_model=FaceHealthPyfunc(),
            artifacts={"scorer": str(path)},
            registered_model_name=MODEL_NAME if register else None,
        )
    mlflow.set_tag("face_health.model_logged", "true")
    if register and info.registered_model_version is not None:
        mlflow.MlflowClient().set_registered_model_alias(
            MODEL_NAME, alias, info.registered_model_version
        )
    return f"runs:/{run.info.run_id}/{ARTIFACT_PATH}"


def newest_model_uri(tracking_uri: str | None = None, experiment: str = "face_health") -> str:
    """URI of the newest model that ``training`` logged in the tracking backend."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string="tags.`face_health.model_logged` = 'true'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs.empty:
        raise LookupError(
            f"no trained model in the MLflow backend {mlflow.get_tracking_uri()}: "
            "run `kedro run --pipelines=training` first, or pass a model URI"
        )
    return f"runs:/{runs.iloc[0]['run_id']}/{ARTIFACT_PATH}"


def resolve_model_uri(model: str | None, tracking_uri: str | None = None) -> str:
    """A run id, a ``models:/name@alias`` / ``runs:/`` URI, a local model folder, or ``None``
    for the newest trained model."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if not model:
        return newest_model_uri()
    if Path(model).exists() or "://" in model or model.startswith(("models:/", "runs:/")):
        return model
    if "@" in model:  # name@alias
        return f"models:/{model}"
    return f"runs:/{model}/{ARTIFACT_PATH}"  # a bare run id


def load_scorer(model: str | None = None, tracking_uri: str | None = None) -> ScanScorer:
    """Load the ``ScanScorer`` of a logged model (see ``resolve_model_uri``)."""
    import mlflow.pyfunc

    uri = resolve_model_uri(model, tracking_uri)
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().scorer
