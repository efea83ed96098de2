"""The Lightning fits in several processes, as a Kedro node starts them: the landmark network
and the ResNet embedding on 2 CPU processes (gloo) with ``ddp_fork`` and ``ddp_spawn``, and
the checks of ``embedding.trainer`` and ``landmarks.fit.trainer``.

The tiny data are the other tests' (``tests/test_embedding.py``,
``tests/landmarks/test_training.py``); the embedding's views are arrays and images here
(``ddp_spawn`` pickles the data module to its processes; a lambda does not pickle).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import Logger
from test_embedding import NAMES, SIZE, SPLIT_OF, TINY, make_targets, make_views

from face_health import config
from face_health.config import SettingsError
from face_health.embedding.model import (
    EmbeddingModule,
    EmbeddingNet,
    ViewDataModule,
    fit_embedding_model,
)
from face_health.landmarks.training import (
    LandmarkModule,
    fit_landmark_model,
    load_landmark_model,
    save_landmark_model,
)


def _landmark_training_tests() -> Any:
    """``tests/landmarks/test_training.py`` (its ``blob_views``), under a name of its own."""
    path = Path(__file__).resolve().parent / "landmarks" / "test_training.py"
    spec = importlib.util.spec_from_file_location("_landmark_training_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


blob_views = _landmark_training_tests().blob_views

TWO_CPU_PROCESSES = {
    "accelerator": "cpu",
    "devices": 2,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


class CallLog(Logger):
    """A Lightning logger that notes which process made each call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, str, Any]] = []

    @property
    def name(self) -> str:
        return "call_log"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.calls.append((os.getpid(), "log_hyperparams", dict(params)))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((os.getpid(), "log_metrics", dict(metrics)))

    def finalize(self, status: str) -> None:
        self.calls.append((os.getpid(), "finalize", status))

    def logged(self, name: str) -> list[float]:
        return [m[name] for _, kind, m in self.calls if kind == "log_metrics" and name in m]


def _check_logged_once_here(logger: CallLog, names: list[str]) -> None:
    """Every call in this process (rank 0's log, replayed), each epoch's metric once."""
    assert logger.calls and {pid for pid, _, _ in logger.calls} == {os.getpid()}
    assert [kind for _, kind, _ in logger.calls].count("log_hyperparams") == 1
    assert logger.calls[-1][1:] == ("finalize", "success")
    for name in names:
        values = logger.logged(name)
        assert len(values) == 1 and math.isfinite(values[0]), (name, values)


def _changed(trained: torch.nn.Module, start: torch.nn.Module) -> bool:
    after, before = trained.state_dict(), start.state_dict()
    return any(
        not torch.equal(after[k].float(), before[k].float())
        for k in before
        if before[k].is_floating_point()
    )


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp_fork", "ddp_spawn"])
def test_landmark_fit_in_two_cpu_processes(strategy: str, tmp_path: Path) -> None:
    options = {"input_size": 64, "decoder_channels": 16, "max_epochs": 1}
    start_file = tmp_path / "start.pt"  # a known start: the fit fine-tunes it
    save_landmark_model(LandmarkModule(2, ["a", "b"], **options), start_file, hparams={})
    start, _ = load_landmark_model(start_file)
    logger = CallLog()
    module, metrics = fit_landmark_model(
        blob_views(16, seed=0),
        blob_views(8, seed=1),
        module_options=options,
        trainer_options={**TWO_CPU_PROCESSES, "strategy": strategy},
        data_options={"batch_size": 4, "augment": False},
        logger=logger,
        init_weights=start_file,
    )
    assert isinstance(module, LandmarkModule) and not module.training
    assert {p.device.type for p in module.parameters()} == {"cpu"}
    assert set(metrics) == {"best_val_loss", "val_px_error", "epochs"}
    assert metrics["epochs"] == 1
    assert all(math.isfinite(v) for v in metrics.values())
    assert _changed(module.net, start)  # the best checkpoint came back, trained
    _check_logged_once_here(logger, ["train_loss", "val_loss", "val_px_error"])
    assert logger.logged("val_loss")[0] == pytest.approx(metrics["best_val_loss"])


def _picklable_data() -> ViewDataModule:
    """The embedding tests' views, every one an image (not a loader)."""
    subjects = list(SPLIT_OF)
    views = {
        s: {v: image() if callable(image) else image for v, image in named.items()}
        for s, named in make_views(subjects).items()
    }
    splits = pd.DataFrame({"subject_id": subjects, "split": list(SPLIT_OF.values())})
    return ViewDataModule(
        views,
        make_targets(subjects),
        splits,
        target_names=NAMES,
        image_size=SIZE,
        batch_size=4,
        views_per_subject_per_epoch=4,
    )


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp_fork", "ddp_spawn"])
def test_embedding_fit_in_two_cpu_processes(strategy: str, tmp_path: Path) -> None:
    start = EmbeddingNet(101, backbone=TINY)
    torch.save(start.state_dict(), tmp_path / "net.pt")  # a known start: encoder + projection
    options = {"target_names": NAMES, "backbone": TINY, "embedding_dim": 101, "max_epochs": 1}
    logger = CallLog()
    module, metrics = fit_embedding_model(
        _picklable_data(),
        module_options={**options, "checkpoint_path": str(tmp_path / "net.pt")},
        trainer_options={**TWO_CPU_PROCESSES, "strategy": strategy},
        logger=logger,
    )
    assert isinstance(module, EmbeddingModule) and not module.training
    assert {p.device.type for p in module.parameters()} == {"cpu"}
    assert set(metrics) == {"best_val_loss", "epochs", "train_seconds"}
    assert metrics["epochs"] == 1
    assert all(math.isfinite(v) for v in metrics.values())
    assert _changed(module.net, start)
    per_target = ["val_mae_age", "val_mae_bmi", "val_bce_smoking", "val_bce_obesity"]
    assert {"train_loss", "val_loss", *per_target} <= set(module.trainer.callback_metrics)
    _check_logged_once_here(logger, ["train_loss", "val_loss", *per_target])
    assert logger.logged("val_loss")[0] == pytest.approx(metrics["best_val_loss"])


# --- the settings ------------------------------------------------------------------------


def _embedding(**trainer: Any) -> dict[str, Any]:
    parameters = config.project_parameters("base")["embedding"]
    return {**parameters, "trainer": {**parameters["trainer"], **trainer}}


def _landmarks(**trainer: Any) -> dict[str, Any]:
    parameters = config.project_parameters("base")["landmarks"]
    fit = parameters["fit"]
    return {**parameters, "fit": {**fit, "trainer": {**fit["trainer"], **trainer}}}


def _build(section: str, **trainer: Any) -> Any:
    if section == "embedding":
        return config.EmbeddingSettings.from_parameters(_embedding(**trainer))
    return config.LandmarkSettings.from_parameters(_landmarks(**trainer)).fit


WHERE = {
    "embedding": "parameters_feature.yml, section embedding: trainer",
    "landmarks": "parameters_data_engineering.yml, section landmarks: fit: trainer",
}


def test_the_yaml_names_one_device_explicitly() -> None:
    single = {"accelerator": "auto", "devices": 1, "strategy": "auto"}
    assert _build("embedding").trainer == single
    assert _build("landmarks").trainer == {**single, "precision": "32-true"}


@pytest.mark.parametrize("section", ["embedding", "landmarks"])
@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        ({"strategy": "ddp"}, "cannot run inside a Kedro node.*command line"),
        ({"strategy": "fsdp", "devices": 2}, "cannot run inside a Kedro node"),
        ({"devices": 2}, "strategy 'auto' with devices 2 would be Lightning's ddp"),
        ({"devices": "auto"}, "strategy 'auto' with devices 'auto'"),
        ({"devices": 0, "strategy": "ddp_spawn"}, "positive whole number"),
        ({"devices": True, "strategy": "ddp_spawn"}, "positive whole number"),
        ({"devices": "2", "strategy": "ddp_spawn"}, "positive whole number"),
        ({"devices": [0, 0], "accelerator": "gpu", "strategy": "ddp_spawn"}, "distinct"),
        ({"devices": [], "accelerator": "gpu", "strategy": "ddp_spawn"}, "distinct"),
        ({"devices": [0, 1], "accelerator": "cpu", "strategy": "ddp_fork"}, "number of processes"),
        ({"accelerator": "tpu"}, "accelerator must be one of"),
        ({"max_epochs": 3}, "max_epochs is not a trainer option here"),
    ],
)
def test_trainer_settings_a_node_cannot_run_are_refused(
    section: str, trainer: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as error:
        _build(section, **trainer)
    assert WHERE[section] in str(error.value)


@pytest.mark.parametrize("section", ["embedding", "landmarks"])
@pytest.mark.parametrize("key", ["accelerator", "devices", "strategy"])
def test_the_distributed_keys_are_required(section: str, key: str) -> None:
    parameters = _embedding() if section == "embedding" else _landmarks()
    trainer = parameters["trainer"] if section == "embedding" else parameters["fit"]["trainer"]
    del trainer[key]
    build = config.EmbeddingSettings if section == "embedding" else config.LandmarkSettings
    with pytest.raises(SettingsError, match=rf"{WHERE[section]}: missing key \['{key}'\]"):
        build.from_parameters(parameters)


def test_precision_is_the_landmark_trainers_and_the_embedding_modules() -> None:
    with pytest.raises(SettingsError, match="precision.*set module.precision"):
        _build("embedding", precision="bf16-mixed")
    with pytest.raises(SettingsError, match=r"precision must be one of \['32-true'"):
        _build("landmarks", precision="bf16")
    assert _build("landmarks", precision="bf16-mixed").trainer["precision"] == "bf16-mixed"
    parameters = _landmarks()
    del parameters["fit"]["trainer"]["precision"]
    with pytest.raises(SettingsError, match=r"missing key \['precision'\]"):
        config.LandmarkSettings.from_parameters(parameters)


@pytest.mark.parametrize("section", ["embedding", "landmarks"])
@pytest.mark.parametrize(
    "trainer",
    [
        {"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"},
        {"accelerator": "cpu", "devices": 2, "strategy": "ddp_fork"},
        {"accelerator": "cpu", "devices": 2, "strategy": "ddp_notebook"},
        {"accelerator": "gpu", "devices": [0, 1], "strategy": "ddp_spawn"},
        {"accelerator": "cuda", "devices": "auto", "strategy": "ddp_spawn"},
        {"accelerator": "gpu", "devices": [1], "strategy": "auto"},
        {"accelerator": "cpu", "devices": 1, "strategy": "auto", "fast_dev_run": True},
    ],
)
def test_trainer_settings_a_node_can_run(section: str, trainer: dict[str, Any]) -> None:
    assert {k: _build(section, **trainer).trainer[k] for k in trainer} == trainer
    if section == "embedding":
        cls, settings = config.EmbeddingSettings, _build(section, **trainer)
    else:
        cls = config.LandmarkSettings
        settings = cls.from_parameters(_landmarks(**trainer))
    assert cls.from_parameters(settings.to_parameters()) == settings  # what a model keeps


def test_the_fits_refuse_what_a_node_cannot_run_before_training() -> None:
    views = blob_views(4)
    with pytest.raises(SettingsError, match="trainer_options: strategy 'ddp' cannot run"):
        fit_landmark_model(views, views, trainer_options={"strategy": "ddp", "devices": 2})
    with pytest.raises(SettingsError, match="trainer_options: strategy 'auto' with devices 2"):
        fit_embedding_model(
            _picklable_data(),
            module_options={"target_names": NAMES, "backbone": TINY, "embedding_dim": 101},
            trainer_options={"accelerator": "cpu", "devices": 2},
        )
