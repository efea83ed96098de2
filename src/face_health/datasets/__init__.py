"""Kedro datasets the ecosystem lacks."""

from face_health.datasets.mesh_dataset import MeshDataset

__all__ = ["MeshDataset"]
