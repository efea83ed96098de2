"""The same face as OBJ + texture and as PLY with vertex colours: how far apart the features
and predictions of a trained model are, and why.

Converts each OBJ scan to a PLY whose vertex colours are the texture sampled at the vertices
(trimesh ``to_color``; geometry identical), scores both with the scorer of a logged model and
reports the embedding correlation, the radiomics' relative differences by feature and the
predictions. Usage (from a project where ``training`` ran)::

    .venv/bin/python benchmarks/format_parity_bench.py --project . --env tiny --n 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import trimesh  # noqa: E402

from face_health.serving.scorer import load_scorer  # noqa: E402

TARGETS = ("age", "bmi", "alt", "hemoglobin", "anemia")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--env", default="base", help="data/ (base) or data/<env>/")
    parser.add_argument("--n", type=int, default=3, help="scans to compare")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = parser.parse_args()
    project = args.project.resolve()
    data = project / "data" if args.env == "base" else project / "data" / args.env
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("face_health")
    run = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`face_health.model_logged` = 'true'",
        order_by=["attributes.start_time DESC"],
    )[0]
    scorer = load_scorer(run.info.run_id, tracking_uri=uri)
    scans = sorted((data / "01_raw" / "synthetic_cohort" / "scans").glob("*.obj"))[: args.n]
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for obj in scans:
            sid = obj.stem
            textured = trimesh.load(obj, process=False)
            ply = Path(folder) / f"{sid}.ply"
            trimesh.Trimesh(
                textured.vertices, textured.faces, visual=textured.visual.to_color(), process=False
            ).export(ply)
            scored = {}
            for kind, path in (("obj", obj), ("ply", ply)):
                mesh, _ = scorer.ingest(path, sid)
                global_row, radiomics, _, _ = scorer.stage_features(mesh, sid)
                scored[kind] = (
                    global_row.drop(columns="subject_id").iloc[0].to_numpy(float),
                    pd.Series(radiomics).drop("subject_id").astype(float),
                    scorer.score(path, sid),
                )
            a, b = scored["obj"][1], scored["ply"][1]
            rel = (a - b).abs() / (a.abs() + b.abs() + 1e-9)
            by_feature = rel.groupby([c.split("__")[1] for c in rel.index]).median()
            row = {
                "subject_id": sid,
                "embedding_correlation": float(
                    np.corrcoef(scored["obj"][0], scored["ply"][0])[0, 1]
                ),
                "radiomics_median_relative_difference": float(np.nanmedian(rel)),
                "radiomics_most_different": by_feature.sort_values().tail(5).round(3).to_dict(),
                **{f"{t}_obj": scored["obj"][2].get(t) for t in TARGETS},
                **{f"{t}_ply": scored["ply"][2].get(t) for t in TARGETS},
            }
            results.append(row)
            print(json.dumps(row, default=float))
    if args.out:
        args.out.write_text(json.dumps({"run_id": run.info.run_id, "scans": results}, indent=2))


if __name__ == "__main__":
    main()
