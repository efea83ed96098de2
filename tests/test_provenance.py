"""Provenance of a run: git commit, data fingerprint, and the face-image privacy switch."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from face_health.hooks import log_face_images
from face_health.provenance import UNKNOWN, data_fingerprint, git_commit


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_fingerprint_depends_on_content_not_location(tmp_path: Path) -> None:
    a = tmp_path / "a"
    _write(a / "scans" / "S1.obj", b"v 0 0 0\n")
    _write(a / "clinical.csv", b"subject_id,age\nS1,40\n")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    assert data_fingerprint([a]) == data_fingerprint([b])
    assert len(data_fingerprint([a])) == 16

    (b / "clinical.csv").write_bytes(b"subject_id,age\nS1,41\n")  # same size, other content
    assert data_fingerprint([a]) != data_fingerprint([b])
    (b / "clinical.csv").write_bytes(b"subject_id,age\nS1,40\n")
    (b / "scans" / "S1.obj").rename(b / "scans" / "S2.obj")  # same bytes, other subject
    assert data_fingerprint([a]) != data_fingerprint([b])


def test_fingerprint_of_missing_folder_differs_from_a_full_one(tmp_path: Path) -> None:
    _write(tmp_path / "x" / "f", b"1")
    assert data_fingerprint([tmp_path / "nothing"]) != data_fingerprint([tmp_path / "x"])


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_commit_and_dirty_flag(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == (UNKNOWN, False)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("commit", "-qm", "first")
    commit, dirty = git_commit(tmp_path)
    assert commit == git("rev-parse", "HEAD") and not dirty
    (tmp_path / "f.txt").write_text("b")
    assert git_commit(tmp_path) == (commit, True)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"cohort": {"source": "synthetic"}}, True),
        ({"cohort": {"source": "folder"}}, False),
        ({"cohort": {"source": "folder"}, "privacy": {"log_face_images": True}}, True),
        ({"cohort": {"source": "synthetic"}, "privacy": {"log_face_images": False}}, False),
        ({"cohort": {"source": "folder"}, "privacy": {"log_face_images": "auto"}}, False),
    ],
)
def test_face_images_are_logged_for_synthetic_cohorts_only_by_default(config, expected) -> None:
    assert log_face_images(config) is expected


def test_face_image_switch_rejects_unknown_values() -> None:
    with pytest.raises(ValueError, match="true, false or auto"):
        log_face_images({"privacy": {"log_face_images": "sometimes"}})


def test_relative_sqlite_backend_is_pinned_to_the_project_root(tmp_path: Path) -> None:
    from face_health.hooks import project_sqlite_uri

    assert project_sqlite_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    for unchanged in ("sqlite:////abs/mlflow.db", "http://host:5000", None, "databricks"):
        assert project_sqlite_uri(unchanged, tmp_path) == unchanged


def test_a_session_started_in_a_subfolder_uses_the_projects_backend(project_copy: Path) -> None:
    """A notebook's session runs in notebooks/; MLflow must still use <project>/mlflow.db."""
    import os

    import mlflow
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    (project_copy / "notebooks").mkdir()
    os.chdir(project_copy / "notebooks")
    bootstrap_project(project_copy)
    with KedroSession.create(project_path=project_copy) as session:
        session.load_context()
        assert mlflow.get_tracking_uri() == f"sqlite:///{project_copy.resolve()}/mlflow.db"
    assert not (project_copy / "notebooks" / "mlflow.db").exists()
