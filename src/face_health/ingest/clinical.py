"""Validate a cohort's clinical table against the target schema.

A real cohort's table arrives with typos, unit slips and free-text answers. This module turns
it into the one shape the pipelines expect (``schema.TARGETS``, in schema order and units)
and says, cell by cell, what it changed and why, so a data manager can fix the source.

Two kinds of problem are told apart:

* the table is unusable (no ``subject_id`` column, missing or duplicate ids): every subject is
  a partition key from raw scan to prediction, so :class:`ClinicalTableError` is raised,
  listing all such problems at once;
* a single cell is wrong (text in a number column, a value outside the plausible range, an
  unknown yes/no answer): the value becomes missing and an issue row explains it; the rest
  of the subject's data is still used.

Examples
--------
>>> clean, issues = validate_clinical(read_clinical("data/01_raw/clinical.csv"))  # doctest: +SKIP
>>> issues[issues.severity == "error"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from face_health.schema import ID_COLUMN, SEX_COLUMN, TARGETS, Target

logger = logging.getLogger(__name__)

#: Columns of the issues table returned by :func:`validate_clinical`.
ISSUE_COLUMNS: tuple[str, ...] = ("row", "subject_id", "column", "severity", "message")

#: Relative tolerance between a given BMI and weight / height^2 before a warning is raised;
#: 5% absorbs rounding of weight and height in the source table.
BMI_TOLERANCE = 0.05

#: File suffixes :func:`read_clinical` understands.
SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")

_SEX_WORDS: dict[str, str] = {
    "f": "F",
    "female": "F",
    "w": "F",  # "weiblich" / "woman": common in European cohorts
    "woman": "F",
    "m": "M",
    "male": "M",
    "man": "M",
}
_BINARY_WORDS: dict[str, int] = {
    "0": 0,
    "1": 1,
    "no": 0,
    "yes": 1,
    "n": 0,
    "y": 1,
    "false": 0,
    "true": 1,
}


@dataclass(frozen=True)
class _UnitSlip:
    """A likely unit mistake: ``value * factor`` in the plausible range means ``unit``."""

    unit: str
    factor: float


# Checked in order, first match wins, so the most common slip of each column comes first.
# Only out-of-range values are checked, so a slip is never "corrected", only pointed out.
_UNIT_SLIPS: dict[str, tuple[_UnitSlip, ...]] = {
    "weight": (_UnitSlip("lb", 0.45359237), _UnitSlip("g", 1e-3)),
    "height": (_UnitSlip("metres", 100.0), _UnitSlip("inches", 2.54), _UnitSlip("mm", 0.1)),
    "alt": (_UnitSlip("ukat/L", 60.0),),
    "ggt": (_UnitSlip("ukat/L", 60.0),),
    "uric_acid": (_UnitSlip("mg/dL", 59.48), _UnitSlip("mmol/L", 1000.0)),
    "hemoglobin": (_UnitSlip("g/dL", 10.0),),
    "hematocrit": (_UnitSlip("a fraction (L/L)", 100.0),),
}


class ClinicalTableError(ValueError):
    """The clinical table cannot be used at all; the message lists every such problem
    (``located``: ``(row, subject_id, problem)`` of each, for the issues table)."""

    def __init__(self, message: str, located: list[tuple[int, str | None, str]] | None = None):
        super().__init__(message)
        self.located = list(located or [])


#: ``severity`` of an issue row that makes the whole table unusable (missing or duplicate
#: ids): :func:`validate_clinical` with ``raise_unusable=False`` reports them as rows, and
#: :func:`raise_if_unusable` stops on them with one line.
UNUSABLE = "unusable"

#: Columns that must hold a value in every row (an empty cell is an error issue).
REQUIRED_COLUMNS: tuple[str, ...] = (SEX_COLUMN,)


def raise_if_unusable(issues: pd.DataFrame, where: str = "clinical_issues") -> None:
    """Raise :class:`ClinicalTableError` with one line when ``issues`` holds table-level
    problems (severity :data:`UNUSABLE`), naming the first ones and where all are."""
    fatal = issues[issues["severity"] == UNUSABLE]
    if fatal.empty:
        return
    messages = list(dict.fromkeys(fatal["message"]))  # a duplicate id is one row per copy
    shown = "; ".join(messages[:3])
    more = f"; and {len(messages) - 3} more" if len(messages) > 3 else ""
    count = f"{len(messages)} problem" + ("s" if len(messages) > 1 else "")
    raise ClinicalTableError(f"clinical table is unusable ({count}): {shown}{more}; see {where}")


def read_clinical(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a clinical table from CSV or Parquet, chosen by the file suffix.

    Parameters
    ----------
    path : str or path-like
        ``.csv``, ``.parquet`` or ``.pq`` file.

    Returns
    -------
    pandas.DataFrame
        The raw table, ``subject_id`` read as text (so ``"0007"`` keeps its zeros); other
        columns as the reader infers them. Validate it with :func:`validate_clinical`.

    Raises
    ------
    ValueError
        If the suffix is not one of :data:`SUPPORTED_SUFFIXES`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, dtype={ID_COLUMN: str})
    if suffix in (".parquet", ".pq"):
        table = pd.read_parquet(path)
        if ID_COLUMN in table.columns:
            # Parquet keeps the writer's type; integer ids become text like the CSV path.
            table[ID_COLUMN] = table[ID_COLUMN].map(_id_text).astype(object)
        return table
    raise ValueError(
        f"cannot read clinical table {str(path)!r}: unsupported suffix {path.suffix!r}; "
        f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
    )


def validate_clinical(
    table: pd.DataFrame, *, raise_unusable: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check a clinical table against ``schema.TARGETS`` and return a clean copy.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per subject, as read by :func:`read_clinical`.
    raise_unusable : bool
        Raise on table-level problems (missing or duplicate ids); with False they become
        issue rows of severity :data:`UNUSABLE` beside the cell issues (the pipeline writes
        the issues table first, then stops with :func:`raise_if_unusable`).

    Returns
    -------
    clean : pandas.DataFrame
        One row per subject: ``subject_id`` (text, surrounding whitespace removed) first,
        ``sex`` (``'F'``, ``'M'`` or missing) if the input has it, then every target of
        ``schema.TARGETS`` in schema order (``float64`` for regression targets, nullable
        ``Int64`` 0/1 for binary targets and conditions; a target absent from the input is
        added as all-missing), then any extra input columns unchanged.
    issues : pandas.DataFrame
        Columns ``row`` (1-based data row as in the file, header excluded; missing for a
        whole-column issue), ``subject_id``, ``column``, ``severity`` (``'error'`` when a
        value was set to missing or a required cell is empty, ``'warning'`` otherwise, e.g.
        a column not in the schema, which is copied unchanged but reported) and ``message``.

    Raises
    ------
    ClinicalTableError
        If the ``subject_id`` column is missing, or any id is missing, empty or duplicated.
    """
    issues: list[dict[str, Any]] = []
    try:
        _check_structure(table)
    except ClinicalTableError as exc:
        if raise_unusable or not _has_single_id_column(table):
            raise
        issues += [_issue(row, subject, ID_COLUMN, UNUSABLE, message)
                   for row, subject, message in exc.located]  # fmt: skip
    ids = [_id_text(v) or "" for v in table[ID_COLUMN]]
    clean: dict[str, pd.Series] = {ID_COLUMN: pd.Series(ids, dtype=object).astype(str)}

    if SEX_COLUMN in table.columns:
        clean[SEX_COLUMN] = _clean_sex(table[SEX_COLUMN], ids, issues)
    for column in REQUIRED_COLUMNS:
        if column not in table.columns:
            issues.append(
                _issue(None, None, column, "warning", f"column {column!r} is absent (required)")
            )
            continue
        for row, value in enumerate(table[column], start=1):
            if _cell_text(value) is None:
                issues.append(
                    _issue(
                        row,
                        ids[row - 1],
                        column,
                        "error",
                        f"row {row}, subject {ids[row - 1]!r}, column {column!r}: empty; "
                        f"{column} is required",
                    )
                )

    for target in TARGETS:
        if target.name not in table.columns:
            issues.append(
                _issue(None, None, target.name, "warning", _absent_message(target, table))
            )
            clean[target.name] = _all_missing(target, len(table))
        elif target.kind == "regression":
            clean[target.name] = _clean_number(table[target.name], target, ids, issues)
        else:
            clean[target.name] = _clean_binary(table[target.name], target, ids, issues)

    known = {ID_COLUMN, SEX_COLUMN, *clean}
    for column in table.columns:
        if column not in known:
            issues.append(
                _issue(
                    None,
                    None,
                    str(column),
                    "warning",
                    f"column {column!r} is not in the schema (subject_id, sex and the targets); "
                    "copied unchanged, not used by the method",
                )
            )
            clean[column] = table[column].reset_index(drop=True)

    result = pd.DataFrame(clean)
    _check_bmi(result, issues)

    issues_table = pd.DataFrame(issues, columns=list(ISSUE_COLUMNS))
    issues_table["row"] = issues_table["row"].astype("Int64")
    if len(issues_table):
        n_errors = int((issues_table["severity"] == "error").sum())
        logger.warning(
            "clinical table: %d values set to missing, %d warnings (see the issues table)",
            n_errors,
            len(issues_table) - n_errors,
        )
    return result, issues_table


# --- table-level checks -------------------------------------------------------------------


def _check_structure(table: pd.DataFrame) -> None:
    """Raise one :class:`ClinicalTableError` listing every problem that makes the table unusable."""
    problems: list[str] = []
    duplicated_columns = table.columns[table.columns.duplicated()].unique()
    problems += [f"column {c!r}: appears more than once" for c in duplicated_columns]
    if ID_COLUMN not in table.columns:
        problems.append(
            f"column {ID_COLUMN!r}: missing (found: {', '.join(map(repr, table.columns))})"
        )
        raise ClinicalTableError(_problem_text(problems))
    if ID_COLUMN in duplicated_columns:
        raise ClinicalTableError(_problem_text(problems))

    rows_by_id: dict[str, list[int]] = {}
    located: list[tuple[int, str | None, str]] = []
    for row, value in enumerate(table[ID_COLUMN], start=1):
        subject = _id_text(value)
        if subject is None:
            problems.append(f"row {row}: missing or empty {ID_COLUMN}")
            located.append((row, None, problems[-1]))
        else:
            rows_by_id.setdefault(subject, []).append(row)
    for subject, rows in rows_by_id.items():
        if len(rows) > 1:
            problems.append(f"{_rows_text(rows)}: duplicate {ID_COLUMN} {subject!r}")
            located += [(row, subject, problems[-1]) for row in rows]
    if problems:
        raise ClinicalTableError(_problem_text(problems), located)


def _has_single_id_column(table: pd.DataFrame) -> bool:
    return ID_COLUMN in table.columns and not table.columns.duplicated().any()


def _problem_text(problems: list[str]) -> str:
    lines = "\n".join(f"  - {p}" for p in problems)
    count = f"{len(problems)} problem" + ("s" if len(problems) > 1 else "")
    return f"clinical table is unusable ({count}):\n{lines}"


def _rows_text(rows: list[int]) -> str:
    """``rows 4 and 9`` / ``rows 4, 9 and 12``."""
    head = ", ".join(map(str, rows[:-1]))
    return f"rows {head} and {rows[-1]}"


def _absent_message(target: Target, table: pd.DataFrame) -> str:
    message = f"column {target.name!r} ({target.unit}) is absent; added as all-missing"
    # Column names are case-sensitive by contract; a near miss is pointed out, not renamed.
    near = [c for c in table.columns if str(c).strip().lower() == target.name]
    if near:
        message += f" (found {near[0]!r}: column names are exact and lower-case)"
    return message


def _check_bmi(clean: pd.DataFrame, issues: list[dict[str, Any]]) -> None:
    """Warn where a given BMI disagrees with weight / height^2 (the given BMI is kept)."""
    expected = clean["weight"] / (clean["height"] / 100.0) ** 2
    mismatch = (clean["bmi"] - expected).abs() > BMI_TOLERANCE * expected
    # NaN compares False, so subjects missing any of the three are skipped.
    for position in np.flatnonzero(mismatch.to_numpy(dtype=bool)):
        bmi, computed = clean["bmi"].iat[position], expected.iat[position]
        subject = clean[ID_COLUMN].iat[position]
        issues.append(
            _issue(
                position + 1,
                subject,
                "bmi",
                "warning",
                f"row {position + 1}, subject {subject!r}, column 'bmi': {bmi:g} kg/m^2 differs "
                f"from weight / height^2 = {computed:.1f} kg/m^2 by "
                f"{abs(bmi - computed) / computed:.0%} (more than {BMI_TOLERANCE:.0%}); "
                "kept the given value",
            )
        )


# --- per-cell cleaning --------------------------------------------------------------------


def _clean_sex(values: pd.Series, ids: list[str], issues: list[dict[str, Any]]) -> pd.Series:
    accepted = "F, M, female, male, f, m, w, woman, man"
    out: list[str | None] = []
    for row, value in enumerate(values, start=1):
        text = _cell_text(value)
        sex = None if text is None else _SEX_WORDS.get(text.lower())
        if text is not None and sex is None:
            issues.append(
                _cell_issue(row, ids, SEX_COLUMN, f"{value!r} is not a sex (accepted: {accepted})")
            )
        out.append(sex)
    return _text_series(out)


def _clean_number(
    values: pd.Series, target: Target, ids: list[str], issues: list[dict[str, Any]]
) -> pd.Series:
    low, high = target.plausible
    out = np.full(len(values), np.nan)
    for row, value in enumerate(values, start=1):
        number = _parse_number(value)
        if isinstance(number, str):
            issues.append(_cell_issue(row, ids, target.name, f"{number} (expected {target.unit})"))
        elif number is not None and not low <= number <= high:
            message = (
                f"{number:g} {target.unit} is outside the plausible range "
                f"{low:g}-{high:g} {target.unit}"
            )
            slip = _unit_slip(target, number)
            if slip is not None:
                message += f"; looks like {slip.unit}; this column is {target.unit}"
            issues.append(_cell_issue(row, ids, target.name, message))
        elif number is not None:
            out[row - 1] = number
    return pd.Series(out, dtype="float64")


def _clean_binary(
    values: pd.Series, target: Target, ids: list[str], issues: list[dict[str, Any]]
) -> pd.Series:
    out: list[int | None] = []
    for row, value in enumerate(values, start=1):
        text = _cell_text(value)
        if isinstance(value, float | np.floating) and value in (0.0, 1.0):
            text = str(int(value))  # 1.0 from a numeric column that held a missing value
        answer = None if text is None else _BINARY_WORDS.get(text.lower())
        if text is not None and answer is None:
            issues.append(
                _cell_issue(
                    row,
                    ids,
                    target.name,
                    f"{value!r} is not a yes/no value (accepted: 0/1, yes/no, y/n, true/false)",
                )
            )
        out.append(answer)
    return pd.Series(out, dtype="Int64")


def _parse_number(value: Any) -> float | str | None:
    """A finite float, None for a missing cell, or a message (str) saying why it is not one."""
    if isinstance(value, bool | np.bool_):
        return f"{value!r} is not a number"
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        return None if math.isnan(number) else number
    text = _cell_text(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        hint = (
            "; a decimal comma? write it with a point"
            if re.fullmatch(r"[+-]?\d+,\d+", text)
            else ""
        )
        return f"{text!r} is not a number{hint}"
    return None if math.isnan(number) else number


def _unit_slip(target: Target, value: float) -> _UnitSlip | None:
    low, high = target.plausible
    for slip in _UNIT_SLIPS.get(target.name, ()):
        if low <= value * slip.factor <= high:
            return slip
    return None


def _cell_issue(row: int, ids: list[str], column: str, problem: str) -> dict[str, Any]:
    subject = ids[row - 1]
    message = f"row {row}, subject {subject!r}, column {column!r}: {problem}; set to missing"
    return _issue(row, subject, column, "error", message)


def _issue(
    row: int | None, subject: str | None, column: str, severity: str, message: str
) -> dict[str, Any]:
    return {
        "row": row,
        "subject_id": subject,
        "column": column,
        "severity": severity,
        "message": message,
    }


# --- small helpers ------------------------------------------------------------------------


def _cell_text(value: Any) -> str | None:
    """The stripped text of a cell, or None when the cell is missing or blank."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _id_text(value: Any) -> str | None:
    """A subject id as text; ``3.0`` (an integer id column that held a gap) becomes ``'3'``."""
    if isinstance(value, float | np.floating) and not math.isnan(value) and value.is_integer():
        return str(int(value))
    return _cell_text(value)


def _text_series(values: list[str | None]) -> pd.Series:
    """Text with NaN for missing: pandas' default ``str`` dtype on pandas 3, object before."""
    try:
        dtype: Any = pd.StringDtype(na_value=np.nan)
    except TypeError:  # pandas < 2.3 has no NaN-backed string dtype
        dtype = object
    return pd.Series(values, dtype=dtype)


def _all_missing(target: Target, n_rows: int) -> pd.Series:
    if target.kind == "regression":
        return pd.Series(np.full(n_rows, np.nan), dtype="float64")
    return pd.Series([None] * n_rows, dtype="Int64")
