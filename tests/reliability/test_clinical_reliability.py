"""A broken clinical table through the pipeline's clinical nodes (issue 14, part 6): empty
required cells and unknown columns are reported in ``clinical_issues``; missing or duplicate
ids write ``clinical_issues.csv`` first, then stop the run with one clear line. The raw table
is never modified."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset

from face_health.ingest.clinical import ClinicalTableError, validate_clinical
from face_health.pipelines.data_engineering import nodes
from face_health.pipelines.data_engineering.pipeline import create_pipeline
from face_health.schema import TARGETS

CLINICAL_NODES = tuple(
    f"data_engineering.ingest.{name}"
    for name in ("validate_clinical_table", "check_clinical_table")
)


def _table(n: int = 6) -> pd.DataFrame:
    rows = []
    for i in range(n):
        row = {"subject_id": f"S{i + 1:04d}", "sex": "F" if i % 2 else "M"}
        for target in TARGETS:
            low, high = target.plausible if target.kind == "regression" else (0, 1)
            row[target.name] = (low + high) / 2 if target.kind == "regression" else i % 2
        row["bmi"] = 60.0 / 1.7**2
        row.update(weight=60.0, height=170.0)
        rows.append(row)
    return pd.DataFrame(rows)


def _write(tmp_path: Path, table: pd.DataFrame) -> tuple[Path, str]:
    path = tmp_path / "clinical.csv"
    table.to_csv(path, index=False)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _run(tmp_path: Path, raw: Path) -> tuple[Path, Exception | None]:
    """The pipeline's two clinical nodes with the catalog's datasets for the raw table and
    ``clinical_issues``: what ``kedro run`` does with them."""
    issues_path = tmp_path / "08_reporting" / "clinical_issues.csv"
    catalog = DataCatalog(
        {
            "raw_clinical": CSVDataset(filepath=str(raw), load_args={"dtype": {"subject_id": str}}),
            "raw_cohort": MemoryDataset({"source": "folder"}),
            "clinical_issues": CSVDataset(filepath=str(issues_path)),
            "clinical": MemoryDataset(),
        }
    )
    pipeline = create_pipeline().only_nodes(*CLINICAL_NODES)
    try:
        SequentialRunner().run(pipeline, catalog)
    except Exception as exc:  # noqa: BLE001 - the test looks at what the run stops with
        return issues_path, exc
    return issues_path, None


def test_empty_sex_is_reported_in_the_issues_file(tmp_path) -> None:
    table = _table().astype({"sex": object})
    table.loc[2, "sex"] = None
    raw, digest = _write(tmp_path, table)
    issues_path, error = _run(tmp_path, raw)
    assert error is None
    issues = pd.read_csv(issues_path)
    row = issues[issues["column"] == "sex"].iloc[0]
    assert (row["row"], row["subject_id"], row["severity"]) == (3, "S0003", "error")
    assert "empty; sex is required" in row["message"]
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == digest


def test_unknown_column_is_reported_not_copied_silently(tmp_path) -> None:
    raw, digest = _write(tmp_path, _table().assign(notes="called back on Monday"))
    issues_path, error = _run(tmp_path, raw)
    assert error is None
    issues = pd.read_csv(issues_path)
    row = issues[issues["column"] == "notes"].iloc[0]
    assert row["severity"] == "warning" and "not in the schema" in row["message"]
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda t: t.assign(subject_id=["S0001", "S0002", "S0001", *t["subject_id"][3:]]),
         ["rows 1 and 3: duplicate subject_id 'S0001'"]),
        (lambda t: t.assign(subject_id=["S0001", "", *t["subject_id"][2:]]),
         ["row 2: missing or empty subject_id"]),
    ],
    ids=["duplicate id", "empty id"],
)  # fmt: skip
def test_unusable_ids_write_the_issues_first_then_stop_in_one_line(tmp_path, change, words) -> None:
    table = change(_table()).astype({"alt": object})
    table.loc[4, "alt"] = "n.d."  # a cell issue too: the file holds every issue, not only ids
    raw, digest = _write(tmp_path, table)
    issues_path, error = _run(tmp_path, raw)
    assert isinstance(error, ClinicalTableError), error
    message = str(error)
    assert "\n" not in message and len(message) < 400
    assert message.startswith("clinical table is unusable")
    assert "clinical_issues.csv" in message
    assert error.__cause__ is None and error.__suppress_context__
    for word in words:
        assert word in message
    issues = pd.read_csv(issues_path)  # written before the run stopped
    assert set(issues["severity"]) >= {"unusable", "error"}
    assert any(words[0] in m for m in issues.loc[issues["severity"] == "unusable", "message"])
    assert "'n.d.' is not a number" in " ".join(issues["message"])
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == digest


def test_the_library_call_still_raises_on_duplicate_ids() -> None:
    table = _table().assign(subject_id=["S1", "S1", "S2", "S3", "S4", "S5"])
    with pytest.raises(ClinicalTableError, match="rows 1 and 2: duplicate subject_id 'S1'"):
        validate_clinical(table)


def test_a_missing_id_column_still_stops_before_any_output() -> None:
    table = _table().rename(columns={"subject_id": "id"})
    with pytest.raises(ClinicalTableError, match="'subject_id': missing"):
        nodes.validate_clinical_table(table, {})


def test_a_clean_table_passes_both_nodes_unchanged() -> None:
    clean, issues = nodes.validate_clinical_table(_table(), {})
    assert issues.empty, issues
    pd.testing.assert_frame_equal(nodes.check_clinical_table(clean, issues), clean)


def test_kedro_ends_such_a_run_with_one_line_not_a_traceback(capsys, monkeypatch) -> None:
    import sys

    from face_health.hooks import OneLineErrorHook
    from face_health.settings import HOOKS

    assert any(isinstance(hook, OneLineErrorHook) for hook in HOOKS)
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: seen.append(value))
    error = ClinicalTableError("clinical table is unusable (1 problem): rows 1 and 3: duplicate")
    OneLineErrorHook().on_pipeline_error(error, {}, None, None)
    sys.excepthook(type(error), error, None)
    assert capsys.readouterr().err == f"Error: {error}\n"
    other = RuntimeError("a bug")  # anything else still gets the full traceback
    sys.excepthook(type(other), other, None)
    assert seen == [other]
    OneLineErrorHook().on_pipeline_error(KeyError("bug"), {}, None, None)  # not installed
