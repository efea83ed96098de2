"""Tests of the Dask backend on a LocalCluster in this process, run by
``tests/test_dask_backend.py`` in a fresh process of their own: a process that has run a
Dask client must not be forked afterwards (Lightning's ``ddp_fork`` ranks hang), and the
rest of the suite forks."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from face_health import parallel
from face_health.config import base_section
from face_health.errors import DataError


def _double(x: int, *, add: int = 0) -> tuple[int, str | None]:
    if x == 3:
        raise DataError("three is not a face")
    if x == 4 and add == 99:
        raise ZeroDivisionError("a bug")
    if x == 5 and add == 77:
        os._exit(3)  # a worker that dies
    return 2 * x + add, os.environ.get("OMP_NUM_THREADS")


@pytest.fixture(scope="module")
def on_dask():
    settings = base_section("parallel", backend="dask", n_workers=2, dashboard_address=None)
    before = parallel.use_backend(settings)
    yield settings
    parallel.use_backend(before)
    parallel.close_dask()


def test_dask_gives_the_outcomes_of_the_process_pool(on_dask) -> None:
    items = {f"S{i:04d}": i for i in range(6)}
    on_cluster = parallel.map_subjects(_double, items, n_jobs=0, add=1, progress=False)
    assert list(on_cluster) == list(items)  # in the order of the items
    assert len(parallel.dask_client().scheduler_info(n_workers=-1)["workers"]) == 2
    before = parallel.use_backend(base_section("parallel"))
    try:
        local = parallel.map_subjects(_double, items, n_jobs=2, add=1, progress=False)
    finally:
        parallel.use_backend(before)
    for key in items:
        a, b = on_cluster[key], local[key]
        assert (a.ok, a.value, a.error) == (b.ok, b.value, b.error)
    assert on_cluster["S0003"].error == "DataError: three is not a face"
    assert on_cluster["S0000"].value == (1, "1")  # one thread per worker, as in the pool


def test_a_bug_on_a_dask_worker_names_the_subject(on_dask) -> None:
    with pytest.raises(parallel.SubjectCrashedError, match="S0004.*ZeroDivisionError: a bug"):
        items = {f"S{i:04d}": i for i in range(6)}
        parallel.map_subjects(_double, items, n_jobs=0, add=99, progress=False)
    # The cluster goes on after a bug.
    after = parallel.map_subjects(_double, {"S0001": 1}, n_jobs=0, progress=False)
    assert after["S0001"].value[0] == 2


def test_a_dead_dask_worker_is_not_a_qc_row(on_dask) -> None:
    with pytest.raises(BrokenProcessPool, match="Dask worker died.*S0005"):
        parallel.map_subjects(_double, {"S0005": 5, "S0001": 1}, n_jobs=0, add=77, progress=False)


def test_n_jobs_1_stays_in_this_process(on_dask) -> None:
    outcome = parallel.map_subjects(_pid, {"a": 0}, n_jobs=1)
    assert outcome["a"].value == os.getpid()


def _pid(_: int) -> int:
    return os.getpid()
