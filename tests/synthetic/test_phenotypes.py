"""Tests of the phenotype simulator: determinism, ranges, marginals, correlations, criteria.

The criteria are re-derived here with hand-written thresholds (not imported), so a changed
constant in the module or in ``face_health.schema`` shows up as a failure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from face_health.schema import CONDITIONS, TARGET_BY_NAME
from face_health.synthetic.phenotypes import (
    PHENOTYPE_COLUMNS,
    conditions_from_phenotypes,
    simulate_phenotypes,
)

N = 20_000
BINARY = ("smoking", "alcohol", *CONDITIONS)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate_phenotypes(N, np.random.default_rng(2024))


@pytest.fixture(scope="module")
def male(table: pd.DataFrame) -> pd.Series:
    return table["sex"] == "M"


def _r(table: pd.DataFrame, x: str, y: str) -> float:
    return float(np.corrcoef(table[x].astype(float), table[y].astype(float))[0, 1])


def test_columns_types_and_size(table: pd.DataFrame) -> None:
    assert tuple(table.columns) == PHENOTYPE_COLUMNS
    assert len(table) == N
    assert "subject_id" not in table.columns
    assert set(table["sex"]) == {"F", "M"}
    assert table.notna().all().all()
    for c in BINARY:
        assert pd.api.types.is_integer_dtype(table[c]), c
        assert set(table[c].unique()) <= {0, 1}, c
    for c in set(PHENOTYPE_COLUMNS) - set(BINARY) - {"sex"}:
        assert pd.api.types.is_float_dtype(table[c]), c


def test_deterministic_given_seed() -> None:
    a = simulate_phenotypes(500, np.random.default_rng(7))
    b = simulate_phenotypes(500, np.random.default_rng(7))
    c = simulate_phenotypes(500, np.random.default_rng(8))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_values_within_plausible_ranges(table: pd.DataFrame) -> None:
    for name in PHENOTYPE_COLUMNS:
        if name in TARGET_BY_NAME:
            lo, hi = TARGET_BY_NAME[name].plausible
            assert table[name].between(lo, hi).all(), name
    assert table["age"].between(20, 80).all()
    assert (table[["alcohol_g_per_day", "pack_years"]] >= 0).all().all()
    # Non-drinkers drink nothing; smokers have accumulated pack-years (~15 cig/day in men).
    assert (table.loc[table["alcohol"] == 0, "alcohol_g_per_day"] == 0).all()
    assert (table.loc[table["alcohol"] == 1, "alcohol_g_per_day"] > 0).all()
    male_smokers = (table["smoking"] == 1) & (table["sex"] == "M")
    assert 10 < table.loc[male_smokers, "pack_years"].median() < 30


def test_bmi_is_weight_over_height_squared(table: pd.DataFrame) -> None:
    recomputed = table["weight"] / (table["height"] / 100) ** 2
    np.testing.assert_allclose(table["bmi"], recomputed, atol=0.0051)


@pytest.mark.parametrize(
    ("column", "sex", "lo", "hi"),
    [
        ("age", None, 42, 52),
        ("bmi", None, 23.5, 25.2),
        ("height", "M", 166, 171),
        ("height", "F", 155, 159),
        ("waist", "M", 83, 90),
        ("waist", "F", 76, 83),
        ("hemoglobin", "M", 146, 155),
        ("hemoglobin", "F", 127, 136),
        ("hematocrit", "M", 42, 47),
        ("hematocrit", "F", 37, 41),
        ("rbc_volume", None, 87, 92),
        ("uric_acid", "M", 350, 400),
        ("uric_acid", "F", 260, 310),
        ("hdl", "M", 1.1, 1.35),
        ("hdl", "F", 1.3, 1.55),
        ("sbp", None, 118, 132),
        ("dbp", None, 72, 84),
    ],
)
def test_marginal_means(table: pd.DataFrame, column: str, sex: str | None, lo: float, hi: float):
    values = table[column] if sex is None else table.loc[table["sex"] == sex, column]
    assert lo < values.mean() < hi


@pytest.mark.parametrize(
    ("column", "lo", "hi"),
    [("glucose", 4.9, 5.5), ("triglycerides", 1.0, 1.4), ("alt", 13, 20), ("ggt", 14, 24)],
)
def test_right_skewed_lab_medians(table: pd.DataFrame, column: str, lo: float, hi: float):
    assert lo < table[column].median() < hi
    assert table[column].mean() > table[column].median()  # right skew, as measured labs are


def test_sex_split_and_lifestyle_prevalences(table: pd.DataFrame, male: pd.Series) -> None:
    assert 0.47 < male.mean() < 0.53
    assert 0.44 < table.loc[male, "smoking"].mean() < 0.56
    assert table.loc[~male, "smoking"].mean() < 0.06
    assert 0.34 < table.loc[male, "alcohol"].mean() < 0.46
    assert 0.06 < table.loc[~male, "alcohol"].mean() < 0.14


@pytest.mark.parametrize(
    ("condition", "lo", "hi"),
    [
        ("obesity", 0.12, 0.19),
        ("diabetes", 0.08, 0.14),
        ("metabolic_syndrome", 0.22, 0.32),
        # 420 men / 360 women; [ZM22]'s 14.0% is at > 420 for both (checked below)
        ("hyperuricemia", 0.12, 0.22),
        ("nafld", 0.22, 0.33),
        ("anemia", 0.06, 0.13),
    ],
)
def test_condition_prevalences(table: pd.DataFrame, condition: str, lo: float, hi: float):
    assert lo < table[condition].mean() < hi


def test_uric_acid_above_420_by_sex(table: pd.DataFrame, male: pd.Series) -> None:
    # Zhang M et al. 2022 (2018-19): SUA > 420 umol/L in 24.4% of men and 3.6% of women.
    above = table["uric_acid"] > 420
    assert 0.20 < above[male].mean() < 0.29
    assert 0.01 < above[~male].mean() < 0.07


def test_sex_differences(table: pd.DataFrame, male: pd.Series) -> None:
    men, women = table[male], table[~male]
    assert men["hemoglobin"].mean() - women["hemoglobin"].mean() > 12
    assert men["uric_acid"].mean() - women["uric_acid"].mean() > 60
    assert men["height"].mean() - women["height"].mean() > 8
    assert men["hematocrit"].mean() > women["hematocrit"].mean()
    assert women["anemia"].mean() > 2 * men["anemia"].mean()
    assert men["hyperuricemia"].mean() > 2 * women["hyperuricemia"].mean()


@pytest.mark.parametrize(
    ("x", "y", "lo", "hi"),
    [
        ("hemoglobin", "hematocrit", 0.8, 0.99),
        ("bmi", "alt", 0.2, 0.6),
        ("bmi", "uric_acid", 0.15, 0.5),
        ("bmi", "liver_fat", 0.3, 0.7),
        ("bmi", "waist", 0.7, 0.95),
        ("bmi", "triglycerides", 0.2, 0.55),
        ("bmi", "hdl", -0.55, -0.15),
        ("bmi", "sbp", 0.15, 0.5),
        ("bmi", "dbp", 0.15, 0.5),
        ("bmi", "glucose", 0.1, 0.4),
        ("alcohol_g_per_day", "ggt", 0.3, 0.75),
        ("alcohol_g_per_day", "alt", 0.02, 0.35),
        ("alcohol_g_per_day", "triglycerides", 0.02, 0.3),
        ("alcohol_g_per_day", "rbc_volume", 0.05, 0.35),
        ("age", "glucose", 0.1, 0.45),
        ("age", "sbp", 0.3, 0.7),
        ("age", "bmi", 0.05, 0.3),
        ("liver_fat", "alt", 0.35, 0.8),
        ("sbp", "dbp", 0.6, 0.9),
    ],
)
def test_correlations(table: pd.DataFrame, x: str, y: str, lo: float, hi: float) -> None:
    assert lo < _r(table, x, y) < hi


def test_lifestyle_effects(table: pd.DataFrame, male: pd.Series) -> None:
    drinkers = table["alcohol"] == 1
    assert table.loc[drinkers, "ggt"].median() > 1.5 * table.loc[~drinkers, "ggt"].median()
    men = table[male]
    smoke = men["smoking"] == 1
    gap = men.loc[smoke, "hemoglobin"].mean() - men.loc[~smoke, "hemoglobin"].mean()
    assert 1 < gap < 6
    # Heavy drinkers (>= 60 g/day) have larger red cells (macrocytosis).
    heavy = table["alcohol_g_per_day"] >= 60
    assert table.loc[heavy, "rbc_volume"].mean() > table.loc[~heavy, "rbc_volume"].mean() + 1.5


def test_age_patterns(table: pd.DataFrame) -> None:
    by_decade = table.groupby((table["age"] // 10).clip(upper=7))
    bmi = by_decade["bmi"].mean()
    assert bmi[6] - bmi[2] > 1.0  # rises through adulthood ...
    assert abs(bmi[7] - bmi[6]) < 0.6  # ... then flat after ~60
    diabetes = by_decade["diabetes"].mean()
    assert diabetes[7] > 3 * diabetes[2]
    assert by_decade["sbp"].mean().is_monotonic_increasing


def test_low_mcv_in_a_share_of_anaemia(table: pd.DataFrame, male: pd.Series) -> None:
    anaemic = table["anemia"] == 1
    microcytic = table["rbc_volume"] < 80
    assert 0.2 < microcytic[anaemic].mean() < 0.7
    assert microcytic[~anaemic].mean() < 0.1
    assert (anaemic & microcytic & ~male).sum() > (anaemic & microcytic & male).sum()


def _expected_conditions(t: pd.DataFrame, obesity_bmi: float) -> pd.DataFrame:
    """The criteria written out independently of the module."""
    m = t["sex"] == "M"
    mets = (
        (t["waist"] >= np.where(m, 90, 80)).astype(int)
        + (t["triglycerides"] >= 1.7)
        + (t["hdl"] < np.where(m, 1.0, 1.3))
        + ((t["sbp"] >= 130) | (t["dbp"] >= 85))
        + (t["glucose"] >= 5.6)
    )
    return pd.DataFrame(
        {
            "obesity": t["bmi"] >= obesity_bmi,
            "diabetes": t["glucose"] >= 7.0,
            "metabolic_syndrome": mets >= 3,
            "hyperuricemia": t["uric_acid"] > np.where(m, 420, 360),
            "nafld": (t["liver_fat"] >= 5) & (t["alcohol_g_per_day"] < np.where(m, 30, 20)),
            "anemia": t["hemoglobin"] < np.where(m, 130, 120),
        }
    ).astype(int)


def test_conditions_match_criteria(table: pd.DataFrame) -> None:
    expected = _expected_conditions(table, obesity_bmi=28.0)
    pd.testing.assert_frame_equal(table[list(expected.columns)], expected, check_dtype=False)
    recomputed = conditions_from_phenotypes(table)
    assert tuple(recomputed.columns) == CONDITIONS
    pd.testing.assert_frame_equal(recomputed, expected, check_dtype=False)


def test_conditions_on_hand_made_rows() -> None:
    base = {
        "sex": "M", "bmi": 22.0, "waist": 80.0, "glucose": 5.0, "triglycerides": 1.0,
        "hdl": 1.5, "sbp": 115.0, "dbp": 70.0, "uric_acid": 300.0, "liver_fat": 2.0,
        "alcohol_g_per_day": 0.0, "hemoglobin": 150.0,
    }  # fmt: skip
    rows = [
        base,
        {**base, "bmi": 28.0, "glucose": 7.0, "uric_acid": 421.0, "hemoglobin": 129.0},
        {**base, "sex": "F", "uric_acid": 361.0, "hemoglobin": 125.0, "liver_fat": 5.0},
        {**base, "sex": "F", "liver_fat": 12.0, "alcohol_g_per_day": 20.0, "hdl": 1.25},
        {**base, "liver_fat": 12.0, "alcohol_g_per_day": 25.0, "waist": 90.0, "dbp": 85.0},
        {**base, "sex": "F", "waist": 80.0, "triglycerides": 1.7, "hdl": 1.29},
    ]
    t = pd.DataFrame(rows, index=[10, 11, 12, 13, 14, 15])
    got = conditions_from_phenotypes(t)
    assert list(got.index) == [10, 11, 12, 13, 14, 15]
    expected = {
        "obesity": [0, 1, 0, 0, 0, 0],
        "diabetes": [0, 1, 0, 0, 0, 0],
        "metabolic_syndrome": [0, 0, 0, 0, 0, 1],
        "hyperuricemia": [0, 1, 1, 0, 0, 0],
        "nafld": [0, 0, 1, 0, 1, 0],
        "anemia": [0, 1, 0, 0, 0, 0],
    }
    assert {c: got[c].tolist() for c in got.columns} == expected
    assert all(pd.api.types.is_integer_dtype(got[c]) for c in got.columns)


def test_obesity_criterion_switch(table: pd.DataFrame) -> None:
    who = conditions_from_phenotypes(table, obesity_criterion="who")
    assert (who["obesity"] == (table["bmi"] >= 30).astype(int)).all()
    assert who["obesity"].sum() < table["obesity"].sum()
    pd.testing.assert_frame_equal(who.drop(columns="obesity"), table[list(CONDITIONS[1:])])
    small = simulate_phenotypes(2000, np.random.default_rng(3), obesity_criterion="who")
    assert (small["obesity"] == (small["bmi"] >= 30)).all()


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="chinese.*who"):
        simulate_phenotypes(10, np.random.default_rng(0), obesity_criterion="asian")
    t = simulate_phenotypes(10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="chinese"):
        conditions_from_phenotypes(t, obesity_criterion="bmi25")
    with pytest.raises(ValueError, match="missing"):
        conditions_from_phenotypes(t.drop(columns="waist"))
    with pytest.raises(ValueError, match="sex"):
        conditions_from_phenotypes(t.assign(sex="male"))
