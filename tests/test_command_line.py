"""The face-health commands use the project's settings, and a typo in them is a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trimesh
from click.testing import CliRunner

from face_health.command_line import main


def _scan(folder: Path) -> Path:
    ball = trimesh.creation.icosphere(subdivisions=3, radius=80.0)
    ball.visual.vertex_colors = [200, 150, 130, 255]
    path = folder / "ball.ply"
    ball.export(path)
    return path


def test_check_scan_uses_the_projects_ingest_settings(project_copy: Path) -> None:
    scan = _scan(project_copy)
    result = CliRunner().invoke(main, ["check-scan", str(scan)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["units_inferred"] == "mm"
    # the project's settings, not the function's: a budget below the scan's vertices decimates
    (project_copy / "conf" / "local" / "parameters.yml").write_text(
        "ingest:\n  vertex_budget: 300\n"
    )
    result = CliRunner().invoke(main, ["check-scan", str(scan)])
    assert json.loads(result.output)["n_vertices"] <= 300


def test_a_typo_in_the_projects_parameters_is_an_error_naming_it(project_copy: Path) -> None:
    (project_copy / "conf" / "local" / "parameters.yml").write_text(
        "ingest:\n  vertex_budgte: 300\n"
    )
    result = CliRunner().invoke(main, ["check-scan", str(_scan(project_copy))])
    assert result.exit_code == 1
    assert "vertex_budgte" in result.output and "section ingest" in result.output
    assert "Traceback" not in result.output


def test_python_dash_m_runs_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "face_health", "check-scan", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "Usage: face-health check-scan" in result.stdout
