"""The latent oracle's subjects are the simulator's: ``simulate_latents`` (no faces) gives the
health state and face-visible latents that ``write_cohort`` writes for the same n and seed."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from face_health.synthetic import CohortSettings, simulate_latents, write_cohort
from face_health.synthetic.cohort import CLINICAL_COLUMNS
from face_health.synthetic.effects import VISIBLE_LATENTS, Appearance, visible_latents
from face_health.synthetic.phenotypes import PHENOTYPE_COLUMNS

N, SEED = 3, 777  # the oracle benchmark's seed; no pipeline cohort uses it
VISIBLE = list(VISIBLE_LATENTS)


def _as_written(frame: pd.DataFrame, float_format: str) -> pd.DataFrame:
    """``frame`` after the CSV round trip ``write_cohort`` puts its tables through."""
    text = frame.to_csv(index=False, float_format=float_format)
    return pd.read_csv(StringIO(text), dtype={"subject_id": str})


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("oracle") / "c"
    write_cohort(out, N, SEED, settings=CohortSettings(texture_size=128), progress=False)
    return out


def test_latents_equal_what_write_cohort_writes(cohort: Path) -> None:
    drawn = simulate_latents(N, SEED)
    columns = ["subject_id", *PHENOTYPE_COLUMNS, *VISIBLE]
    assert list(drawn.columns) == columns
    written = pd.read_csv(cohort / "truth" / "latents.csv", dtype={"subject_id": str})
    pd.testing.assert_frame_equal(_as_written(drawn, "%.6g"), written[columns])


def test_clinical_table_equals_what_write_cohort_writes(cohort: Path) -> None:
    drawn = simulate_latents(N, SEED)[list(CLINICAL_COLUMNS)]
    written = pd.read_csv(cohort / "clinical.csv", dtype={"subject_id": str})
    pd.testing.assert_frame_equal(_as_written(drawn, "%.4g"), written)


def test_visible_latents_is_a_pure_function_of_the_look() -> None:
    look = Appearance("M", 50.0, 1.0, 2.0, 0.5, -0.5, 0.25)
    out = visible_latents(look)
    assert list(out) == VISIBLE
    assert out == visible_latents(look)
    assert out["look_apparent_age"] == 50.0 and out["look_pallor"] == 0.25
    assert np.isclose(out["face_scale"], 1.03 * (1.0 + 0.025 * 2.0))
