"""A partitioned dataset that may be absent: optional inputs such as landmark annotations."""

from __future__ import annotations

from typing import Any

from kedro_datasets.partitions import PartitionedDataset


class OptionalPartitionedDataset(PartitionedDataset):
    """``PartitionedDataset`` that loads as ``{}`` when its folder is missing or empty.

    A real cohort may come without landmark annotations; nodes that can use them decide
    what to do without them instead of the run failing while loading.

    Example catalog entry::

        raw_landmark_annotations:
          type: face_health.datasets.OptionalPartitionedDataset
          path: data/01_raw/my_cohort/landmarks
          filename_suffix: .csv
          dataset:
            type: pandas.CSVDataset
    """

    def load(self) -> dict[str, Any]:
        if not self._filesystem.exists(self._normalized_path):
            return {}
        if not self._list_partitions():
            return {}
        return super().load()
