"""How to reduce the region radiomics: one PCA of the whole table or one per region, and how
many components, judged on the VALIDATION subjects of a finished training run (never test).

For each variant the facial-omics model is refitted on the run's training subjects, the MLP
and the linear model (``modelling.models.HealthModels``, the run's own settings) are fitted
on the local features alone and beside the run's cross-fitted embedding and shape features
(``INPUTS``), and the validation metrics are printed: age MAE, mean Pearson r over the
other measurements and mean AUROC over the yes/no targets, per model. The chosen setting goes to
``conf/base/parameters_feature.yml`` with a comment naming this benchmark.

    .venv/bin/python benchmarks/local_features_bench.py --data data   # after the default run
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from face_health.evaluation.metrics import evaluate
from face_health.omics.pca import FacialOmics
from face_health.parallel import torch_threads
from face_health.pipelines.modelling.nodes import _health_models
from face_health.schema import BINARY_TARGETS, ID_COLUMN, REGRESSION_TARGETS

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]

#: (label, per_region, n_components)
VARIANTS = (
    ("whole, 90 % variance", False, 0.9),
    ("whole, 40", False, 40),
    ("whole, 150", False, 150),
    ("per region, 4", True, 4),
    ("per region, 8", True, 8),
    ("per region, 12", True, 12),
    ("per region, 16", True, 16),
    ("per region, 80 % variance", True, 0.8),
    ("per region, 90 % variance", True, 0.9),
    ("per region, 95 % variance", True, 0.95),
)
#: The model kinds scored.
KINDS = ("mlp", "linear")
#: The feature families each variant's local features are tried in (``modelling.inputs``).
INPUTS = ("local", "both", "local_shape", "all")


def summarise(metrics: pd.DataFrame) -> dict[str, float]:
    """Age MAE, mean r of the other measurements, mean AUROC of the yes/no targets."""
    m = metrics.set_index(["target", "metric"])["value"]
    regression = [t for t in REGRESSION_TARGETS if t != "age"]
    binary = BINARY_TARGETS
    return {
        "age MAE": float(m.get(("age", "mae"), np.nan)),
        "mean r": float(np.nanmean([m.get((t, "pearson_r"), np.nan) for t in regression])),
        "mean AUROC": float(np.nanmean([m.get((t, "auroc"), np.nan) for t in binary])),
    }


def validation_summaries(
    models, features: pd.DataFrame, clinical: pd.DataFrame, validation: list[str], kinds
) -> dict[str, dict[str, float]]:
    """``summarise`` of each fitted model kind on the validation subjects (no intervals)."""
    held = features[features[ID_COLUMN].isin(validation)]
    predictions = {kind: models.predict(held, model=kind) for kind in kinds}
    metrics = evaluate(predictions, clinical, test_ids=validation, n_boot=0, seed=0)
    return {kind: summarise(metrics[metrics["model"] == kind]) for kind in kinds}


def write_table(rows: list[dict], out: Path, validation: list[str], data: Path) -> None:
    """The benchmark's rows as CSV at ``out``, and printed."""
    table = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.4g")
    print(f"\nvalidation subjects (n={len(validation)}), data {data}:\n")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/local_features.csv")
    parser.add_argument(
        "--ensembles",
        type=int,
        nargs="*",
        default=[1, 3, 5],
        help="seed-ensemble sizes of the MLP tried with the configured local features and inputs",
    )
    parser.add_argument("--skip-variants", action="store_true", help="only the ensembles")
    args = parser.parse_args()
    data = args.data
    radiomics = pd.read_parquet(data / "04_feature/region_radiomics.parquet")
    model_input = pd.read_parquet(data / "05_model_input/model_input.parquet")
    clinical = pd.read_parquet(data / "03_primary/clinical.parquet")
    splits = pd.read_csv(data / "03_primary/splits.csv", dtype={ID_COLUMN: str})
    folds_table = pd.read_csv(data / "04_feature/embedding_folds.csv", dtype={ID_COLUMN: str})
    folds = dict(zip(folds_table[ID_COLUMN], folds_table["fold"].astype(int), strict=True))
    modelling = yaml.safe_load((ROOT / "conf/base/parameters_modelling.yml").read_text())
    modelling = modelling["modelling"]
    train = splits.loc[splits["split"] == "train", ID_COLUMN]
    validation = splits.loc[splits["split"] == "validation", ID_COLUMN].tolist()
    others = model_input.filter(regex=f"^({ID_COLUMN}|emb_|shp_)")
    rows = []
    for label, per_region, n in () if args.skip_variants else VARIANTS:
        start = time.perf_counter()
        omics = FacialOmics(n_components=n, per_region=per_region)
        omics.fit(radiomics[radiomics[ID_COLUMN].isin(train)])
        local = omics.transform(radiomics)
        features = local.merge(others, on=ID_COLUMN)
        n_local = local.shape[1] - 1
        for inputs in INPUTS:
            # the pipeline's own constructor: cross-fitted where the inputs use the embedding
            models = _health_models(modelling, inputs=inputs, kinds=KINDS, folds=folds)
            with torch_threads(1):
                models.fit(features, clinical, splits)
            scores = validation_summaries(models, features, clinical, validation, KINDS)
            for kind, score in scores.items():
                row = {"variant": label, "components": n_local, "inputs": inputs, "model": kind}
                rows.append(row | score)
        print(f"{label}: {n_local} components, {time.perf_counter() - start:.0f} s", flush=True)
    feature = yaml.safe_load((ROOT / "conf/base/parameters_feature.yml").read_text())
    configured = feature["facial_omics"]
    omics = FacialOmics(
        n_components=configured["n_components"], per_region=configured["per_region"]
    )
    omics.fit(radiomics[radiomics[ID_COLUMN].isin(train)])
    features = omics.transform(radiomics).merge(others, on=ID_COLUMN)
    held = features[features[ID_COLUMN].isin(validation)]
    inputs = modelling["inputs"]
    for members in args.ensembles:
        start = time.perf_counter()
        params = {**modelling, "mlp": {**modelling["mlp"], "ensemble": members}}
        models = _health_models(params, inputs=inputs, kinds=("mlp",), folds=folds)
        with torch_threads(1):
            models.fit(features, clinical, splits)
        seconds = time.perf_counter() - start
        metrics = evaluate(
            {"mlp": models.predict(held, model="mlp")}, clinical, test_ids=validation, n_boot=0
        )
        label = f"configured, MLP ensemble of {members}"
        n_local = sum(str(c).startswith("pc_") for c in features.columns)
        row = {"variant": label, "components": n_local, "inputs": inputs}
        rows.append(row | {"model": "mlp"} | summarise(metrics) | {"fit_s": seconds})
        print(f"{label}: {seconds:.0f} s", flush=True)
    write_table(rows, args.out, validation, data)


if __name__ == "__main__":
    main()
