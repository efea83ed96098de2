"""The project's pipelines: every folder under ``pipelines/``, plus ``training``."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

#: The stages that make a trained model from a raw cohort, in order.
TRAINING_STAGES = ("data_engineering", "feature", "modelling")


def register_pipelines() -> dict[str, Pipeline]:
    """Register ``find_pipelines()`` and the ``training`` alias of the stages that exist."""
    pipelines = find_pipelines(raise_errors=True)
    stages = [pipelines[name] for name in TRAINING_STAGES if name in pipelines]
    pipelines["training"] = sum(stages, Pipeline([]))
    pipelines["__default__"] = pipelines["training"]
    return pipelines
