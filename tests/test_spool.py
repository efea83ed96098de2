"""The run's spool (issue 16): workers leave bulky results on disk, the Kedro process holds
handles and writes one partition at a time, and the files go once the dataset is saved."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro_datasets.partitions import PartitionedDataset

from face_health import spool
from face_health.hooks import ParallelBackendHook
from face_health.parallel import map_subjects


def spooled_range(n: int) -> tuple[int, object]:
    """A worker's result: a small number sent back, a bulky array left in the spool."""
    return os.getpid(), spool.spooled(np.arange(n, dtype=np.int64))


@pytest.fixture
def run_spool(tmp_path: Path):
    folder = spool.open_run_spool(str(tmp_path / "spool"))
    yield Path(folder)
    spool.close_run_spool()


def test_without_a_spool_values_come_back_as_they_are() -> None:
    assert spool.current() is None
    value = np.arange(3)
    assert spool.spooled(value) is value
    assert spool.loaded(value) is value
    assert map_subjects(spooled_range, {"a": 3}, n_jobs=1)["a"].value[1].tolist() == [0, 1, 2]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_workers_leave_their_values_in_the_runs_spool(run_spool: Path, n_jobs: int) -> None:
    outcomes = map_subjects(spooled_range, {f"S{i}": i for i in range(1, 5)}, n_jobs=n_jobs)
    handles = [outcome.value[1] for outcome in outcomes.values()]
    assert all(isinstance(h, spool.Spooled) for h in handles)
    assert {Path(h.url).parent for h in handles} == {run_spool}
    assert sorted(p.name for p in run_spool.iterdir()) == sorted(Path(h.url).name for h in handles)
    assert [h().tolist() for h in handles] == [list(range(i)) for i in range(1, 5)]
    assert [spool.loaded(h).sum() for h in handles] == [0, 1, 3, 6]
    assert spool.remove_spooled({o.key: o.value[1] for o in outcomes.values()}) == 4
    assert list(run_spool.iterdir()) == []


def test_the_spool_folder_goes_when_the_run_ends(tmp_path: Path) -> None:
    folder = Path(spool.open_run_spool(str(tmp_path)))
    assert folder.parent == tmp_path and folder.name.startswith("face_health_spool_")
    with spool.writing_to(str(folder)):
        spool.spooled("left behind")
    assert len(list(folder.iterdir())) == 1
    spool.close_run_spool()
    assert not folder.exists() and spool.current() is None
    spool.close_run_spool()  # twice is fine


def test_remote_workers_without_a_shared_spool_send_results_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="face_health.spool"):
        assert spool.open_run_spool(None, remote_workers=True) is None
    assert "parallel.spool is not set" in caplog.text
    assert spool.current() is None


def test_a_saved_partitioned_dataset_removes_its_spooled_files(
    run_spool: Path, tmp_path: Path
) -> None:
    """Kedro's lazy save calls each handle; the hook then deletes the files, except for a
    memory dataset, whose handles the next node still needs."""
    with spool.writing_to(str(run_spool)):
        saved = {"a": spool.spooled(np.ones(4)), "b": spool.spooled(np.zeros(2))}
        kept = {"c": spool.spooled(np.ones(1))}
    catalog = DataCatalog(
        {
            "arrays": PartitionedDataset(
                path=str(tmp_path / "arrays"),
                dataset={"type": "pickle.PickleDataset"},
                filename_suffix=".pkl",
            ),
            "in_memory": MemoryDataset(),
        }
    )
    hook = ParallelBackendHook()
    hook._catalog = catalog
    catalog.save("arrays", saved)
    hook.after_dataset_saved("arrays", saved, node=None)
    catalog.save("in_memory", kept)
    hook.after_dataset_saved("in_memory", kept, node=None)
    assert [Path(p).name for p in map(str, run_spool.iterdir())] == [Path(kept["c"].url).name]
    loaded = {k: load() for k, load in catalog.load("arrays").items()}
    assert loaded["a"].tolist() == [1.0] * 4 and loaded["b"].tolist() == [0.0, 0.0]
