"""Benchmark: the latent oracle, the ceiling that images of the synthetic cohort could reach.

The same model family as the pipeline (per-group MLPs, early-stopped on the validation
split, with mean and ridge/logistic baselines) fitted on the simulator's face-visible latent
parameters (``truth/latents.csv``: apparent age, adiposity, stature, smoking damage, redness,
pallor, sex, face size) instead of image features, on the pipeline's split, evaluated on its
test split with 95% bootstrap intervals. Never a pipeline input.

    .venv/bin/python benchmarks/oracle_bench.py --cohort data/01_raw/synthetic_cohort

Writes ``benchmarks/results/oracle_metrics.csv`` and prints the headline metric per target.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from face_health import schema
from face_health.evaluation.metrics import evaluate
from face_health.ingest.clinical import read_clinical, validate_clinical
from face_health.ingest.splits import make_splits, subjects_in
from face_health.modelling.models import HealthModels
from face_health.parallel import torch_threads

ROOT = Path(__file__).resolve().parents[1]
LATENTS = [
    "look_apparent_age",
    "look_adiposity",
    "look_stature",
    "look_smoking_damage",
    "look_redness",
    "look_pallor",
    "face_scale",
]


def headline(metrics: pd.DataFrame) -> pd.DataFrame:
    """r for regression targets, AUROC for binary ones; MAE for age too."""
    keep = metrics["metric"].isin(["pearson_r", "auroc"]) | (
        (metrics["target"] == "age") & (metrics["metric"] == "mae")
    )
    return metrics[keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=ROOT / "data/01_raw/synthetic_cohort")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/oracle_metrics.csv")
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()

    clinical, _ = validate_clinical(read_clinical(args.cohort / "clinical.csv"))
    splits = make_splits(clinical, seed=0)  # the pipeline's default split
    truth = pd.read_csv(args.cohort / "truth" / "latents.csv", dtype={"subject_id": str})
    features = truth[["subject_id", *LATENTS]].rename(columns={c: f"latent_{c}" for c in LATENTS})
    features["latent_male"] = (truth["sex"] == "M").astype(float)
    with torch_threads(1):
        models = HealthModels(inputs="latent").fit(features, clinical, splits)
    test_ids = subjects_in(splits, "test")
    test = features[features["subject_id"].isin(test_ids)]
    metrics = evaluate(models.predict_all(test), clinical, test_ids=test_ids, n_boot=args.n_boot)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    metrics.to_csv(args.out, index=False)
    table = headline(metrics).pivot_table(
        index=["target", "metric"], columns="model", values="value"
    )
    order = {t: i for i, t in enumerate(schema.TARGET_NAMES)}
    table = table.sort_index(key=lambda idx: idx.map(lambda t: order.get(t, 99)), level=0)
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
