"""End to end on the tiny environment: training logs a model to MLflow, inference uses it."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from conftest import kedro_run

from face_health import schema
from face_health.serving.scorer import column_name, load_scorer


@pytest.mark.slow
def test_tiny_training_then_inference(trained_tiny_project: Path) -> None:
    project_copy = trained_tiny_project

    data = project_copy / "data" / "tiny"
    for name in ("global_features", "local_features", "region_radiomics", "shape_features"):
        table = pd.read_parquet(data / "04_feature" / f"{name}.parquet")
        assert len(table) == 8, name
    global_features = pd.read_parquet(data / "04_feature" / "global_features.parquet")
    # Cross-fitted (embedding.cross_fit_folds: 2): one 128-d block per network.
    for j in (0, 1):
        assert sum(c.startswith(f"emb_f{j}_") for c in global_features.columns) == 128
    assert sum(c.startswith("emb_") for c in global_features.columns) == 256
    folds = pd.read_csv(data / "04_feature" / "embedding_folds.csv", dtype={"subject_id": str})
    splits = pd.read_csv(data / "03_primary" / "splits.csv", dtype={"subject_id": str})
    assert set(folds["subject_id"]) == set(splits.loc[splits["split"] == "train", "subject_id"])
    assert set(folds["fold"]) == {0, 1}
    ablation_files = sorted((data / "08_reporting" / "ablation_metrics.csv").rglob("*.csv"))
    ablation = pd.read_csv(ablation_files[-1])
    # conf/base modelling.inputs is local_shape (no embedding): the in-sample variant is both's
    families = {f"mlp_{f}" for f in ("global", "local", "shape", "both", "local_shape", "all")}
    assert set(ablation["model"]) == families | {"mlp_both_in_sample"}
    validation = sorted((data / "08_reporting" / "ablation_validation_metrics.csv").rglob("*.csv"))
    assert set(pd.read_csv(validation[-1])["model"]) == set(ablation["model"])
    metrics_files = sorted((data / "08_reporting" / "test_metrics.csv").rglob("*.csv"))
    metrics = pd.read_csv(metrics_files[-1])
    assert set(metrics["model"]) == {"chosen", "mlp", "mean", "linear"}
    assert set(schema.TARGET_NAMES) <= set(metrics["target"])
    for picture in ("age.png", "conditions.png", "summary.png", "region_map.png"):
        assert (data / "08_reporting" / picture).stat().st_size > 0

    mlflow.set_tracking_uri(f"sqlite:///{project_copy / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["face_health"], filter_string="tags.pipeline = 'training'"
    )
    assert len(runs) == 1  # one kedro run, one MLflow run
    run = runs.iloc[0]
    assert {"metrics.test.age.mlp.mae", "metrics.test.age.mlp.mae_ci_low"} <= set(runs.columns)
    assert run["metrics.test.age.mlp.mae_ci_low"] <= run["metrics.test.age.mlp.mae"]
    assert any(c.startswith("metrics.embedding_f1") for c in runs.columns)  # Lightning epochs
    assert "params.embedding_f0.target_scale" in runs.columns  # each network's own parameters
    assert run["tags.face_health.model_logged"] == "true"
    # Provenance: a readable name and tags that tell two runs apart.
    assert run["tags.mlflow.runName"].startswith("training · synthetic_cohort · tiny · ")
    assert run["tags.kedro_env"] == "tiny" and run["tags.cohort_source"] == "synthetic"
    assert run["tags.git_commit"]  # "unknown" here: the project copy is not a git work tree
    assert len(run["tags.data_fingerprint"]) == 16
    # Face pictures are logged for the synthetic cohort (privacy.log_face_images: auto).
    faces = mlflow.MlflowClient().list_artifacts(run["run_id"], "faces")
    assert {Path(f.path).name for f in faces} >= {"region_map.png", "template.png"}

    # The logged model loads from its run id and from the registry alias, and scores a scan.
    scan = project_copy / "data" / "tiny" / "01_raw" / "synthetic_cohort" / "scans" / "S0001.obj"
    for model in (run["run_id"], "face_health@newest"):
        scorer = load_scorer(model)
        record = scorer.score(scan)
        assert record["qc_status"] != "failed", record["qc_reason"]
        assert 0.0 <= record["anemia"] <= 1.0 and 0 < record["age"] < 120

    kedro_run(project_copy, "--env", "tiny", "--pipelines", "inference")
    files = sorted((data / "07_model_output" / "predictions.csv").rglob("*.csv"))
    predictions = pd.read_csv(files[-1])
    assert len(predictions) == 2
    assert (predictions["model_run_id"] == run["run_id"]).all()
    assert {column_name("age"), column_name("bmi"), column_name("anemia")} <= set(
        predictions.columns
    )
    assert {"ood_score", "ood_flag"} <= set(predictions.columns)
    assert predictions["ood_score"].notna().all()
    assert (predictions["qc_status"] != "failed").all()
