"""Tests of the subject-level, stratified train / validation / test splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from face_health.ingest.splits import SPLITS, assert_disjoint, make_splits, subjects_in
from face_health.schema import ID_COLUMN

FRACTIONS = (0.7, 0.15, 0.15)


def _cohort(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 85, n)
    age[rng.choice(n, size=n // 20, replace=False)] = np.nan  # missing ages: own stratum
    return pd.DataFrame(
        {
            ID_COLUMN: [f"S{i:04d}" for i in range(n)],
            "sex": rng.choice(["F", "M"], n, p=[0.35, 0.65]),
            "age": age,
        }
    )


def test_deterministic_and_seed_dependent() -> None:
    cohort = _cohort(100)
    first = make_splits(cohort, seed=7)
    pd.testing.assert_frame_equal(first, make_splits(cohort, seed=7))
    assert not first.equals(make_splits(cohort, seed=8))


def test_independent_of_row_order() -> None:
    cohort = _cohort(120)
    shuffled = cohort.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(make_splits(cohort, seed=2), make_splits(shuffled, seed=2))


def test_one_row_per_subject_and_no_leak() -> None:
    cohort = _cohort(300)
    splits = make_splits(cohort)
    assert list(splits.columns) == [ID_COLUMN, "split"]
    assert sorted(splits[ID_COLUMN]) == sorted(cohort[ID_COLUMN])
    assert set(splits["split"]) == set(SPLITS)
    assert_disjoint(splits)
    together = sum((subjects_in(splits, s) for s in SPLITS), [])
    assert sorted(together) == sorted(cohort[ID_COLUMN])


def test_assert_disjoint_names_a_leaked_subject() -> None:
    splits = make_splits(_cohort(30))
    leaked = pd.concat([splits, pd.DataFrame({ID_COLUMN: ["S0004"], "split": ["test"]})])
    leaked = leaked.drop_duplicates()
    with pytest.raises(AssertionError, match="S0004"):
        assert_disjoint(leaked)


def test_proportions_overall_and_per_stratum() -> None:
    n = 300
    cohort = _cohort(n)
    merged = cohort.merge(make_splits(cohort, fractions=FRACTIONS))
    counts = merged["split"].value_counts()
    for split, fraction in zip(SPLITS, FRACTIONS, strict=True):
        assert abs(counts[split] - n * fraction) <= 1
    merged["age_bin"] = pd.qcut(merged["age"], 4, labels=False)
    for _, stratum in merged.groupby(["sex", "age_bin"], dropna=False):
        stratum_counts = stratum["split"].value_counts()
        for split, fraction in zip(SPLITS, FRACTIONS, strict=True):
            # one subject of slack for the stratum, one for where it starts in the deal
            assert abs(stratum_counts.get(split, 0) - len(stratum) * fraction) <= 2


def test_sex_ratio_is_kept_across_splits() -> None:
    cohort = _cohort(300)
    merged = cohort.merge(make_splits(cohort, seed=5))
    overall = (cohort["sex"] == "F").mean()
    for split in SPLITS:
        in_split = merged[merged["split"] == split]
        assert abs((in_split["sex"] == "F").mean() - overall) * len(in_split) <= 2


@pytest.mark.parametrize(
    "fractions", [(0.7, 0.2, 0.2), (0.8, 0.2, 0.0), (1.1, -0.05, -0.05), (0.5, 0.5)]
)
def test_bad_fractions_are_rejected(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        make_splits(_cohort(20), fractions=fractions)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [3, 5])
def test_tiny_cohort_gets_non_empty_splits(n: int) -> None:
    splits = make_splits(_cohort(n))
    assert set(splits["split"]) == set(SPLITS)
    assert_disjoint(splits)


def test_absent_stratification_column_is_skipped() -> None:
    splits = make_splits(_cohort(40).drop(columns="sex"))
    assert len(splits) == 40


def test_subjects_in_rejects_unknown_split() -> None:
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        subjects_in(make_splits(_cohort(10)), "dev")
