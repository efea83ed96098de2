"""Scoring new scans with a trained model: the whole method for one raw scan at a time.

``ScanScorer`` bundles what ``training`` fitted (landmark network, template, ResNet-50,
facial-omics PCA, per-target models: the MLP, the linear model or their average, as
chosen on the validation subjects) and runs ingest -> landmarks -> alignment -> views ->
features -> predictions. ``FaceHealthPyfunc`` wraps it as an MLflow pyfunc model so that a
run id or a registered alias loads it; ``newest_model_uri`` finds the newest model that
``training`` logged in a tracking backend.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import trimesh

from face_health import schema
from face_health.alignment.similarity import align_subject
from face_health.config import SCAN_SECTIONS
from face_health.errors import DataError
from face_health.ingest.scan import ingest_scan
from face_health.ingest.storage import as_stored

MODEL_NAME = "face_health"
ARTIFACT_PATH = "face_health_model"


@dataclass
class AlignedFace:
    """One scan as the model sees it: aligned to the template and cropped (mm), its
    landmarks there, its fitted face model moved with it (float32; None with
    ``landmarks.method: cnn``), the detector's table (scan frame) and the QC so far."""

    mesh: trimesh.Trimesh
    landmarks: pd.DataFrame
    fitted: np.ndarray | None
    detected: pd.DataFrame
    qc: dict[str, Any]


@dataclass
class ScanScorer:
    """Everything needed to score a raw scan, fitted by one ``training`` run.

    Each stage is the function the pipeline's node runs, with the settings built from the
    training run's parameters (``options``), and meshes pass through the same storage
    encoding at the points where the pipeline stores them (``as_stored``): a scan scored has
    the same features as the same scan in a training run (``tests/test_scorer_parity.py``).
    """

    landmark_checkpoint: dict
    template_landmarks: pd.DataFrame
    embedding_model: Any
    template_region_centroids: dict[str, list[float]]
    facial_omics: Any
    health_models: Any
    options: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    #: ``modelling.ood.DistributionMonitor``: how far a scan's features are from the training
    #: cohort. None in a model logged before it existed (``check_settings`` refuses those).
    ood_monitor: Any = None
    #: ``omics.shape.ShapeFeatures``: the shape family from the fitted face. None in a model
    #: logged before it existed (its health models use no shape columns).
    shape_model: Any = None
    _detector: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_detector"] = None  # rebuilt from the checkpoint after unpickling
        return state

    def settings(self, section: str) -> Any:
        """The training run's settings of ``section`` (see ``face_health.config``)."""
        return SCAN_SECTIONS[section].from_parameters(self.options.get(section))

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
        """The ingest stage with the training run's ``ingest`` settings: the clean mesh (mm,
        as ``clean_meshes`` stores it) and its QC row."""
        mesh, record = ingest_scan(source, subject_id, **self.settings("ingest").as_kwargs())
        return (None if mesh is None else as_stored(mesh)), record

    def align(self, mesh: trimesh.Trimesh) -> AlignedFace:
        """The landmark and alignment stages (the model's detector and template): the face
        in the template frame, as ``aligned_meshes`` stores it."""
        from face_health.landmarks.detector import detect_one

        table, landmark_qc, fitted = detect_one(
            mesh, self._landmark_detector(), self.settings("landmarks")
        )
        subject = align_subject(
            mesh, table, fitted, self.template_landmarks, self.settings("alignment")
        )
        qc = {
            **{k: v for k, v in landmark_qc.items() if not k.startswith("fit_residual_mm_")},
            "alignment_residual_mm": round(subject.qc["residual_mm"], 2),
        }
        if subject.qc["alignment_status"] != "ok":
            qc |= {
                "alignment_status": "warning",
                "alignment_reason": subject.qc["alignment_reason"],
            }
        moved = None if subject.fitted is None else subject.fitted.to_numpy(float)
        return AlignedFace(as_stored(subject.mesh), subject.landmarks, moved, table, qc)

    def regions(self, face: AlignedFace) -> Any:
        """The 20 regions of an aligned face (``RegionMap``), as the feature stage cuts them."""
        from face_health.omics.local_features import subject_regions

        return subject_regions(face.mesh, face.landmarks, face.fitted, self.settings("radiomics"))

    def stage_features(
        self, mesh: trimesh.Trimesh, subject_id: str
    ) -> tuple[pd.DataFrame, dict[str, float], dict[str, Any], pd.DataFrame]:
        """The pipeline's feature tables for one clean mesh: its ``global_features`` row,
        its ``region_radiomics`` row, the QC of each stage and its ``shape_features`` row."""
        from face_health.embedding.cross_fit import embed_views
        from face_health.omics.local_features import subject_local_features
        from face_health.views.rendering import render_directional_views

        face = self.align(mesh)
        qc: dict[str, Any] = dict(face.qc)
        views = render_directional_views(face.mesh, self.settings("views"))
        embedding = self.settings("embedding")
        global_row = embed_views(
            self.embedding_model,
            {subject_id: views},
            image_size=embedding.image_size,
            aggregate=embedding.aggregate,
        )
        local = subject_local_features(
            face.mesh,
            face.landmarks,
            face.fitted,
            self.template_region_centroids,
            self.settings("radiomics"),
        )
        qc.update(local.qc)
        shape_row = self._shape_row(face.fitted, subject_id)
        return global_row, {schema.ID_COLUMN: subject_id, **local.radiomics}, qc, shape_row

    def _shape_row(self, fitted: np.ndarray | None, subject_id: str) -> pd.DataFrame:
        """The ``shape_features`` row of one aligned fitted face (subject id only when the
        model has no shape family or the face no fit)."""
        if self.shape_model is None or fitted is None:
            return pd.DataFrame({schema.ID_COLUMN: [subject_id]})
        return self.shape_model.transform({subject_id: fitted})

    def features(self, mesh: trimesh.Trimesh, subject_id: str) -> tuple[pd.DataFrame, dict]:
        """Global, local (PCA) and shape features of one clean mesh (mm), and the QC of each
        stage: the row ``assemble_model_input`` makes in training."""
        from face_health.modelling.models import model_input_table

        global_row, radiomics, qc, shape_row = self.stage_features(mesh, subject_id)
        local_row = self.facial_omics.transform(pd.DataFrame([radiomics]))
        return model_input_table(global_row, local_row, shape_row), qc

    def score(
        self, source: str | Path | Callable[[], trimesh.Trimesh], subject_id: str | None = None
    ) -> dict[str, Any]:
        """Predict every target for one raw scan (a file, or a loader of one). Never raises
        for bad scan data: the record then says ``qc_status: failed`` and why, with no
        predictions; anything else (a bug) raises."""
        if subject_id is None:
            if callable(source):
                raise ValueError("a subject_id is needed when the scan is given as a loader")
            subject_id = Path(source).stem
        started = time.perf_counter()
        record: dict[str, Any] = {schema.ID_COLUMN: subject_id, "model_run_id": self.run_id}
        mesh, ingest_qc = self.ingest(source, subject_id)
        record["qc_status"] = ingest_qc["status"]
        record["qc_reason"] = ingest_qc["reason"]
        if mesh is not None:
            try:
                features, stage_qc = self.features(mesh, subject_id)
            except DataError as exc:  # the scan's data, not the code: a failed record
                record["qc_status"] = "failed"
                record["qc_reason"] = _join(record["qc_reason"], f"{type(exc).__name__}: {exc}")
            else:
                # Each target's model as chosen on the validation subjects; the MLP for a
                # model logged before the choice existed (no ``choice_``). Imported here: the
                # service's front process imports this module and never needs torch.
                from face_health.modelling.models import served_model

                served = served_model(self.health_models)
                raw = self.health_models.predict(features, model=served, bounded=False)
                predictions = raw.drop(columns=schema.ID_COLUMN).iloc[0].to_dict()
                ood = self.out_of_distribution(features)
                ood_reason = ood.pop("ood_reason", "")
                record.update(stage_qc)
                record.update(ood)
                refused = self.refusal(predictions, ood)
                if refused:  # an answer no person has, or a face unlike any the model knows
                    record["qc_status"] = "failed"
                    record["qc_reason"] = _join(record["qc_reason"], refused)
                else:
                    record.update(predictions)
                    warnings = [
                        stage_qc[f"{stage}_reason"]
                        for stage in ("alignment", "region")
                        if stage_qc.get(f"{stage}_status") == "warning"
                    ]
                    if ood.get("ood_flag"):  # scored, but further out than most faces it knows
                        warnings.append(ood_reason)
                    for reason in warnings:
                        record["qc_status"] = (
                            "warning" if record["qc_status"] == "ok" else record["qc_status"]
                        )
                        record["qc_reason"] = _join(record["qc_reason"], reason)
        record["seconds"] = round(time.perf_counter() - started, 2)
        return record

    def refusal(self, predictions: dict[str, Any], ood: dict[str, Any]) -> str:
        """Why the predictions of a scan must not be given ('' when they may): a regression
        target outside its physiological range (``schema.Target.plausible``: no person has
        it, so the features are not a face the model can read), or an ``ood_score`` above
        ``modelling.ood_refuse_score``, carried by the ``ood_monitor`` (further from the
        training cohort than any face it was calibrated on)."""
        impossible = []
        for name in schema.REGRESSION_TARGETS:
            value = predictions.get(name)
            if value is None:
                continue
            low, high = schema.TARGET_BY_NAME[name].plausible
            if not low <= value <= high:  # NaN too
                unit = schema.TARGET_BY_NAME[name].unit
                impossible.append(f"{name} {value:.3g} {unit} (plausible {low:g}-{high:g})")
        reasons = []
        if impossible:
            reasons.append(
                "the model's answers are impossible for a person, so the scan is not a face it "
                "can read: " + ", ".join(impossible)
            )
        limit = self.ood_monitor.refuse_score if self.ood_monitor is not None else math.inf
        score = ood.get("ood_score")
        if score is not None and math.isfinite(score) and score > limit:
            reasons.append(
                f"too far from the training cohort to predict: out-of-distribution score "
                f"{score:.1f} > {limit:g} (modelling.ood_refuse_score; 1 = the 99th percentile "
                "of the validation subjects)"
            )
        return "; ".join(reasons)

    def out_of_distribution(self, features: pd.DataFrame) -> dict[str, Any]:
        """The ``ood_monitor``'s verdict on one scan's features: ``ood_<space>`` distances,
        ``ood_score`` (1.0 = at the 99th percentile of the validation subjects), ``ood_flag``
        and ``ood_reason``; empty without a monitor (a scorer built by hand)."""
        if self.ood_monitor is None:
            return {}
        row = self.ood_monitor.score(features).iloc[0]
        out: dict[str, Any] = {
            key: float(row[key])
            for key in row.index
            if str(key).startswith("ood_") and key not in ("ood_flag", "ood_reason")
        }
        out["ood_flag"] = bool(row["ood_flag"])
        out["ood_reason"] = str(row["ood_reason"])
        return out


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def predictions_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records of ``ScanScorer.score`` -> the ``predictions`` table: every target, its unit
    in the column name (``age_years``, ``bmi_kg_m2``; probabilities as ``anemia_probability``),
    the out-of-distribution score and flag (``ood_score`` 1.0 = at the 99th percentile of the
    validation subjects; empty for a failed scan), QC status and reason, and the model's run
    id."""
    rows = []
    for record in records:
        row = {schema.ID_COLUMN: record[schema.ID_COLUMN]}
        for target in schema.TARGETS:
            value = record.get(target.name, math.nan)
            row[column_name(target.name)] = value
        row["ood_score"] = math.nan if record.get("ood_score") is None else record["ood_score"]
        row["ood_flag"] = record.get("ood_flag")
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
    ``anemia``) each with ``value`` and ``unit`` (``probability`` for binary targets); ``ood``:
    the out-of-distribution ``score`` (distance / 99th validation percentile, largest over the
    feature spaces), its ``flag`` (score > 1) and each space's Mahalanobis distance."""
    out: dict[str, Any] = {schema.ID_COLUMN: record[schema.ID_COLUMN]}
    for target in schema.TARGETS:
        value = record.get(target.name)
        value = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        unit = target.unit if target.kind == "regression" else "probability"
        out[target.name] = {
            "value": None if value is None else round(float(value), 4),
            "unit": unit,
        }
    out["ood"] = {
        "score": _json_number(record.get("ood_score")),
        "flag": None if record.get("ood_flag") is None else bool(record["ood_flag"]),
        "spaces": {
            key[len("ood_") :]: _json_number(value)
            for key, value in record.items()
            if key.startswith("ood_") and key not in ("ood_score", "ood_flag", "ood_reason")
        },
    }
    out["qc"] = {"status": record.get("qc_status"), "reason": record.get("qc_reason") or ""}
    out["model_run_id"] = record.get("model_run_id")
    return out


def _json_number(value: Any, digits: int = 4) -> float | None:
    """``value`` rounded, or None when missing or not finite (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


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


def model_requirements() -> list[str]:
    """What the logged model needs installed: this package at its version and its runtime
    dependencies at the versions of this environment (read from the installed metadata).
    Given explicitly, MLflow does not infer them by loading the model in a subprocess (10 s
    of a default run, and its guess left out torch and timm)."""
    import importlib.metadata as metadata
    import re

    needed = [f"face-health=={metadata.version('face-health')}"]
    for requirement in metadata.requires("face-health") or []:
        if "extra ==" in requirement:
            continue  # development tools
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
        marker = requirement.split(";", 1)[1].strip() if ";" in requirement else ""
        try:
            pinned = f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:  # a platform-only dependency not installed here
            continue
        needed.append(f"{pinned}; {marker}" if marker else pinned)
    return needed


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
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        # The input is a table of scan paths (an input example would be scored to infer it).
        signature = ModelSignature(
            inputs=Schema(
                [ColSpec("string", "scan"), ColSpec("string", schema.ID_COLUMN, required=False)]
            )
        )
        info = mlflow.pyfunc.log_model(
            name=ARTIFACT_PATH,
            python_model=FaceHealthPyfunc(),
            artifacts={"scorer": str(path)},
            signature=signature,
            registered_model_name=MODEL_NAME if register else None,
            pip_requirements=model_requirements(),
        )
    mlflow.set_tag("face_health.model_logged", "true")
    if register and info.registered_model_version is not None:
        mlflow.MlflowClient().set_registered_model_alias(
            MODEL_NAME, alias, info.registered_model_version
        )
    return f"runs:/{run.info.run_id}/{ARTIFACT_PATH}"


def newest_model_uri(tracking_uri: str | None = None, experiment: str = "face_health") -> str:
    """URI of the newest model that ``training`` logged in the tracking backend (the given
    one, else MLflow's current one; the process-wide tracking URI is left alone)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = (
        client.search_runs(
            [found.experiment_id],
            filter_string="tags.`face_health.model_logged` = 'true'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if found is not None
        else []
    )
    if not runs:
        raise LookupError(
            f"no trained model in the MLflow backend {tracking_uri or mlflow.get_tracking_uri()}: "
            "run `kedro run --pipelines=training` first, or pass a model URI"
        )
    return f"runs:/{runs[0].info.run_id}/{ARTIFACT_PATH}"


def resolve_model_uri(model: str | None, tracking_uri: str | None = None) -> str:
    """A run id, a ``models:/name@alias`` / ``runs:/`` URI, a local model folder, or ``None``
    for the newest trained model (looked up in ``tracking_uri``)."""
    if not model:
        return newest_model_uri(tracking_uri)
    if Path(model).exists() or "://" in model or model.startswith(("models:/", "runs:/")):
        return model
    if "@" in model:  # name@alias
        return f"models:/{model}"
    return f"runs:/{model}/{ARTIFACT_PATH}"  # a bare run id


def load_scorer(model: str | None = None, tracking_uri: str | None = None) -> ScanScorer:
    """Load the ``ScanScorer`` of a logged model (see ``resolve_model_uri``) from
    ``tracking_uri`` (default: MLflow's current one, which this does not change). The model's
    files are downloaded into a temporary folder that is removed once the scorer is loaded."""
    import tempfile

    import mlflow.artifacts
    import mlflow.pyfunc

    uri = resolve_model_uri(model, tracking_uri)
    if Path(uri).exists():
        return check_settings(mlflow.pyfunc.load_model(uri).unwrap_python_model().scorer, uri)
    # MLflow 3 resolves a logged model's files partly through the process-wide backend even
    # when given a tracking URI, so the URI is in force for the download only, then restored.
    with _tracking_uri(tracking_uri), tempfile.TemporaryDirectory(prefix="face_health_") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        scorer = mlflow.pyfunc.load_model(local).unwrap_python_model().scorer
    return check_settings(scorer, uri)


def check_settings(scorer: ScanScorer, uri: str = "the model") -> ScanScorer:
    """``scorer`` once every per-scan section of its training run's parameters builds with
    this version's settings; otherwise a ``LookupError`` saying so (a model logged before a
    setting was added is refused at load, not half-way through a scan). A model without an
    out-of-distribution monitor (logged before every prediction carried an ``ood_score``) is
    refused the same way."""
    from face_health.config import SettingsError

    try:
        for section in SCAN_SECTIONS:
            scorer.settings(section)
    except SettingsError as exc:
        raise LookupError(
            f"{uri} was trained with settings this version of face_health cannot use ({exc}); "
            "retrain it with `kedro run --pipelines=training`"
        ) from exc
    if getattr(scorer, "ood_monitor", None) is None:
        raise LookupError(
            f"{uri} has no out-of-distribution monitor (it was logged before predictions "
            "carried an ood_score); retrain it with `kedro run --pipelines=training`"
        )
    return scorer


@contextlib.contextmanager
def _tracking_uri(uri: str | None) -> Iterator[None]:
    """``uri`` as MLflow's tracking URI inside the block (nothing when None), the caller's
    setting restored exactly afterwards (MLflow's own helper, which keeps an unset URI
    unset)."""
    if not uri:
        yield
        return
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):
        yield
