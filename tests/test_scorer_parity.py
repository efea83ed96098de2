"""One code path: the scorer of new scans computes the pipeline's features, to 1e-6.

The tiny training run wrote every subject's ``global_features``, ``region_radiomics`` and
``local_features``; scoring the same raw scans through the logged model's ``ScanScorer``
(ingest, landmarks, alignment, views, regions, radiomics, PCA: the same stage functions
with the same settings) must give the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from face_health import schema
from face_health.serving.scorer import load_scorer

#: Relative and absolute tolerance of every feature (the issue's 1e-6).
TOLERANCE = 1e-6


def _compare(name: str, ours: pd.Series, theirs: pd.Series) -> None:
    assert list(ours.index) == list(theirs.index), f"{name}: different columns"
    a, b = ours.to_numpy(float), theirs.to_numpy(float)
    assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}: NaN in different features"
    ok = ~np.isnan(a)
    close = np.isclose(a[ok], b[ok], rtol=TOLERANCE, atol=TOLERANCE)
    worst = ours.index[ok][~close][:5].tolist()
    assert close.all(), f"{name}: {int((~close).sum())} features differ, e.g. {worst}: " + str(
        [(a[ok][~close][:3]), (b[ok][~close][:3])]
    )


@pytest.mark.slow
def test_scorer_features_equal_the_pipelines(trained_tiny_project: Path) -> None:
    project = trained_tiny_project
    data = project / "data" / "tiny"
    tables = {
        name: pd.read_parquet(data / "04_feature" / f"{name}.parquet").set_index(schema.ID_COLUMN)
        for name in ("global_features", "region_radiomics", "local_features", "shape_features")
    }
    uri = f"sqlite:///{project / 'mlflow.db'}"
    run = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("face_health").experiment_id],
        filter_string="tags.`face_health.model_logged` = 'true'",
    )[0]
    before = mlflow.get_tracking_uri()
    scorer = load_scorer(run.info.run_id, tracking_uri=uri)
    assert mlflow.get_tracking_uri() == before  # a URI helper never sets it process-wide
    scans = data / "01_raw" / "synthetic_cohort" / "scans"
    for subject in ("S0001", "S0004", "S0007"):
        mesh, qc = scorer.ingest(scans / f"{subject}.obj", subject)
        assert mesh is not None, qc["reason"]
        global_row, radiomics, _, shape_row = scorer.stage_features(mesh, subject)
        ours = global_row.set_index(schema.ID_COLUMN).iloc[0]
        _compare(f"{subject} global", ours, tables["global_features"].loc[subject, ours.index])
        row = pd.Series(radiomics).drop(schema.ID_COLUMN)
        _compare(f"{subject} radiomics", row, tables["region_radiomics"].loc[subject, row.index])
        local = scorer.facial_omics.transform(pd.DataFrame([radiomics]))
        local = local.set_index(schema.ID_COLUMN).iloc[0]
        _compare(f"{subject} local", local, tables["local_features"].loc[subject, local.index])
        shape = shape_row.set_index(schema.ID_COLUMN).iloc[0]
        assert len(shape) > 100  # identity + expression + size + displacement
        _compare(f"{subject} shape", shape, tables["shape_features"].loc[subject, shape.index])
