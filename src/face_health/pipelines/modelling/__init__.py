"""modelling: per-target MLPs on global + local features, honest evaluation, the logged model."""

from face_health.pipelines.modelling.pipeline import create_pipeline

__all__ = ["create_pipeline"]
