"""feature: ResNet-50 global embeddings and facial-omics local features (regions, PCA)."""

from face_health.pipelines.feature.pipeline import create_pipeline

__all__ = ["create_pipeline"]
