"""The project's pipelines: every folder under ``pipelines/``, plus ``training``."""

from __future__ import annotations

from kedro.framework.project import find_pipelines, pipelines
from kedro.pipeline import Pipeline

#: The stages that make a trained model from a raw cohort, in order.
TRAINING_STAGES = ("data_engineering", "feature", "modelling")


def register_pipelines() -> dict[str, Pipeline]:
    """Register ``find_pipelines()`` and the ``training`` alias of the stages that exist."""
    # Kedro >= 1.4 discovers only the folders named by `--pipelines`; `training` is no folder
    # but an alias of three, so discovery has to look at all of them.
    pipelines.set_requested(None)
    found = find_pipelines(raise_errors=True)
    stages = [found[name] for name in TRAINING_STAGES if name in found]
    found["training"] = sum(stages, Pipeline([]))
    found["__default__"] = found["training"]
    return found
