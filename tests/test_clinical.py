"""Tests of the clinical-table validation against ``schema.TARGETS``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from face_health.ingest.clinical import ClinicalTableError, read_clinical, validate_clinical
from face_health.schema import BINARY_TARGETS, ID_COLUMN, REGRESSION_TARGETS, TARGET_NAMES


def _clean_table(n: int = 4) -> pd.DataFrame:
    """A table that satisfies the schema: every target present and plausible."""
    rng = np.random.default_rng(0)
    height = rng.uniform(150, 190, n)
    weight = rng.uniform(50, 100, n)
    table = pd.DataFrame(
        {
            ID_COLUMN: [f"S{i:04d}" for i in range(1, n + 1)],
            "sex": ["F", "M"] * (n // 2),
            "age": rng.uniform(20, 80, n),
            "weight": weight,
            "height": height,
            "bmi": weight / (height / 100) ** 2,
            "alt": 25.0,
            "ggt": 30.0,
            "uric_acid": 320.0,
            "hemoglobin": 140.0,
            "hematocrit": 42.0,
            "rbc_volume": 90.0,
        }
    )
    for name in BINARY_TARGETS:
        table[name] = [0, 1] * (n // 2)
    return table


def _one(issues: pd.DataFrame, column: str) -> pd.Series:
    rows = issues[issues["column"] == column]
    assert len(rows) == 1, issues
    return rows.iloc[0]


def test_clean_table_passes_without_issues() -> None:
    table = _clean_table().assign(site="Shanghai")
    clean, issues = validate_clinical(table)
    # a column outside the schema is copied unchanged, and reported (issue 14)
    assert issues[["column", "severity"]].values.tolist() == [["site", "warning"]]
    assert "not in the schema" in issues["message"].iloc[0]
    assert list(clean.columns) == [ID_COLUMN, "sex", *TARGET_NAMES, "site"]
    assert clean[ID_COLUMN].tolist() == table[ID_COLUMN].tolist()
    for name in REGRESSION_TARGETS:
        assert clean[name].dtype == np.float64
        np.testing.assert_allclose(clean[name], table[name].astype(float))
    for name in BINARY_TARGETS:
        assert clean[name].dtype == "Int64"
        assert clean[name].tolist() == table[name].tolist()


def test_duplicate_ids_error_lists_both_rows() -> None:
    table = _clean_table(10)
    table.loc[8, ID_COLUMN] = "S0003"  # data rows 3 and 9
    table.loc[5, ID_COLUMN] = "  "  # data row 6
    with pytest.raises(ClinicalTableError) as error:
        validate_clinical(table)
    message = str(error.value)
    assert "rows 3 and 9: duplicate subject_id 'S0003'" in message
    assert "row 6: missing or empty subject_id" in message  # all problems, not just the first


def test_missing_subject_id_column() -> None:
    with pytest.raises(ClinicalTableError, match="'subject_id': missing"):
        validate_clinical(_clean_table().rename(columns={ID_COLUMN: "id"}))


def test_haemoglobin_in_g_per_dl_becomes_missing_with_a_hint() -> None:
    table = _clean_table()
    table.loc[1, "hemoglobin"] = 13.5
    clean, issues = validate_clinical(table)
    assert pd.isna(clean.loc[1, "hemoglobin"])
    assert clean["hemoglobin"].notna().sum() == 3
    issue = _one(issues, "hemoglobin")
    assert (issue["row"], issue["subject_id"], issue["severity"]) == (2, "S0002", "error")
    assert "13.5" in issue["message"]
    assert "looks like g/dL; this column is g/L" in issue["message"]


@pytest.mark.parametrize(
    ("column", "value", "hint"),
    [
        ("height", 1.75, "looks like metres; this column is cm"),
        ("uric_acid", 6.5, "looks like mg/dL; this column is umol/L"),
    ],
)
def test_other_unit_slips_are_named(column: str, value: float, hint: str) -> None:
    table = _clean_table()
    table.loc[0, column] = value
    clean, issues = validate_clinical(table)
    assert pd.isna(clean.loc[0, column])
    assert hint in _one(issues, column)["message"]


def test_text_in_numeric_column_becomes_missing() -> None:
    table = _clean_table().astype({"alt": object})
    table.loc[2, "alt"] = "n.d."
    clean, issues = validate_clinical(table)
    assert pd.isna(clean.loc[2, "alt"])
    assert clean["alt"].dtype == np.float64
    issue = _one(issues, "alt")
    assert (issue["row"], issue["subject_id"]) == (3, "S0003")
    assert "'n.d.' is not a number" in issue["message"]
    assert "U/L" in issue["message"]


def test_binary_and_sex_answers_are_parsed() -> None:
    table = _clean_table(8).astype({"smoking": object, "sex": object})
    table["smoking"] = ["yes", "No", "Y", "n", "TRUE", "false", 1, "maybe"]
    table["sex"] = ["female", "Male", "w", "man", "f", "M", None, "x"]
    clean, issues = validate_clinical(table)
    assert clean["smoking"].tolist() == [1, 0, 1, 0, 1, 0, 1, pd.NA]
    assert clean["smoking"].dtype == "Int64"
    assert clean["sex"].tolist()[:6] == ["F", "M", "F", "M", "F", "M"]
    assert clean["sex"].iloc[6:].isna().all()
    assert "'maybe' is not a yes/no value" in _one(issues, "smoking")["message"]
    sex = issues[issues["column"] == "sex"].set_index("row")
    assert sorted(sex.index) == [7, 8]
    assert "'x' is not a sex" in sex.loc[8, "message"]
    # a blank sex is missing, and reported: sex is a required cell (issue 14)
    assert "empty; sex is required" in sex.loc[7, "message"]
    assert sex.loc[7, "severity"] == "error"


def test_absent_target_column_is_a_warning_and_all_missing() -> None:
    table = _clean_table().drop(columns=["ggt"])
    clean, issues = validate_clinical(table)
    assert clean["ggt"].isna().all()
    assert list(clean.columns).index("ggt") == list(clean.columns).index("alt") + 1
    issue = _one(issues, "ggt")
    assert issue["severity"] == "warning"
    assert pd.isna(issue["row"])


def test_inconsistent_bmi_is_a_warning_and_kept() -> None:
    table = _clean_table()
    table.loc[3, "bmi"] = table.loc[3, "bmi"] * 1.2
    clean, issues = validate_clinical(table)
    assert clean.loc[3, "bmi"] == pytest.approx(table.loc[3, "bmi"])
    issue = _one(issues, "bmi")
    assert (issue["row"], issue["severity"]) == (4, "warning")


def test_read_clinical_csv_and_parquet(tmp_path: Path) -> None:
    table = _clean_table()
    table[ID_COLUMN] = ["0001", "0002", "0003", "0004"]  # zeros must survive
    table.to_csv(tmp_path / "clinical.csv", index=False)
    table.assign(**{ID_COLUMN: range(1, 5)}).to_parquet(tmp_path / "clinical.parquet")
    from_csv = read_clinical(tmp_path / "clinical.csv")
    from_parquet = read_clinical(tmp_path / "clinical.parquet")
    assert from_csv[ID_COLUMN].tolist() == ["0001", "0002", "0003", "0004"]
    assert from_parquet[ID_COLUMN].tolist() == ["1", "2", "3", "4"]
    pd.testing.assert_frame_equal(
        validate_clinical(from_csv)[0].drop(columns=ID_COLUMN),
        validate_clinical(from_parquet)[0].drop(columns=ID_COLUMN),
    )


def test_read_clinical_rejects_other_suffixes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.csv, \.parquet"):
        read_clinical(tmp_path / "clinical.xlsx")
