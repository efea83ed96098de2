"""Shared fixtures: a throwaway copy of the Kedro project to run pipelines in."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_SCANS = PROJECT_ROOT.parent / "shared" / "real_scans"


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project's configuration in a temporary folder, as the working directory.

    Runs write their data and MLflow database there, never into the checkout.
    """
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "data").mkdir()
    (root / "src").mkdir()  # Kedro bootstrap wants the source folder; the package is installed
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def real_scans() -> Path:
    if not REAL_SCANS.is_dir():
        pytest.skip(f"real scans not available at {REAL_SCANS}")
    return REAL_SCANS
