"""Typed settings: every parameters section is a frozen dataclass that refuses typos."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from face_health import config
from face_health.config import SECTIONS, SettingsError

SRC = Path(__file__).resolve().parents[1] / "src" / "face_health"


@pytest.mark.parametrize("env", ["base", "tiny"])
def test_every_section_of_the_project_builds(env: str) -> None:
    parameters = config.project_parameters(env)
    for name, cls in SECTIONS.items():
        settings = cls.from_parameters(parameters[name])
        assert dataclasses.is_dataclass(settings)
        assert name == settings.SECTION
        # round trip: what a model keeps of its settings builds the same object again
        assert cls.from_parameters(settings.to_parameters()) == settings


def test_an_unknown_key_is_an_error_naming_the_key_and_the_file() -> None:
    views = config.project_parameters("base")["views"]
    with pytest.raises(SettingsError) as error:
        config.ViewSettings.from_parameters({**views, "imagesize": 64})
    message = str(error.value)
    assert "imagesize" in message and "parameters_data_engineering.yml" in message
    assert "section views" in message and "image_size" in message  # the known keys


def test_a_typo_in_a_nested_section_is_named_with_its_path() -> None:
    landmarks = config.project_parameters("base")["landmarks"]
    typo = {**landmarks, "model_fit": {**landmarks["model_fit"], "max_residul_mm": 2.0}}
    with pytest.raises(SettingsError, match=r"section landmarks: model_fit: unknown key"):
        config.LandmarkSettings.from_parameters(typo)
    mlp = {**config.project_parameters("base")["modelling"]}
    mlp["mlp"] = {**mlp["mlp"], "hiden": [8]}
    with pytest.raises(SettingsError, match=r"parameters_modelling.yml, section modelling: mlp"):
        config.ModellingSettings.from_parameters(mlp)


def test_missing_keys_and_wrong_kinds_are_errors() -> None:
    alignment = config.project_parameters("base")["alignment"]
    with pytest.raises(SettingsError, match=r"missing key \['crop_margin_mm'\]"):
        config.AlignmentSettings.from_parameters(
            {k: v for k, v in alignment.items() if k != "crop_margin_mm"}
        )
    with pytest.raises(SettingsError, match="scale: expected true or false"):
        config.AlignmentSettings.from_parameters({**alignment, "scale": "yes"})
    with pytest.raises(SettingsError, match="n_jobs: expected a whole number"):
        config.AlignmentSettings.from_parameters({**alignment, "n_jobs": 1.5})
    with pytest.raises(SettingsError, match=r"method: expected one of \['fit', 'cnn'\]"):
        landmarks = config.project_parameters("base")["landmarks"]
        config.LandmarkSettings.from_parameters({**landmarks, "method": "magic"})
    with pytest.raises(SettingsError, match="n_per_direction must be at least 3"):
        views = config.project_parameters("base")["views"]
        config.ViewSettings.from_parameters({**views, "n_per_direction": 2})


def test_defaults_live_in_the_yaml_only() -> None:
    """No section class has a default of its own, and no node reads a parameter with one."""
    for cls in SECTIONS.values():
        for field in dataclasses.fields(cls):
            assert field.default is dataclasses.MISSING, f"{cls.__name__}.{field.name}"
            assert field.default_factory is dataclasses.MISSING, f"{cls.__name__}.{field.name}"
    reads = []
    for path in sorted((SRC / "pipelines").rglob("*.py")) + [SRC / "serving" / "scorer.py"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.get\(\s*\"[a-z_]+\"\s*,", line):
                reads.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not reads, "parameters read with a default in code:\n" + "\n".join(reads)


def test_a_frozen_section_cannot_be_changed() -> None:
    settings = config.base_section("qc")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_failed_fraction = 0.5  # type: ignore[misc]
    assert config.base_section("qc", max_failed_fraction=0.5).max_failed_fraction == 0.5


def test_a_model_trained_with_other_settings_is_refused_at_load() -> None:
    from face_health.modelling.ood import DistributionMonitor
    from face_health.serving.scorer import ScanScorer, check_settings

    parameters = config.project_parameters("base")
    options = {name: parameters[name] for name in config.SCAN_SECTIONS}
    monitor = DistributionMonitor()  # a model without one is refused too (tests/test_ood.py)
    scorer = ScanScorer(None, None, None, {}, None, None, options=options, ood_monitor=monitor)
    assert check_settings(scorer) is scorer
    old = {
        **options,
        "ingest": {k: v for k, v in options["ingest"].items() if k != "require_colour"},
    }
    with pytest.raises(LookupError, match=r"missing key \['require_colour'\].*retrain"):
        check_settings(ScanScorer(None, None, None, {}, None, None, options=old), "runs:/x")
