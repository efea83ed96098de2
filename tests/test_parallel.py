"""Tests of the per-subject executor.

The worker functions live at module top level: with ``n_jobs > 1`` they are pickled by
reference and imported in the worker processes.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures.process import BrokenProcessPool

import pandas as pd
import pytest

from face_health.errors import DataError, NoFaceFoundError
from face_health.parallel import (
    Outcome,
    ProcessExecutor,
    SequentialExecutor,
    SubjectCrashedError,
    TooManyFailuresError,
    check_failures,
    get_executor,
    map_subjects,
)

ITEMS = {f"S{i:03d}": i for i in (5, 3, 9, 1, 7, 2)}  # deliberately not sorted


def square_plus(x: int, offset: int = 0) -> int:
    return x * x + offset


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise NoFaceFoundError(f"scan {x} shows no face")
    return x


def bug_on_seven(x: int) -> int:
    if x == 7:
        return {"landmark_status": "ok"}["landmark_reason"]  # a KeyError: a bug
    return x


class _NeedsTwoArguments(Exception):
    def __init__(self, what: str, detail: str) -> None:  # unpickling calls it with one
        super().__init__(f"{what}: {detail}")


def unpicklable_bug_on_seven(x: int) -> int:
    if x == 7:
        raise _NeedsTwoArguments("broken", "contract")
    return x


def die_on_seven(x: int) -> int:
    if x == 7:
        os._exit(3)  # a worker killed (for memory, say): no exception, no result
    return x


def worker_thread_settings(_: object) -> str | None:
    return os.environ.get("OMP_NUM_THREADS")


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_results_are_ordered_like_the_input(n_jobs: int) -> None:
    outcomes = map_subjects(square_plus, ITEMS, n_jobs=n_jobs, progress=False, offset=1)
    assert list(outcomes) == list(ITEMS)
    assert all(isinstance(o, Outcome) and o.ok for o in outcomes.values())
    assert {k: o.value for k, o in outcomes.items()} == {k: v * v + 1 for k, v in ITEMS.items()}


def test_parallel_equals_sequential_with_chunks_and_pairs() -> None:
    pairs = list(ITEMS.items())
    sequential = map_subjects(square_plus, pairs, n_jobs=1, progress=False)
    parallel = map_subjects(square_plus, pairs, n_jobs=2, chunksize=4, progress=False)
    assert list(parallel) == list(sequential)
    assert [o.value for o in parallel.values()] == [o.value for o in sequential.values()]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_failing_item_does_not_stop_the_others(
    n_jobs: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="face_health.parallel"):
        outcomes = map_subjects(fail_on_seven, ITEMS, n_jobs=n_jobs, progress=False)
    failed = outcomes["S007"]
    assert not failed.ok
    assert failed.value is None
    assert failed.error == "NoFaceFoundError: scan 7 shows no face"
    assert isinstance(NoFaceFoundError("x"), DataError)
    assert failed.failed_row("landmark") == {
        "subject_id": "S007",
        "landmark_status": "failed",
        "landmark_reason": "NoFaceFoundError: scan 7 shows no face",
    }
    assert all(o.ok for k, o in outcomes.items() if k != "S007")
    assert "Traceback" in caplog.text and "S007" in caplog.text


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_bug_is_not_a_failed_subject_but_stops_the_stage(n_jobs: int) -> None:
    with pytest.raises(SubjectCrashedError, match="subject 'S007' crashed: KeyError") as info:
        map_subjects(bug_on_seven, ITEMS, n_jobs=n_jobs, progress=False)
    crash = info.value
    assert isinstance(crash, RuntimeError)
    assert crash.key == "S007" and crash.error == "KeyError: 'landmark_reason'"
    # the original traceback, as text, down to the line of the bug
    assert "bug_on_seven" in crash.worker_traceback
    assert "KeyError: 'landmark_reason'" in crash.worker_traceback
    if n_jobs == 1:
        assert isinstance(crash.__cause__, KeyError)
    else:  # chained to the worker's traceback
        assert "bug_on_seven" in str(crash.__cause__)


def test_an_exception_that_does_not_pickle_still_names_the_subject() -> None:
    with pytest.raises(SubjectCrashedError, match="'S007' crashed: _NeedsTwoArguments") as info:
        map_subjects(unpicklable_bug_on_seven, ITEMS, n_jobs=2, progress=False)
    assert "broken: contract" in info.value.worker_traceback


def test_a_dead_worker_is_a_crash_not_a_qc_row() -> None:
    with pytest.raises(BrokenProcessPool, match="worker process died.*S007"):
        map_subjects(die_on_seven, ITEMS, n_jobs=2, progress=False)


# ------------------------------------------------------------------- check_failures
def _qc(n_failed: int, n: int = 20, stage: str = "landmark") -> list[dict[str, str]]:
    reasons = ["NoFaceFoundError: face not found", "ModelFitError: residual", "RegionError: x"]
    rows = [
        Outcome(f"S{i:03d}", False, error=reasons[min(i % 4, 2)]).failed_row(stage)
        for i in range(n_failed)
    ]
    rows += [
        {"subject_id": f"T{i:03d}", f"{stage}_status": "warning" if i % 2 else "ok"}
        for i in range(n - n_failed)
    ]
    return rows


def test_check_failures_passes_at_the_limit_and_fails_above_it() -> None:
    check_failures(_qc(4), "landmark", max_failed_fraction=0.2)  # 20 %: passes
    with pytest.raises(TooManyFailuresError) as info:
        check_failures(_qc(7), "landmark", max_failed_fraction=0.2)
    message = str(info.value)
    assert "stage 'landmark': 7 of 20 subjects (35 %) failed, above the limit of 20 %" in message
    # the three most common reasons, with their counts (i % 4: 0, 1, 2, 2, 0, 1, 2)
    assert (
        "'RegionError: x' (3); 'NoFaceFoundError: face not found' (2); "
        "'ModelFitError: residual' (2)"
    ) in message
    assert isinstance(info.value, RuntimeError)


def test_check_failures_reads_plain_status_columns_of_a_dataframe() -> None:
    qc = pd.DataFrame(
        {
            "subject_id": ["A", "B", "C", "D"],
            "status": ["failed", "ok", "failed", "warning"],
            "reason": ["empty file", "", None, "no colour"],
        }
    )
    check_failures(qc, "ingest", max_failed_fraction=0.5)
    with pytest.raises(TooManyFailuresError, match=r"'empty file' \(1\); '\(no reason given\)'"):
        check_failures(qc, "ingest", max_failed_fraction=0.25)


def test_check_failures_edge_cases() -> None:
    check_failures(_qc(20), "landmark", max_failed_fraction=1.0)  # 1.0 disables
    check_failures([], "landmark", max_failed_fraction=0.0)  # no subjects: nothing to fail
    check_failures(pd.DataFrame(), "landmark", max_failed_fraction=0.0)
    with pytest.raises(TooManyFailuresError, match="1 of 20"):
        check_failures(_qc(1), "landmark", max_failed_fraction=0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_failures(_qc(1), "landmark", max_failed_fraction=20)
    with pytest.raises(ValueError, match="neither 'alignment_status' nor 'status'"):
        check_failures(_qc(1), "alignment", max_failed_fraction=0.2)


def test_workers_run_single_threaded() -> None:
    outcomes = map_subjects(worker_thread_settings, ITEMS, n_jobs=2, progress=False)
    assert {o.value for o in outcomes.values()} == {"1"}


def test_unpicklable_fn_gives_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="picklable.*top level"):
        map_subjects(lambda x: x, ITEMS, n_jobs=2, progress=False)


def test_duplicate_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate key 'a'"):
        map_subjects(square_plus, [("a", 1), ("a", 2)], progress=False)


def test_get_executor() -> None:
    assert isinstance(get_executor("sequential"), SequentialExecutor)
    executor = get_executor("processes", n_jobs=2, progress=False)
    assert isinstance(executor, ProcessExecutor)
    outcomes = executor.map(square_plus, ITEMS, desc="square", offset=2)
    assert [o.value for o in outcomes.values()] == [v * v + 2 for v in ITEMS.values()]
    with pytest.raises(ValueError, match="processes, sequential"):
        get_executor("dask")


def worker_pid(_: object) -> int:
    return os.getpid()


def test_workers_are_kept_for_the_next_stage_and_replaced_after_a_crash() -> None:
    from face_health.parallel import release_pools

    items = {f"S{i:03d}": i for i in range(6)}
    first = {o.value for o in map_subjects(worker_pid, items, n_jobs=2).values()}
    second = {o.value for o in map_subjects(worker_pid, items, n_jobs=2).values()}
    assert os.getpid() not in first and second <= first  # the same workers, no new start
    with pytest.raises(SubjectCrashedError):
        map_subjects(bug_on_seven, {f"S{i:03d}": i for i in range(9)}, n_jobs=2)
    after = {o.value for o in map_subjects(worker_pid, items, n_jobs=2).values()}
    assert not after & first  # the crashed stage's pool was shut down
    assert release_pools() >= 1
    assert release_pools() == 0
