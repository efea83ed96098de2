"""What the ResNet-50's training budget buys, judged on the VALIDATION subjects of a finished
training run (never test).

For each variant of the ``embedding`` settings (image size, epochs, random views per subject
and epoch) the cross-fitted networks are trained again on the run's views with the
pipeline's own node (``train_embedding_model``: the training split only, early stopping on
validation), every subject is embedded (``embed_subjects``), and the MLP and the linear
model are fitted on the embedding alone (``modelling.inputs: global``, cross-fitted members
as in the pipeline). Reported per variant: training and embedding seconds, the networks'
best validation loss, and the validation age MAE, mean r and mean AUROC of both models.

    .venv/bin/python benchmarks/embedding_schedule_bench.py --data data   # after the default run

Writes ``benchmarks/results/embedding_schedule.csv``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import yaml
from local_features_bench import KINDS, validation_summaries, write_table
from PIL import Image

from face_health.parallel import torch_threads
from face_health.pipelines.feature.nodes import (
    embed_subjects,
    embedding_folds,
    train_embedding_model,
)
from face_health.pipelines.modelling.nodes import _folds, _health_models
from face_health.schema import ID_COLUMN

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]
#: label -> changes to conf/base's ``embedding`` section
VARIANTS = {
    "112 px, 5 epochs, 4 views (default)": {},
    "96 px, 5 epochs, 4 views": {"image_size": 96},
    "112 px, 4 epochs, 4 views": {"module": {"max_epochs": 4}},
    "112 px, 5 epochs, 3 views": {"views_per_subject_per_epoch": 3},
    "96 px, 4 epochs, 4 views": {"image_size": 96, "module": {"max_epochs": 4}},
}


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> Image.Image:
        with Image.open(self.path) as image:
            return image.convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/embedding_schedule.csv"
    )
    args = parser.parse_args()
    data = args.data
    clinical = pd.read_parquet(data / "03_primary/clinical.parquet")
    splits = pd.read_csv(data / "03_primary/splits.csv", dtype={ID_COLUMN: str})
    validation = splits.loc[splits["split"] == "validation", ID_COLUMN].tolist()
    views = {
        f"{path.parent.name}/{path.stem}": _Loader(path)
        for path in sorted((data / "04_feature/face_views").glob("*/*.png"))
    }
    base = yaml.safe_load((ROOT / "conf/base/parameters_feature.yml").read_text())["embedding"]
    modelling = yaml.safe_load((ROOT / "conf/base/parameters_modelling.yml").read_text())
    modelling = modelling["modelling"]
    rows = []
    for label in args.variants:
        change = VARIANTS[label]
        settings = {**base, **{k: v for k, v in change.items() if k != "module"}}
        settings["module"] = {**base["module"], **change.get("module", {})}
        start = time.perf_counter()
        network, metrics = train_embedding_model(views, clinical, splits, settings)
        trained = time.perf_counter()
        features = embed_subjects(network, views, settings)
        embedded = time.perf_counter()
        folds = _folds(embedding_folds(network))
        models = _health_models(modelling, inputs="global", kinds=KINDS, folds=folds)
        with torch_threads(1):
            models.fit(features, clinical, splits)
        scores = validation_summaries(models, features, clinical, validation, KINDS)
        for kind, score in scores.items():
            row = {
                "variant": label,
                "train_s": round(trained - start, 1),
                "embed_s": round(embedded - trained, 1),
                "best_val_loss": round(float(metrics["best_val_loss"]), 3),
                "model": kind,
            }
            rows.append(row | score)
            print(rows[-1], flush=True)
    write_table(rows, args.out, validation, data)


if __name__ == "__main__":
    main()
