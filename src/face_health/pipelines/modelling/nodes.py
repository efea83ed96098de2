"""Nodes of the modelling pipeline: fit, evaluate on the test split, report, log the model."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from face_health import schema
from face_health.config import ModellingSettings
from face_health.errors import LeakageError
from face_health.evaluation.metrics import (
    age_plots,
    condition_plots,
    evaluate,
    model_card,
    summary_figure,
)
from face_health.ingest.splits import assert_disjoint, subjects_in
from face_health.modelling.models import HealthModels
from face_health.parallel import torch_threads
from face_health.serving.scorer import ScanScorer, log_scorer

logger = logging.getLogger(__name__)

MODEL_LABELS = {"mlp": "MLP", "mean": "mean / prevalence baseline", "linear": "ridge / logistic"}


def assemble_model_input(
    global_features: pd.DataFrame, local_features: pd.DataFrame
) -> pd.DataFrame:
    """Global (``emb_*``) and local (``pc_*``) features side by side, one row per subject."""
    return global_features.merge(local_features, on=schema.ID_COLUMN, how="outer")


def _health_models(
    modelling: dict[str, Any], inputs: str | None = None, kinds=None
) -> HealthModels:
    settings = ModellingSettings.from_parameters(modelling)
    return HealthModels(
        per=settings.per,
        inputs=inputs or settings.inputs,
        kinds=tuple(kinds or settings.kinds),
        mlp_params=dataclasses.asdict(settings.mlp),
        seed=settings.seed,
    )


def train_health_models(
    model_input: pd.DataFrame,
    clinical: pd.DataFrame,
    splits: pd.DataFrame,
    modelling: dict[str, Any],
) -> HealthModels:
    """The MLPs and their baselines, fitted on the training split, early-stopped on validation."""
    try:
        assert_disjoint(splits)  # raises AssertionError explicitly (not an assert statement)
    except AssertionError as exc:
        raise LeakageError(f"the splits table is not a partition of the subjects: {exc}") from exc
    with torch_threads(ModellingSettings.from_parameters(modelling).torch_threads):
        models = _health_models(modelling).fit(model_input, clinical, splits)
    leaked = set(models.fitted_on_) - set(subjects_in(splits, "train"))
    if leaked:  # an explicit check, not an assert: it holds under python -O too
        split_of = splits.groupby(splits[schema.ID_COLUMN].astype(str))["split"].agg(set)
        shown = {s: sorted(split_of.get(str(s), {"no split"})) for s in sorted(leaked)[:5]}
        raise LeakageError(
            f"the health models were fitted on {len(leaked)} subject(s) outside the training "
            f"split (first few, with their splits): {shown}"
        )
    return models


def evaluate_on_test(
    health_models: HealthModels,
    model_input: pd.DataFrame,
    clinical: pd.DataFrame,
    splits: pd.DataFrame,
    modelling: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Test metrics with 95% bootstrap intervals for every target and model; the test
    predictions (long table); the headline metrics for MLflow."""
    test_ids = subjects_in(splits, "test")
    test_input = model_input[model_input[schema.ID_COLUMN].isin(test_ids)]
    predictions = {
        kind: health_models.predict(test_input, model=kind) for kind in health_models.kinds
    }
    metrics = evaluate(
        predictions,
        clinical,
        test_ids=test_ids,
        n_boot=ModellingSettings.from_parameters(modelling).n_bootstrap,
        seed=ModellingSettings.from_parameters(modelling).seed,
    )
    long = pd.concat([p.assign(model=kind) for kind, p in predictions.items()], ignore_index=True)
    # Each metric and its bootstrap bounds: <target>.<model>.<metric>[_ci_low|_ci_high]
    mlflow_metrics = {
        f"{r.target}.{r.model}.{r.metric}{suffix}": {"value": float(value), "step": 0}
        for r in metrics.itertuples()
        for suffix, value in (("", r.value), ("_ci_low", r.ci_low), ("_ci_high", r.ci_high))
        if np.isfinite(value)
    }
    return metrics, long, mlflow_metrics


def ablation(
    model_input: pd.DataFrame,
    clinical: pd.DataFrame,
    splits: pd.DataFrame,
    modelling: dict[str, Any],
) -> pd.DataFrame:
    """The MLP on global, local and both feature families, evaluated on the test split."""
    test_ids = subjects_in(splits, "test")
    test_input = model_input[model_input[schema.ID_COLUMN].isin(test_ids)]
    tables = []
    for inputs in ("global", "local", "both"):
        models = _health_models(modelling, inputs=inputs, kinds=("mlp",))
        with torch_threads(ModellingSettings.from_parameters(modelling).torch_threads):
            models.fit(model_input, clinical, splits)
        predictions = {f"mlp_{inputs}": models.predict(test_input, model="mlp")}
        tables.append(
            evaluate(
                predictions,
                clinical,
                test_ids=test_ids,
                n_boot=ModellingSettings.from_parameters(modelling).n_bootstrap,
                seed=ModellingSettings.from_parameters(modelling).seed,
            )
        )
    return pd.concat(tables, ignore_index=True)


def report_figures(
    test_predictions: pd.DataFrame, clinical: pd.DataFrame, test_metrics: pd.DataFrame
) -> tuple[plt.Figure, plt.Figure, plt.Figure]:
    """Predicted vs true age and the facial age gap; ROC and calibration of the conditions;
    a compact summary of every target."""
    mlp = test_predictions[test_predictions["model"] == "mlp"].drop(columns="model")
    truth = clinical.set_index(schema.ID_COLUMN).loc[mlp[schema.ID_COLUMN]].reset_index()
    ages = age_plots(truth["age"].to_numpy(float), mlp["age"].to_numpy(float))
    conditions = condition_plots(truth, mlp, list(schema.CONDITIONS))
    return ages, conditions, summary_figure(test_metrics)


def write_model_card(
    test_metrics: pd.DataFrame, raw_cohort: dict[str, Any], splits: pd.DataFrame
) -> str:
    """A markdown model card for this run."""
    limitations = [
        "Trained and evaluated on the synthetic cohort unless a real cohort was configured: "
        "its faces carry simulated, calibrated health signals, not real biology."
        if raw_cohort.get("source") == "synthetic"
        else "Trained on the configured cohort; its population and scanner limit where the "
        "model applies.",
        "The synthetic population is modelled on Chinese adult cohorts aged 20-80; the "
        "obesity criterion is BMI >= 28 unless configured otherwise.",
        "About 300 subjects: test-set intervals are wide; differences between models whose "
        "intervals overlap are not established.",
        "Not a medical device: predictions are research outputs, not diagnoses.",
    ]
    return model_card(
        test_metrics=test_metrics,
        data=raw_cohort,
        splits=splits["split"].value_counts().to_dict(),
        limitations=limitations,
        baselines=[MODEL_LABELS["mean"], MODEL_LABELS["linear"]],
    )


def log_inference_model(
    landmark_model: dict,
    template_landmarks: pd.DataFrame,
    embedding_model: Any,
    template_region_centroids: dict,
    facial_omics_model: Any,
    health_models: HealthModels,
    parameters: dict[str, Any],
) -> dict[str, str]:
    """Log the whole trained method as one MLflow pyfunc model that scores a raw scan, and
    register it (``models:/face_health@newest``).

    The template mesh stays out of the model: it is one training subject's face (the medoid),
    and the scorer needs only the template's landmarks and region centroids."""
    scorer = ScanScorer(
        landmark_checkpoint=landmark_model,
        template_landmarks=template_landmarks,
        embedding_model=embedding_model,
        template_region_centroids=template_region_centroids,
        facial_omics=facial_omics_model,
        health_models=health_models,
        options=parameters,
    )
    uri = log_scorer(scorer, register=True, alias="newest")
    logger.info("logged the inference model at %s", uri)
    return {"model_uri": uri, "run_id": scorer.run_id}
