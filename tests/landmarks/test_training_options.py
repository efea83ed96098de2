"""One training path for the landmark network: ``face-health train-landmarks`` trains with the
project's ``landmarks`` parameters as the pipeline's ``provide_landmark_model`` does, its flags
replacing single keys (nothing is trained here)."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import face_health.landmarks.fit as fit
from face_health.command_line import main
from face_health.config import project_parameters
from face_health.landmarks.views import REAL_SCAN_VARIETY

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _base_yaml_landmarks() -> dict:
    text = (PROJECT_ROOT / "conf" / "base" / "parameters_data_engineering.yml").read_text()
    return yaml.safe_load(text)["landmarks"]


def _cli_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *flags: str) -> dict:
    """The options ``train-landmarks`` hands to training, with training replaced."""
    seen: dict = {}

    def fake_train(cohort: Path, out: Path, options: dict) -> dict:
        seen.update(copy.deepcopy(options))
        return {}

    monkeypatch.setattr(fit, "train_from_cohort_folder", fake_train)
    monkeypatch.chdir(PROJECT_ROOT)
    args = ["train-landmarks", "--cohort", str(tmp_path), "--out", str(tmp_path / "x.pt")]
    result = CliRunner().invoke(main, [*args, *flags])
    assert result.exit_code == 0, result.output
    return seen


def test_cli_without_flags_trains_with_the_yaml_landmarks_section(monkeypatch, tmp_path) -> None:
    options = _cli_options(monkeypatch, tmp_path)
    assert options == project_parameters()["landmarks"]
    assert options == _base_yaml_landmarks()  # conf/local sets no landmarks keys


def test_cli_env_reads_that_environment(monkeypatch, tmp_path) -> None:
    options = _cli_options(monkeypatch, tmp_path, "--env", "tiny")
    assert options == project_parameters("tiny")["landmarks"]
    assert options["views"]["views_per_scan"] == 4  # conf/tiny's, over base's 24


def test_cli_flags_replace_single_keys(monkeypatch, tmp_path) -> None:
    start = tmp_path / "start.pt"
    start.write_bytes(b"")
    flags = ["--epochs", "2", "--lr", "0.01", "--views-per-scan", "3", "--size", "64"]
    flags += ["--jobs", "1", "--seed", "5", "--init-weights", str(start)]
    flags += ["--no-reshape", "--scanner-noise", "--no-decimation"]
    options = _cli_options(monkeypatch, tmp_path, *flags)

    expected = _base_yaml_landmarks()
    expected["fit"]["module"] |= {"max_epochs": 2, "lr": 0.01}
    expected["fit"]["init_weights"] = str(start)
    expected["views"] |= {"views_per_scan": 3, "size": 64, "decimate_probability": 0.0}
    expected["views"] |= {"axis_scale": (0.0, 0.0, 0.0), "warp_mm": 0.0}
    expected["views"] |= {
        k: REAL_SCAN_VARIETY[k] for k in ("surface_noise_mm", "spike_probability")
    }
    expected |= {"n_jobs": 1, "seed": 5}
    assert options == expected


def test_training_options_copies_and_keeps_the_section() -> None:
    section = _base_yaml_landmarks()
    before = copy.deepcopy(section)
    options = fit.training_options(section, epochs=1, reshape=False)
    assert section == before, "the parameters mapping was changed in place"
    assert options["fit"]["module"]["max_epochs"] == 1
    assert fit.training_options(section) == section


def test_pipeline_node_passes_the_section_to_train_checkpoint(monkeypatch) -> None:
    from face_health.pipelines.data_engineering import geometry_nodes

    seen: dict = {}

    def fake_train_checkpoint(train, val, annotations, settings, logger_=None):
        seen["settings"] = settings
        return {}, {}

    monkeypatch.setattr(geometry_nodes, "train_checkpoint", fake_train_checkpoint)
    monkeypatch.setattr(geometry_nodes, "lightning_logger", lambda name: None)
    landmarks = {**_base_yaml_landmarks(), "train": True}
    subjects = ["a", "b", "c"]
    table = pd.DataFrame({"name": ["nose_tip"], "x": [0.0], "y": [0.0], "z": [0.0]})
    splits = pd.DataFrame({"subject_id": subjects, "split": ["train", "train", "validation"]})
    geometry_nodes.provide_landmark_model(
        {s: (lambda: None) for s in subjects},
        {f"{s}.csv": (lambda: table) for s in subjects},
        splits,
        landmarks,
    )
    # The settings of the same mapping as the CLI's without flags (bar `train`, which only
    # the node reads); train_from_cohort_folder builds them from the CLI's mapping the same way.
    from face_health.config import LandmarkSettings

    assert seen["settings"] == LandmarkSettings.from_parameters(landmarks)
    assert fit.training_options(landmarks) == landmarks


def test_cli_refuses_an_unknown_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    args = ["train-landmarks", "--cohort", str(tmp_path), "--out", str(tmp_path / "x.pt")]
    result = CliRunner().invoke(main, [*args, "--env", "no_such_env"])
    assert result.exit_code == 1
    assert "conf/no_such_env" in result.output
