"""inference: a folder of new scans -> a predictions table, with a trained model."""

from face_health.pipelines.inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
