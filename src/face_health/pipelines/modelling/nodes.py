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
    paired_differences,
    summary_figure,
)
from face_health.ingest.splits import assert_disjoint, subjects_in
from face_health.modelling.models import (
    INPUT_PREFIXES,
    CrossFittedHealthModels,
    HealthModels,
    model_input_table,
    uses_embedding,
)
from face_health.modelling.ood import DistributionMonitor, score_distributions
from face_health.parallel import map_subjects, torch_threads
from face_health.serving.scorer import ScanScorer, log_scorer

logger = logging.getLogger(__name__)

MODEL_LABELS = {
    "chosen": "chosen per target on validation",
    "mlp": "MLP",
    "mean": "mean / prevalence baseline",
    "linear": "ridge / logistic",
    "average": "average of MLP and ridge / logistic",
}


def assemble_model_input(
    global_features: pd.DataFrame, local_features: pd.DataFrame, shape_features: pd.DataFrame
) -> pd.DataFrame:
    """Global (``emb_*``), local (``pc_*``) and shape (``shp_*``) features side by side, one
    row per subject (``modelling.models.model_input_table``, as the scorer builds it)."""
    return model_input_table(global_features, local_features, shape_features)


def _health_models(
    modelling: dict[str, Any],
    inputs: str | None = None,
    kinds=None,
    folds: dict[str, int] | None = None,
    in_sample: bool = False,
) -> HealthModels | CrossFittedHealthModels:
    """The configured models; cross-fitted (one member per embedding network) when the
    embedding is (``folds``) and the inputs use it."""
    settings = ModellingSettings.from_parameters(modelling)
    options = {
        "per": settings.per,
        "inputs": inputs or settings.inputs,
        "kinds": tuple(kinds or settings.kinds),
        "mlp_params": dataclasses.asdict(settings.mlp),
        "seed": settings.seed,
    }
    if folds and uses_embedding(options["inputs"]):
        return CrossFittedHealthModels(folds=folds, in_sample=in_sample, **options)
    if in_sample:
        raise ValueError("in_sample applies to cross-fitted models only")
    return HealthModels(**options)


def _folds(embedding_folds: pd.DataFrame) -> dict[str, int] | None:
    if embedding_folds is None or embedding_folds.empty:
        return None
    ids = embedding_folds[schema.ID_COLUMN].astype(str)
    return dict(zip(ids, embedding_folds["fold"].astype(int), strict=True))


def train_health_models(
    model_input: pd.DataFrame,
    clinical: pd.DataFrame,
    splits: pd.DataFrame,
    embedding_folds: pd.DataFrame,
    modelling: dict[str, Any],
) -> HealthModels | CrossFittedHealthModels:
    """The MLPs and their baselines, fitted on the training split, early-stopped on validation."""
    try:
        assert_disjoint(splits)  # raises AssertionError explicitly (not an assert statement)
    except AssertionError as exc:
        raise LeakageError(f"the splits table is not a partition of the subjects: {exc}") from exc
    with torch_threads(ModellingSettings.from_parameters(modelling).torch_threads):
        models = _health_models(modelling, folds=_folds(embedding_folds))
        models.fit(model_input, clinical, splits)
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
    """Test metrics with 95% bootstrap intervals for every target and model (every fitted
    kind and ``chosen``, the per-target choice made on validation that serving uses); the
    test predictions (long table); the headline metrics for MLflow."""
    test_ids = subjects_in(splits, "test")
    test_input = model_input[model_input[schema.ID_COLUMN].isin(test_ids)]
    predictions = health_models.predict_all(test_input)
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


#: The ablation's feature families (``modelling.inputs`` values), beside the method's own.
ABLATION_INPUTS = ("global", "local", "shape", "both", "local_shape", "all")


def _ablation_variant(
    job: tuple[str, bool],
    model_input: pd.DataFrame,
    clinical: pd.DataFrame,
    splits: pd.DataFrame,
    modelling: dict[str, Any],
    folds: dict[str, int] | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One ablation variant (its inputs, in-sample or not): the MLP fitted on the training
    split; its predictions of the test and of the validation subjects."""
    inputs, in_sample = job
    settings = ModellingSettings.from_parameters(modelling)
    models = _health_models(
        modelling, inputs=inputs, kinds=("mlp",), folds=folds, in_sample=in_sample
    )
    with torch_threads(settings.torch_threads):
        models.fit(model_input, clinical, splits)
    ids = model_input[schema.ID_COLUMN]
    return tuple(
        models.predict(model_input[ids.isin(subjects_in(splits, split))], model="mlp")
        for split in ("test", "validation")
    )


def ablation(
    model_input: pd.DataFrame,
    clinical: pd.DataFrame,
    splits: pd.DataFrame,
    embedding_folds: pd.DataFrame,
    modelling: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The MLP on each feature family and their combinations (``ABLATION_INPUTS``; those
    without columns, such as ``shape`` with ``landmarks.method: cnn``, are left out), on the
    test split; with a cross-fitted embedding also ``mlp_<inputs>_in_sample`` of the method's
    inputs (of ``both`` when the method's inputs leave the embedding out): the same networks
    with each member fitted on the subjects its network trained on (what cross-fitting
    removes).

    Returns the test metrics of every variant, the paired bootstrap differences (same
    subject resamples) of each variant against the method's (``mlp_<modelling.inputs>``)
    and every variant's metrics on the validation subjects: what ``modelling.inputs`` is
    chosen on (the test split only reports)."""
    settings = ModellingSettings.from_parameters(modelling)
    folds = _folds(embedding_folds)
    test_ids, validation_ids = subjects_in(splits, "test"), subjects_in(splits, "validation")
    variants = [(inputs, False) for inputs in dict.fromkeys((*ABLATION_INPUTS, settings.inputs))]
    if folds:  # what cross-fitting removes: the method's inputs, or both when they lack it
        variants.append((settings.inputs if uses_embedding(settings.inputs) else "both", True))
    jobs = {}
    for inputs, in_sample in variants:
        prefixes = INPUT_PREFIXES[inputs]
        if not any(str(c).startswith(prefixes) for c in model_input.columns):
            logger.info("ablation: no %s features, variant left out", inputs)
            continue
        jobs[f"mlp_{inputs}" + ("_in_sample" if in_sample else "")] = (inputs, in_sample)
    # The variants are independent fits of one thread each: one per core (same numbers as
    # one after another; 41 s -> ~25 s of the default run on 2 cores).
    outcomes = map_subjects(
        _ablation_variant,
        jobs,
        n_jobs=settings.n_jobs,
        desc="ablation variants",
        model_input=model_input,
        clinical=clinical,
        splits=splits,
        modelling=modelling,
        folds=folds,
    )
    predictions = {name: outcome.value[0] for name, outcome in outcomes.items()}
    validation = {name: outcome.value[1] for name, outcome in outcomes.items()}
    boot = {"n_boot": settings.n_bootstrap, "seed": settings.seed}
    metrics = evaluate(predictions, clinical, test_ids=test_ids, **boot)
    method = f"mlp_{settings.inputs}"
    pairs = [(method, name) for name in predictions if name != method]
    differences = paired_differences(predictions, clinical, test_ids=test_ids, pairs=pairs, **boot)
    validation_metrics = evaluate(validation, clinical, test_ids=validation_ids, **boot)
    return metrics, differences, validation_metrics


def report_figures(
    test_predictions: pd.DataFrame, clinical: pd.DataFrame, test_metrics: pd.DataFrame
) -> tuple[plt.Figure, plt.Figure, plt.Figure]:
    """Predicted vs true age and the facial age gap; ROC and calibration of the conditions
    (of the served model: ``chosen`` where present, else the MLP); a compact summary of every
    target."""
    served = "chosen" if (test_predictions["model"] == "chosen").any() else "mlp"
    shown = test_predictions[test_predictions["model"] == served].drop(columns="model")
    truth = clinical.set_index(schema.ID_COLUMN).loc[shown[schema.ID_COLUMN]].reset_index()
    ages = age_plots(truth["age"].to_numpy(float), shown["age"].to_numpy(float))
    conditions = condition_plots(truth, shown, list(schema.CONDITIONS))
    return ages, conditions, summary_figure(test_metrics)


def write_model_card(
    test_metrics: pd.DataFrame,
    raw_cohort: dict[str, Any],
    splits: pd.DataFrame,
    health_models: HealthModels | CrossFittedHealthModels | None = None,
) -> str:
    """A markdown model card for this run, with each target's served model as chosen on the
    validation subjects and the validation metrics it was chosen on."""
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
        model_choice=health_models.choice_summary() if health_models is not None else None,
    )


def log_inference_model(
    landmark_model: dict,
    template_landmarks: pd.DataFrame,
    embedding_model: Any,
    template_region_centroids: dict,
    facial_omics_model: Any,
    shape_model: Any,
    health_models: HealthModels,
    parameters: dict[str, Any],
    ood_monitor: DistributionMonitor,
) -> dict[str, str]:
    """Log the whole trained method as one MLflow pyfunc model that scores a raw scan, and
    register it (``models:/face_health@newest``).

    The template mesh stays out of the model: it is one training subject's face (the medoid),
    and the scorer needs only the template's landmarks and region centroids. The
    out-of-distribution monitor goes with it: every prediction carries an ``ood_score``."""
    scorer = ScanScorer(
        landmark_checkpoint=landmark_model,
        template_landmarks=template_landmarks,
        embedding_model=embedding_model,
        template_region_centroids=template_region_centroids,
        facial_omics=facial_omics_model,
        shape_model=shape_model,
        health_models=health_models,
        options=parameters,
        ood_monitor=ood_monitor,
    )
    uri = log_scorer(scorer, register=True, alias="newest")
    logger.info("logged the inference model at %s", uri)
    return {"model_uri": uri, "run_id": scorer.run_id}


def fit_ood_monitor(
    model_input: pd.DataFrame,
    splits: pd.DataFrame,
    embedding_model: Any,
    modelling: dict[str, Any],
) -> tuple[DistributionMonitor, plt.Figure, dict[str, Any]]:
    """The out-of-distribution monitor (``modelling.ood``): Mahalanobis distances in the
    embedding and local-feature spaces, fitted on the training subjects, the threshold of
    each the ``ood_percentile`` of the validation subjects' distances. With a cross-fitted
    embedding (its ``folds``) space ``global_f{j}`` is fitted on fold ``j``'s training
    subjects, whose embeddings network ``j`` never trained on. Also: the training and
    validation scores against the threshold (a figure) and the thresholds for MLflow."""
    settings = ModellingSettings.from_parameters(modelling)
    folds = getattr(embedding_model, "folds", None)
    monitor = DistributionMonitor(
        percentile=settings.ood_percentile, refuse_score=settings.ood_refuse_score
    ).fit(model_input, splits, folds=folds)
    summary = monitor.summary()
    for name, space in summary["spaces"].items():
        logger.info(
            "ood monitor, space %s: %d features, %d training and %d validation subjects, "
            "shrinkage %.3f, threshold %.3g (%s)",
            name,
            space["n_features"],
            space["n_train"],
            space["n_validation"],
            space["shrinkage"],
            space["threshold"],
            summary["threshold_source"],
        )
    metrics = {
        f"{name}.{key}": {"value": float(space[key]), "step": 0}
        for name, space in summary["spaces"].items()
        for key in ("threshold", "shrinkage", "n_train", "n_validation")
    }
    return monitor, ood_figure(monitor), metrics


def ood_figure(monitor: DistributionMonitor) -> plt.Figure:
    """Histograms of the training and validation subjects' OOD scores (overall and per
    space, as distance / threshold) with the threshold at 1."""
    scores = score_distributions(monitor)
    panels = [("ood_score (largest over spaces)", scores)] + [
        (
            f"{name} ({len(monitor.spaces_[name])} features)",
            {
                "training": monitor.training_distances_[name] / monitor.threshold_[name],
                "validation": monitor.validation_distances_[name] / monitor.threshold_[name],
            },
        )
        for name in monitor.spaces_
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels, strict=True):
        values = [v.to_numpy(float) for v in series.values()]
        finite = np.concatenate([v[np.isfinite(v)] for v in values] + [np.array([1.0])])
        bins = np.linspace(0.0, max(float(finite.max()) * 1.05, 1.2), 30)
        for (label, v), colour in zip(series.items(), ("tab:grey", "tab:blue"), strict=True):
            ax.hist(
                v[np.isfinite(v)], bins=bins, alpha=0.6, color=colour, label=f"{label} (n={len(v)})"
            )
        ax.axvline(1.0, color="tab:red", linestyle="--", label=f"{monitor.percentile:g}th pct")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"distance / threshold ({monitor.threshold_source_})")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("subjects")
    fig.suptitle("Out-of-distribution scores: 1 = the threshold; training is in-sample")
    fig.tight_layout()
    return fig
