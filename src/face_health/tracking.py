"""MLflow glue: per-epoch metrics of Lightning fits go to the run of the current Kedro run."""

from __future__ import annotations

from typing import Any


def lightning_logger(prefix: str, *, prefix_params: bool = False) -> Any | None:
    """An ``MLFlowLogger`` writing into the active MLflow run (kedro-mlflow opens one per
    ``kedro run``), with metric names prefixed by ``prefix``; ``None`` when no run is active
    (a notebook, a test), so fits also work untracked.

    Lightning logs a module's hyperparameters as run parameters, unprefixed, and MLflow
    refuses to change a parameter once logged: with ``prefix_params`` they are logged as
    ``<prefix>.<name>``, so several fits of one kind (the cross-fitted networks) can log
    into one run."""
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    run = mlflow.active_run()
    if run is None:
        return None

    class PrefixedParams(MLFlowLogger):
        def log_hyperparams(self, params: Any) -> None:
            items = dict(vars(params) if hasattr(params, "__dict__") else params)
            super().log_hyperparams({f"{prefix}.{key}": value for key, value in items.items()})

    kind = PrefixedParams if prefix_params else MLFlowLogger
    return kind(
        experiment_name=mlflow.get_experiment(run.info.experiment_id).name,
        run_id=run.info.run_id,
        tracking_uri=mlflow.get_tracking_uri(),
        prefix=prefix,
    )
