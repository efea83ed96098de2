"""How many displacement components the shape features keep, judged on the VALIDATION
subjects of a finished training run (never test).

For each ``n_displacement`` the shape model (``omics.shape.ShapeFeatures``) is refitted on
the run's training subjects from its ``aligned_fitted_faces``; the MLP and the linear model
(the pipeline's own ``_health_models``, the run's settings) are fitted on the shape
features alone and beside the run's local features (``local_shape``, the method's inputs),
and the validation metrics are printed: age MAE, mean Pearson r over the other
measurements, mean AUROC over the yes/no targets, per model. The chosen count goes to
``conf/base/parameters_feature.yml`` (``shape_features.n_displacement``) with a comment
naming this benchmark.

    .venv/bin/python benchmarks/shape_features_bench.py --data data   # after the default run
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import yaml
from local_features_bench import KINDS, validation_summaries, write_table

from face_health.omics.shape import ShapeFeatures
from face_health.parallel import torch_threads
from face_health.pipelines.modelling.nodes import _health_models
from face_health.schema import ID_COLUMN

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]
INPUTS = ("shape", "local_shape")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 20, 40, 80, 140])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/shape_features.csv")
    args = parser.parse_args()
    data = args.data
    model_input = pd.read_parquet(data / "05_model_input/model_input.parquet")
    clinical = pd.read_parquet(data / "03_primary/clinical.parquet")
    splits = pd.read_csv(data / "03_primary/splits.csv", dtype={ID_COLUMN: str})
    modelling = yaml.safe_load((ROOT / "conf/base/parameters_modelling.yml").read_text())
    modelling = modelling["modelling"]
    train = set(splits.loc[splits["split"] == "train", ID_COLUMN])
    validation = splits.loc[splits["split"] == "validation", ID_COLUMN].tolist()
    faces = {
        path.stem: pd.read_parquet(path)[["x", "y", "z"]].to_numpy(float)
        for path in sorted((data / "03_primary/aligned_fitted_faces").glob("*.parquet"))
    }
    local = model_input.filter(regex=f"^({ID_COLUMN}|pc_)")
    rows = []
    for n in args.counts:
        start = time.perf_counter()
        shape = ShapeFeatures(n_displacement=n).fit({s: v for s, v in faces.items() if s in train})
        features = local.merge(shape.transform(faces), on=ID_COLUMN)
        explained = float(shape.explained_variance_ratio_.sum())
        for inputs in INPUTS:
            models = _health_models(modelling, inputs=inputs, kinds=KINDS)
            with torch_threads(1):
                models.fit(features, clinical, splits)
            scores = validation_summaries(models, features, clinical, validation, KINDS)
            for kind, score in scores.items():
                row = {"n_displacement": n, "explained": explained, "inputs": inputs}
                rows.append(row | {"model": kind} | score)
        print(f"{n} components ({explained:.0%}): {time.perf_counter() - start:.0f} s", flush=True)
    write_table(rows, args.out, validation, data)


if __name__ == "__main__":
    main()
