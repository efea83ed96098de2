"""Shared fixtures: a throwaway copy of the Kedro project to run pipelines in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_SCANS = PROJECT_ROOT.parent / "shared" / "real_scans"


def copy_project(root: Path) -> Path:
    """The project's configuration (without ``conf/local``) in ``root``."""
    root.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "data").mkdir()
    (root / "src").mkdir()  # Kedro bootstrap wants the source folder; the package is installed
    return root


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project's configuration in a temporary folder, as the working directory.

    Runs write their data and MLflow database there, never into the checkout.
    """
    root = copy_project(tmp_path / "project")
    monkeypatch.chdir(root)
    return root


@pytest.fixture(scope="session")
def trained_tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy on which ``kedro run --env tiny --pipelines=training`` has run once.

    Shared by the tests that need a trained model or a finished run (end to end, notebooks,
    serving) so the suite pays for the tiny training once. Tests may add runs to it (for
    example ``inference``) but must not delete what training wrote.
    """
    root = copy_project(tmp_path_factory.mktemp("trained") / "project")
    kedro_run(root, "--env", "tiny", "--pipelines", "training")
    return root


def kedro(project: Path, *args: str) -> None:
    """A ``kedro`` command (``run``, ``viz build``, ...) in its own process, as a user runs it.

    In-process sessions would share MLflow's store cache, which keys SQLite stores by their
    (relative) URI, so a second project in the same test process would log into the first
    one's ``mlflow.db``.
    """
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def kedro_run(project: Path, *args: str) -> None:
    """``kedro run`` with ``args`` in its own process (see :func:`kedro`)."""
    kedro(project, "run", *args)


@pytest.fixture
def real_scans() -> Path:
    if not REAL_SCANS.is_dir():
        pytest.skip(f"real scans not available at {REAL_SCANS}")
    return REAL_SCANS
