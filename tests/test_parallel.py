"""Tests of the per-subject executor.

The worker functions live at module top level: with ``n_jobs > 1`` they are pickled by
reference and imported in the worker processes.
"""

from __future__ import annotations

import logging
import os

import pytest

from face_health.parallel import (
    Outcome,
    ProcessExecutor,
    SequentialExecutor,
    get_executor,
    map_subjects,
)

ITEMS = {f"S{i:03d}": i for i in (5, 3, 9, 1, 7, 2)}  # deliberately not sorted


def square_plus(x: int, offset: int = 0) -> int:
    return x * x + offset


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError(f"scan {x} is unreadable")
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
    assert failed.error == "ValueError: scan 7 is unreadable"
    assert all(o.ok for k, o in outcomes.items() if k != "S007")
    assert "Traceback" in caplog.text and "S007" in caplog.text


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
