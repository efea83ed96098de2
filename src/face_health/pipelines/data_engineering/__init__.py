"""data_engineering: raw cohort -> clean meshes in mm, QC report, clinical table, splits."""

from face_health.pipelines.data_engineering.pipeline import create_pipeline

__all__ = ["create_pipeline"]
