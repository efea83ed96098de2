"""Kedro datasets the ecosystem lacks."""

from face_health.datasets.mesh_dataset import MeshDataset
from face_health.datasets.optional_partitions import OptionalPartitionedDataset

__all__ = ["MeshDataset", "OptionalPartitionedDataset"]
