"""Which model the service scores with, trained when and on what, from its MLflow run.

Read once when the service starts; whatever the tracking backend cannot say is left out,
never an error, so a model loaded from a folder without its backend still serves.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from face_health import schema

#: Run tags that describe the data and code a model was trained on, when training set them.
DATA_TAGS = ("pipeline", "kedro_env", "git_commit", "data_fingerprint")
#: Further run tags worth showing (set by kedro-mlflow and the project).
RUN_TAGS = ("kedro_command", "kedro_version", "pipeline_names", "mlflow.runName")
#: Parameter prefixes that say which cohort the model learnt from.
DATA_PARAM_PREFIXES = ("cohort.", "splits.")


def describe_model(uri: str, run_id: str, tracking_uri: str | None) -> dict[str, Any]:
    """What ``GET /v1/model`` answers.

    Parameters
    ----------
    uri : str
        The model URI the service loaded (``runs:/...``, ``models:/...`` or a folder).
    run_id : str
        The MLflow run that logged the model (the scorer's ``run_id``).
    tracking_uri : str or None
        The MLflow backend to read the run from.

    Returns
    -------
    dict
        ``uri``, ``run_id``, ``run_name``, ``experiment_id``, ``status``, ``start_time``,
        ``end_time`` (ISO 8601, UTC), ``registered_model`` (name, version, alias when the URI
        names one), ``tags`` (those of :data:`DATA_TAGS` and :data:`RUN_TAGS` present),
        ``data`` (the run's cohort and split parameters), ``targets`` (name, unit, kind),
        ``loaded_at``, and ``note`` when the run could not be read.
    """
    info: dict[str, Any] = {
        "uri": uri,
        "run_id": run_id or None,
        "run_name": None,
        "experiment_id": None,
        "status": None,
        "start_time": None,
        "end_time": None,
        "registered_model": None,
        "tags": {},
        "data": {},
        "targets": [
            {
                "name": t.name,
                "unit": t.unit if t.kind == "regression" else "probability",
                "kind": t.kind,
            }
            for t in schema.TARGETS
        ],
        "loaded_at": _iso(dt.datetime.now(dt.UTC).timestamp() * 1000),
    }
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        run = client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - a missing run must not stop the service
        reason = type(exc).__name__
        info["note"] = f"the model's run could not be read from the tracking backend ({reason})"
        return info
    info.update(
        run_name=run.info.run_name,
        experiment_id=run.info.experiment_id,
        status=run.info.status,
        start_time=_iso(run.info.start_time),
        end_time=_iso(run.info.end_time),
    )
    tags = run.data.tags
    info["tags"] = {key: tags[key] for key in (*DATA_TAGS, *RUN_TAGS) if key in tags}
    info["data"] = {
        key: value
        for key, value in sorted(run.data.params.items())
        if key.startswith(DATA_PARAM_PREFIXES)
    }
    info["registered_model"] = _registered_model(client, uri)
    return info


def _registered_model(client: Any, uri: str) -> dict[str, Any] | None:
    if not uri.startswith("models:/"):
        return None
    name, _, rest = uri[len("models:/") :].partition("@")
    try:
        if rest:
            version = client.get_model_version_by_alias(name, rest).version
            return {"name": name, "alias": rest, "version": str(version)}
        name, _, version = name.partition("/")
        return {"name": name, "alias": None, "version": version or None}
    except Exception:  # noqa: BLE001 - the registry is optional
        return None


def _iso(millis: float | None) -> str | None:
    if millis is None:
        return None
    stamp = dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)
    return stamp.isoformat(timespec="seconds")
