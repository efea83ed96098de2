"""The final_test pipeline: its own cohort and seed, every scan a row, paired comparisons;
nodes on constructed data, and end to end on the tiny environment after tiny training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import kedro_run

from face_health import config, schema
from face_health.config import FinalTestSettings, SettingsError
from face_health.errors import NoFaceFoundError
from face_health.pipelines.final_test import nodes


def _parameters(env: str = "tiny") -> dict:
    return config.project_parameters(env)


def test_the_final_test_settings_build_in_both_environments() -> None:
    for env in ("base", "tiny"):
        settings = FinalTestSettings.from_parameters(_parameters(env)["final_test"])
        assert settings.cohort.seed not in nodes.RESERVED_SEEDS
        assert settings.cohort.seed != _parameters(env)["cohort"]["synthetic"]["seed"]
        assert settings.pairs == (
            ("chosen", "mlp"),
            ("chosen", "linear"),
            ("mlp", "linear"),
            ("mlp", "mean"),
            ("linear", "mean"),
        )
        assert settings.path.endswith("01_raw/final_test_cohort")
    base = FinalTestSettings.from_parameters(_parameters("base")["final_test"])
    assert base.cohort.n == 200
    with pytest.raises(SettingsError, match="unknown key"):
        FinalTestSettings.from_parameters({**_parameters()["final_test"], "sed": 1})


@pytest.mark.parametrize("taken", ["training", "inference", "oracle"])
def test_a_seed_another_cohort_uses_is_refused_before_anything_is_simulated(
    taken: str, tmp_path: Path
) -> None:
    parameters = _parameters()
    seed = {
        "training": parameters["cohort"]["synthetic"]["seed"],
        "inference": parameters["inference"]["simulate_if_missing"]["seed"],
        "oracle": 777,
    }[taken]
    final_test = {
        **parameters["final_test"],
        "path": str(tmp_path / "final"),
        "model": "runs:/0123/face_health_model",  # resolved without a tracking backend
        "cohort": {**parameters["final_test"]["cohort"], "seed": seed},
    }
    with pytest.raises(SettingsError, match=f"seed {seed} is the seed of"):
        nodes.prepare_final_test_cohort(final_test, parameters["cohort"], parameters["inference"])
    assert not (tmp_path / "final").exists()


class _FakeScorer:
    """Stands in for a loaded ScanScorer: ingest fails for 'bad', features for 'noface'."""

    run_id = "run-1"
    options: dict = {}

    def ingest(self, source, subject_id):
        if subject_id == "bad":
            return None, {"subject_id": subject_id, "status": "failed", "reason": "unreadable"}
        return object(), {"subject_id": subject_id, "status": "ok", "reason": ""}

    def features(self, mesh, subject_id):
        if subject_id == "noface":
            raise NoFaceFoundError("no face in the views")
        qc = {"alignment_status": "ok", "alignment_reason": ""}
        if subject_id == "tilted":
            qc = {"alignment_status": "warning", "alignment_reason": "tilted 40 degrees"}
        return pd.DataFrame({"subject_id": [subject_id], "pc_0": [1.0]}), qc


def test_every_scan_gets_a_qc_row_and_a_data_error_is_a_reason_not_a_crash(monkeypatch) -> None:
    monkeypatch.setitem(nodes._SCORERS, ("runs:/fake", None), _FakeScorer())
    rows = {
        sid: nodes._score_one((sid, f"{sid}.obj"), model_uri="runs:/fake", tracking_uri=None)
        for sid in ("good", "bad", "noface", "tilted")
    }
    assert rows["good"]["qc"]["status"] == "ok" and rows["good"]["features"] is not None
    assert rows["good"]["load_seconds"] == 0.0  # the cached scorer: loaded once per process
    bad = rows["bad"]["qc"]
    assert (bad["status"], bad["failed_stage"], bad["reason"]) == ("failed", "ingest", "unreadable")
    noface = rows["noface"]["qc"]
    assert noface["status"] == "failed" and noface["failed_stage"] == "features"
    assert "NoFaceFoundError: no face in the views" in noface["reason"]
    assert rows["noface"]["features"] is None
    tilted = rows["tilted"]["qc"]
    assert tilted["status"] == "warning" and tilted["reason"] == "tilted 40 degrees"
    assert rows["tilted"]["features"] is not None


def test_out_of_distribution_scores_join_the_qc_table_and_warn() -> None:
    class Monitor:
        def score(self, features):
            return pd.DataFrame(
                {
                    "subject_id": features["subject_id"],
                    "ood_local": [1.0, 9.0],
                    "ood_score": [0.5, 3.0],
                    "ood_flag": [False, True],
                    "ood_reason": ["", "out of distribution: 3.0x"],
                }
            )

    scorer = _FakeScorer()
    scorer.ood_monitor = Monitor()
    qc = pd.DataFrame(
        {"subject_id": ["a", "b", "c"], "status": ["ok", "ok", "failed"], "reason": ["", "", "x"]}
    )
    features = pd.DataFrame({"subject_id": ["a", "b"], "pc_0": [0.0, 1.0]})
    out = nodes._with_ood(qc, scorer, features).set_index("subject_id")
    assert list(out["status"]) == ["ok", "warning", "failed"]
    assert out.loc["b", "reason"] == "out of distribution: 3.0x"
    assert np.isnan(out.loc["c", "ood_score"])
    assert nodes._with_ood(qc, _FakeScorer(), features) is qc  # no monitor: unchanged


def test_evaluate_final_test_scores_every_scored_subject_and_every_pair() -> None:
    rng = np.random.default_rng(0)
    ids = [f"S{i:04d}" for i in range(40)]
    clinical = pd.DataFrame({"subject_id": ids, "sex": rng.choice(["F", "M"], 40)})
    clinical["age"] = rng.uniform(20, 80, 40)
    clinical["obesity"] = rng.integers(0, 2, 40)
    scored = ids[:30]  # ten failed QC: no predictions
    predictions = pd.concat(
        [
            pd.DataFrame(
                {
                    "subject_id": scored,
                    "model": kind,
                    "age": clinical["age"][:30] + rng.normal(0, noise, 30),
                    "obesity": np.clip(clinical["obesity"][:30] * 0.5 + rng.random(30) / 2, 0, 1),
                    "model_run_id": "run-1",
                }
            )
            for kind, noise in (("mlp", 5.0), ("mean", 0.0), ("linear", 3.0), ("chosen", 3.0))
        ],
        ignore_index=True,
    )
    mean = predictions["model"] == "mean"
    predictions.loc[mean, "age"] = clinical["age"].mean()
    predictions.loc[mean, "obesity"] = 0.5
    qc = pd.DataFrame({"subject_id": ids, "status": ["ok"] * 30 + ["failed"] * 10, "seconds": 1.5})
    parameters = _parameters()
    cohort = {
        "path": "p",
        "generator": "face_health.synthetic",
        "generator_version": 3,
        "n": 40,
        "seed": 20261202,
        "settings": {},
        "training_cohort": {"source": "synthetic", "path": "t", "seed": 7},
    }
    metrics, differences, mlflow_metrics, summary = nodes.evaluate_final_test(
        predictions, clinical, qc, cohort, parameters["final_test"], parameters["modelling"]
    )
    assert set(metrics["n"]) == {30}
    assert set(metrics["model"]) == {"chosen", "mlp", "mean", "linear"}
    assert set(zip(differences["model_a"], differences["model_b"], strict=True)) == {
        ("chosen", "mlp"),
        ("chosen", "linear"),
        ("mlp", "linear"),
        ("mlp", "mean"),
        ("linear", "mean"),
    }
    assert set(differences["target"]) == {"age", "obesity"} and set(differences["n"]) == {30}
    assert "age.mlp.mae" in mlflow_metrics and "age.mlp_minus_mean.mae" in mlflow_metrics
    assert mlflow_metrics["subjects.failed"]["value"] == 10.0
    assert summary["subjects"] == {"cohort": 40, "scored": 30, "ok": 30, "failed": 10}
    assert summary["cohort"]["seed"] == 20261202 and summary["training_cohort"]["seed"] == 7
    assert summary["seconds_per_scan_median"] == 1.5 and summary["model_run_id"] == "run-1"


def _newest(path: Path) -> Path:
    return sorted(path.rglob("*.csv"))[-1] if path.is_dir() else path


@pytest.mark.slow
def test_no_trained_model_stops_before_simulating_and_says_to_train(project_copy: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--env", "tiny", "--pipelines", "final_test"],
        cwd=project_copy,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "run `kedro run --pipelines=training` first" in output
    assert not (project_copy / "data" / "tiny" / "01_raw" / "final_test_cohort").exists()


@pytest.mark.slow
def test_tiny_final_test_after_training(trained_tiny_project: Path) -> None:
    project = trained_tiny_project
    kedro_run(project, "--env", "tiny", "--pipelines", "final_test")
    data = project / "data" / "tiny"

    cohort = json.loads((data / "01_raw" / "final_test_cohort" / "cohort.json").read_text())
    training = json.loads((data / "01_raw" / "synthetic_cohort" / "cohort.json").read_text())
    assert cohort["n"] == 4 and cohort["seed"] == 20261202
    assert cohort["seed"] != training["seed"]
    assert cohort["generator_version"] == training["generator_version"]

    reporting = data / "08_reporting"
    qc = pd.read_csv(_newest(reporting / "final_test_qc.csv"), dtype={"subject_id": str})
    assert sorted(qc["subject_id"]) == sorted(cohort["subjects"])  # every subject has a row
    failed = qc[qc["status"] == "failed"]
    assert failed["reason"].fillna("").str.len().gt(0).all()  # ... and a failed one a reason
    features = pd.read_parquet(data / "04_feature" / "final_test_features.parquet")
    assert sorted(features["subject_id"]) == sorted(qc.loc[qc["status"] != "failed", "subject_id"])
    assert len(features) >= 1
    predictions = pd.read_parquet(data / "07_model_output" / "final_test_predictions.parquet")
    # Every fitted kind and the per-target choice made on validation (what is served).
    assert set(predictions["model"]) == {"chosen", "mlp", "mean", "linear"}
    assert len(predictions) == 4 * len(features)

    metrics = pd.read_csv(_newest(reporting / "final_test_metrics.csv"))
    assert set(schema.TARGET_NAMES) <= set(metrics["target"])
    assert metrics["n"].max() == len(features)  # every scored subject, no other
    differences = pd.read_csv(_newest(reporting / "final_test_differences.csv"))
    assert set(zip(differences["model_a"], differences["model_b"], strict=True)) == {
        ("chosen", "mlp"),
        ("chosen", "linear"),
        ("mlp", "linear"),
        ("mlp", "mean"),
        ("linear", "mean"),
    }
    summary = json.loads((reporting / "final_test_summary.json").read_text())
    assert summary["cohort"]["seed"] == 20261202 and summary["training_cohort"]["seed"] == 7
    assert summary["subjects"]["scored"] == len(features)

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    trained = mlflow.search_runs(
        experiment_names=["face_health"], filter_string="tags.pipeline = 'training'"
    )
    assert summary["model_run_id"] == trained.iloc[0]["run_id"]  # the newest model
    runs = mlflow.search_runs(
        experiment_names=["face_health"], filter_string="tags.pipeline = 'final_test'"
    )
    assert len(runs) == 1
    run = runs.iloc[0]
    assert "metrics.final_test.age.mlp.mae" in runs.columns
    assert np.isfinite(run["metrics.final_test.age.mlp_minus_linear.mae"])
    assert run["metrics.final_test.subjects.scored"] == len(features)
    logged = mlflow.MlflowClient().list_artifacts(run["run_id"], "final_test")
    assert {Path(f.path).name for f in logged} >= {
        "final_test_metrics.csv",
        "final_test_differences.csv",
        "final_test_qc.csv",
        "final_test_summary.json",
    }
