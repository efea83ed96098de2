"""MLflow glue: per-epoch metrics of Lightning fits go to the run of the current Kedro run."""

from __future__ import annotations

from typing import Any


def lightning_logger(prefix: str) -> Any | None:
    """An ``MLFlowLogger`` writing into the active MLflow run (kedro-mlflow opens one per
    ``kedro run``), with metric names prefixed by ``prefix``; ``None`` when no run is active
    (a notebook, a test), so fits also work untracked."""
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    run = mlflow.active_run()
    if run is None:
        return None
    return MLFlowLogger(
        experiment_name=mlflow.get_experiment(run.info.experiment_id).name,
        run_id=run.info.run_id,
        tracking_uri=mlflow.get_tracking_uri(),
        prefix=prefix,
    )
