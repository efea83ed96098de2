"""The Dask backend of the per-subject stages: the same outcomes as the local process pool,
and, on a tiny cohort, the same files byte for byte."""

from __future__ import annotations

import hashlib
import pickle
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import kedro_run

from face_health import parallel
from face_health.config import ParallelSettings, SettingsError, base_section

pytest.importorskip("distributed")

CASES = Path(__file__).with_name("dask_cluster_cases.py")


def test_the_backend_on_a_local_cluster() -> None:
    """``tests/dask_cluster_cases.py`` (the same outcomes as the pool, a bug and a dead
    worker on Dask, ``n_jobs: 1`` in process) in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout


def test_a_forking_fit_is_refused_after_dask(monkeypatch: pytest.MonkeyPatch) -> None:
    from face_health.landmarks.training import run_fit

    monkeypatch.setattr(parallel, "DASK_USED", True)
    options = {"accelerator": "cpu", "devices": 2, "strategy": "ddp_fork"}
    with pytest.raises(SettingsError, match="use strategy: ddp_spawn"):
        run_fit(None, None, options, logger=None, scratch=".", steps_per_epoch=1)


def test_parallel_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="tcp://host:8786"):
        base_section("parallel", scheduler="localhost:8786")
    with pytest.raises(SettingsError, match="n_workers"):
        base_section("parallel", n_workers=-1)
    with pytest.raises(SettingsError):
        ParallelSettings.from_parameters({"backend": "ray", "scheduler": None, "n_workers": 0})


_STAGES = ",".join(
    (
        "feature.local_features.segment_regions_and_extract_radiomics",
        "data_engineering.views.render_directional_views",
        "data_engineering.reports.build_qc_report",
    )
)
#: Wall time of each subject's work: the only column that may differ between two runs.
_TIMING = re.compile(rb"^seconds$|_seconds$")


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, version folders (timestamps) taken out."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            key = re.sub(r"/\d{4}-\d\d-\d\dT[^/]+/", "/V/", path.relative_to(root).as_posix())
            out[key] = hashlib.sha256(_without_timings(path)).hexdigest()
    return out


def _without_timings(path: Path) -> bytes:
    """The file's content, less what may differ between two runs of the same work: the
    wall time of each subject (QC columns, and the ingest record a GLB keeps) and the memory
    addresses a pickled tensor's storage is named by."""
    data = path.read_bytes()
    if path.suffix == ".glb":
        return _glb_content(data)
    if path.suffix == ".pkl":
        return repr(_pickled_content(pickle.loads(data))).encode()
    if path.suffix != ".csv":
        return data
    lines = data.splitlines()
    header = lines[0].split(b",")
    keep = [i for i, name in enumerate(header) if not _TIMING.search(name)]
    return b"\n".join(b",".join(line.split(b",")[i] for i in keep) for line in lines)


def _glb_content(data: bytes) -> bytes:
    """A GLB's JSON chunk with ``"seconds"`` taken out, then its binary chunk."""
    chunks, offset = [], 12
    while offset < len(data):
        length, kind = struct.unpack_from("<II", data, offset)
        chunks.append((kind, data[offset + 8 : offset + 8 + length]))
        offset += 8 + length
    out = b""
    for kind, chunk in chunks:
        if kind == 0x4E4F534A:  # JSON
            chunk = re.sub(rb'"seconds":\s*[-+0-9.eE]+', b"", chunk.rstrip(b" "))
        out += chunk
    return out


def _pickled_content(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _pickled_content(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_pickled_content(v) for v in value]
    if hasattr(value, "detach"):  # a tensor: its values, not its storage's address
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, hashlib.sha256(value.tobytes()).hexdigest())
    return value


def test_a_tiny_cohort_on_dask_gives_the_process_pools_files(project_copy: Path) -> None:
    """Simulation, ingest, landmarks, alignment, views, regions + radiomics of the tiny
    cohort, once on local processes and once on a 2-worker LocalCluster, in the same project
    folder (the meshes record their source path): every file the same, byte for byte, but
    the QC tables' wall-time columns. The Dask run's workers spool to a folder of its own,
    which is gone when the run ends."""
    kedro_run(project_copy, "--env", "tiny", "--pipelines", "training", "--to-nodes", _STAGES)
    shutil.move(project_copy / "data", project_copy / "on_processes")
    (project_copy / "mlflow.db").unlink(missing_ok=True)
    (project_copy / "data").mkdir()
    spooled = project_copy / "spool"
    spooled.mkdir()
    kedro_run(
        project_copy,
        *("--env", "tiny", "--pipelines", "training", "--to-nodes", _STAGES),
        *("--params", f"parallel.backend=dask,parallel.n_workers=2,parallel.spool={spooled}"),
    )
    assert list(spooled.iterdir()) == []  # the run's spool folder, made inside, is gone
    processes, dask = _digests(project_copy / "on_processes"), _digests(project_copy / "data")
    assert len(processes) > 100  # scans, meshes, views, tables
    assert processes.keys() == dask.keys()
    differ = sorted(key for key in processes if processes[key] != dask[key])
    assert not differ, differ
