"""Project hooks: log chosen datasets as MLflow artifacts while keeping Kedro's versioning.

kedro-mlflow's ``MlflowArtifactDataset`` cannot wrap a ``versioned: true`` dataset under
Kedro 1.x (the wrapped dataset gets its own save version and the catalog refuses it), so a
dataset that should land in the MLflow run says so in its catalog metadata instead::

    test_metrics:
      type: pandas.CSVDataset
      filepath: data/08_reporting/test_metrics.csv
      versioned: true
      metadata:
        mlflow_artifact_path: reports

and this hook logs the file it just saved (the versioned file) into the active run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


def saved_path(dataset: Any) -> Path | None:
    """The local file a file-based dataset last saved, or ``None`` if it has no file."""
    version = getattr(dataset, "_version", None)
    if version is not None and hasattr(dataset, "resolve_save_version"):
        return Path(str(dataset._get_versioned_path(dataset.resolve_save_version())))
    filepath = getattr(dataset, "_filepath", None)
    return Path(str(filepath)) if filepath is not None else None


class MlflowArtifactHook:
    """Log every saved dataset whose metadata has ``mlflow_artifact_path`` to MLflow."""

    def __init__(self) -> None:
        self._catalog = None

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        import mlflow

        if self._catalog is None or mlflow.active_run() is None:
            return
        try:
            dataset = self._catalog.get(dataset_name)
        except Exception:  # noqa: BLE001 - a dataset the catalog cannot hand back is not ours
            return
        metadata = getattr(dataset, "metadata", None) or {}
        artifact_path = metadata.get("mlflow_artifact_path")
        if artifact_path is None:
            return
        path = saved_path(dataset)
        if path is None or not path.exists():
            logger.warning("could not log %s to MLflow: no saved file found", dataset_name)
            return
        mlflow.log_artifact(str(path), artifact_path=artifact_path)
