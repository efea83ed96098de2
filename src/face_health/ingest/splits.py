"""Subject-level train / validation / test splits.

A subject is the unit of independence: all of a subject's scans, views and regions sit in one
split, so nothing fitted on ``train`` has seen a test face. Splits are stratified so every
split covers the same mix of sex and age, deterministic for a seed, and independent of the
order of the input rows (a re-exported table gives the same split).

How the allocation works: subjects are grouped into strata, shuffled within each stratum,
and the strata laid end to end in sorted order. Walking that list, each subject goes to the
split furthest behind its target share ("largest deficit"), so every stretch of the list,
hence every stratum and every group of neighbouring strata (all women, say), gets its share
to within a subject or two, and the totals are within one subject of ``n * fraction``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from face_health.schema import ID_COLUMN

logger = logging.getLogger(__name__)

SPLITS: tuple[str, str, str] = ("train", "validation", "test")

_MISSING = "<missing>"
#: A numeric column with more distinct values than this is binned into quartiles; fewer
#: distinct values (a 0/1 flag, a score 1..4) are used as categories.
_MAX_CATEGORIES_FOR_NUMBERS = 4


def make_splits(
    table: pd.DataFrame,
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    stratify_by: Sequence[str] = ("sex", "age"),
) -> pd.DataFrame:
    """Assign every subject to ``train``, ``validation`` or ``test``.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per subject with a ``subject_id`` column and the stratification columns.
    fractions : (3,) float
        Shares of train, validation and test; each positive, summing to 1.
    seed : int
        Seed of the shuffle within strata; the same seed gives the same splits.
    stratify_by : sequence of str
        Columns whose joint values define strata. Numeric columns with more than four
        distinct values are binned into quartiles, other columns used as they are; a missing
        value is a stratum of its own. Columns absent from ``table`` are skipped with a
        warning (``sex`` is optional in a real cohort). Strata smaller than
        ``ceil(1 / min(fractions))`` subjects fall back to the stratum of the columns before
        the last (sex alone, then one pool), so each stratum can reach every split.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject_id`` and ``split``, one row per subject, sorted by ``subject_id``.
        With at least three subjects every split is non-empty.

    Raises
    ------
    ValueError
        If ``fractions`` are not three positive numbers summing to 1, or ``subject_id`` is
        missing, empty or duplicated.
    """
    shares = _check_fractions(fractions)
    subjects = _sorted_subjects(table)
    columns = [c for c in stratify_by if c in subjects.columns]
    absent = [c for c in stratify_by if c not in subjects.columns]
    if absent:
        logger.warning("make_splits: stratification columns %s absent; skipped", absent)

    keys = pd.DataFrame({c: _stratum_labels(subjects[c]) for c in columns}, index=subjects.index)
    strata = _coarsen(keys, min_size=math.ceil(1 / shares.min() - 1e-9))

    # Sorted order of strata keeps a coarse stratum (e.g. sex) a contiguous stretch of the
    # list, so its share per split is as balanced as each fine stratum's.
    rng = np.random.default_rng(seed)
    order: list[int] = []
    for stratum in sorted(set(strata)):
        members = np.flatnonzero([s == stratum for s in strata])
        order.extend(rng.permutation(members).tolist())

    assignment = np.empty(len(subjects), dtype=int)
    assignment[order] = _deal(len(order), shares)
    if len(subjects) >= len(SPLITS):
        _fill_empty_splits(assignment, order)

    logger.info(
        "make_splits: %d subjects, %d strata over %s; %s",
        len(subjects),
        len(set(strata)),
        columns,
        {name: int((assignment == k).sum()) for k, name in enumerate(SPLITS)},
    )
    return pd.DataFrame(
        {ID_COLUMN: subjects[ID_COLUMN].to_numpy(), "split": np.asarray(SPLITS)[assignment]}
    ).astype({ID_COLUMN: str, "split": str})


def assert_disjoint(splits: pd.DataFrame) -> None:
    """Raise if a subject sits in more than one split (or a split name is unknown).

    Parameters
    ----------
    splits : pandas.DataFrame
        Columns ``subject_id`` and ``split``, as returned by :func:`make_splits`.

    Raises
    ------
    AssertionError
        Naming the first leaked subject and its splits, or the unknown split names.
    """
    unknown = sorted(set(splits["split"]) - set(SPLITS))
    if unknown:
        raise AssertionError(f"unknown split names {unknown}; expected {list(SPLITS)}")
    per_subject = splits.groupby(ID_COLUMN, sort=True)["split"].unique()
    leaked = per_subject[per_subject.map(len) > 1]
    if len(leaked):
        subject, names = leaked.index[0], sorted(leaked.iloc[0])
        raise AssertionError(
            f"subject {subject!r} is in more than one split ({', '.join(names)}); "
            f"{len(leaked)} subjects leak in total"
        )


def subjects_in(splits: pd.DataFrame, split: str) -> list[str]:
    """The sorted subject ids of one split.

    Parameters
    ----------
    splits : pandas.DataFrame
        Columns ``subject_id`` and ``split``.
    split : {'train', 'validation', 'test'}

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        If ``split`` is not one of :data:`SPLITS`.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return sorted(str(s) for s in splits.loc[splits["split"] == split, ID_COLUMN])


# --- helpers ------------------------------------------------------------------------------


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    shares = np.asarray(fractions, dtype=float)
    if shares.shape != (len(SPLITS),) or not np.all(np.isfinite(shares)):
        raise ValueError(
            f"fractions must be three numbers (train, validation, test); got {fractions}"
        )
    if np.any(shares <= 0) or not math.isclose(shares.sum(), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must be positive and sum to 1; got {fractions}")
    return shares


def _sorted_subjects(table: pd.DataFrame) -> pd.DataFrame:
    """The table sorted by subject id, so the result does not depend on the row order."""
    if ID_COLUMN not in table.columns:
        raise ValueError(f"table has no {ID_COLUMN!r} column")
    ids = table[ID_COLUMN]
    if ids.isna().any() or (ids.astype(str).str.strip() == "").any():
        raise ValueError(f"{ID_COLUMN} has missing or empty values")
    subjects = table.assign(**{ID_COLUMN: ids.astype(str)})
    duplicated = subjects[ID_COLUMN][subjects[ID_COLUMN].duplicated()].unique()
    if len(duplicated):
        raise ValueError(f"duplicate {ID_COLUMN} values (one row per subject): {list(duplicated)}")
    return subjects.sort_values(ID_COLUMN, kind="stable").reset_index(drop=True)


def _stratum_labels(column: pd.Series) -> pd.Series:
    """Text labels per subject: quartile bins of a numeric column, else the value itself."""
    is_number = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if is_number and column.nunique(dropna=True) > _MAX_CATEGORIES_FOR_NUMBERS:
        bins = pd.qcut(column.astype("float64"), 4, labels=False, duplicates="drop")
        labels = bins.map(lambda b: f"q{int(b) + 1}", na_action="ignore")
    else:
        labels = column.map(str, na_action="ignore")
    return labels.astype(object).where(labels.notna(), _MISSING)


def _coarsen(keys: pd.DataFrame, *, min_size: int) -> list[tuple[str, ...]]:
    """A stratum key per subject, dropping trailing columns where a stratum is too small.

    Subjects whose full stratum has at least ``min_size`` members keep it; the rest are
    regrouped on all columns but the last, and so on; whoever is left is one pool ``()``.
    """
    strata: list[tuple[str, ...] | None] = [None] * len(keys)
    rows = [tuple(r) for r in keys.itertuples(index=False, name=None)]
    for depth in range(keys.shape[1], 0, -1):
        pending = [i for i, s in enumerate(strata) if s is None]
        counts: dict[tuple[str, ...], int] = {}
        for i in pending:
            counts[rows[i][:depth]] = counts.get(rows[i][:depth], 0) + 1
        for i in pending:
            if counts[rows[i][:depth]] >= min_size:
                strata[i] = rows[i][:depth]
    return [() if s is None else s for s in strata]


def _deal(n: int, shares: np.ndarray) -> np.ndarray:
    """Split indices for ``n`` positions: each to the split furthest behind its share.

    Every prefix of the sequence has counts within one of ``prefix length * share``, so any
    stretch of it is within about two.
    """
    counts = np.zeros(len(shares))
    out = np.empty(n, dtype=int)
    for i in range(n):
        k = int(np.argmax((i + 1) * shares - counts))
        out[i] = k
        counts[k] += 1
    return out


def _fill_empty_splits(assignment: np.ndarray, order: list[int]) -> None:
    """Move one subject into each empty split, from the largest split (extreme fractions)."""
    for k in range(len(SPLITS)):
        if not np.any(assignment == k):
            donor = int(np.argmax(np.bincount(assignment, minlength=len(SPLITS))))
            # The donor's last subject in dealing order: any would do, this one is seeded.
            last = next(i for i in reversed(order) if assignment[i] == donor)
            assignment[last] = k
