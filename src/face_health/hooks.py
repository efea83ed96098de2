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

and this hook logs the file it just saved (the versioned file) into the active run. A
dataset whose metadata also says ``face_images: true`` shows faces; it is logged only when
the globals key ``privacy.log_face_images`` allows it (``auto``: for the synthetic cohort
only, never for a real one).

``ProjectMlflowBackendHook`` pins a relative SQLite backend (``sqlite:///mlflow.db``) to the
project root, so a session started elsewhere (a notebook in ``notebooks/``) uses the
project's database instead of creating an empty one where it runs.

``RunTagsHook`` names each MLflow run and tags it with the pipeline, the configuration
environment, the git commit and a fingerprint of the raw data it read.

``IgnoredLocalConfigHook`` warns, once, when a run with ``--env ENV`` (not ``local``) leaves
out ``conf/local/globals.yml``: Kedro reads ``conf/base`` and ``conf/ENV`` only, so the data
folder or cohort set there is silently not used.

``ParallelBackendHook`` sends the run's per-subject stages to the backend its ``parallel``
parameters name (local processes or a Dask cluster; ``face_health.parallel``).

``OneLineErrorHook`` ends a run stopped by an unusable clinical table (duplicate or missing
ids, after ``clinical_issues.csv`` is written) with its one-line message instead of a
traceback through Kedro's runner: the data is at fault, not the code.
"""

from __future__ import annotations

import logging
from datetime import datetime
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
        self._face_images = True

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._face_images = log_face_images(context.config_loader["globals"])

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
        if metadata.get("face_images") and not self._face_images:
            logger.info(
                "%s shows faces: not logged to MLflow (privacy.log_face_images)", dataset_name
            )
            return
        path = saved_path(dataset)
        if path is None or not path.exists():
            logger.warning("could not log %s to MLflow: no saved file found", dataset_name)
            return
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_face_images(config_globals: dict[str, Any]) -> bool:
    """Whether pictures of faces go to MLflow: ``privacy.log_face_images`` is true, false or
    ``auto`` (the default: only when the cohort is the synthetic one)."""
    setting = (config_globals.get("privacy") or {}).get("log_face_images", "auto")
    if isinstance(setting, bool):
        return setting
    if str(setting).lower() != "auto":
        raise ValueError(f"privacy.log_face_images must be true, false or auto, got {setting!r}")
    return (config_globals.get("cohort") or {}).get("source", "synthetic") == "synthetic"


class RunTagsHook:
    """Give the MLflow run of a ``kedro run`` a readable name and provenance tags.

    Tags: ``pipeline``, ``kedro_env``, ``git_commit`` (and MLflow's own
    ``mlflow.source.git.commit``), ``git_dirty``, ``cohort_source`` and, once the run has
    read its raw data, ``data_fingerprint`` (see ``face_health.provenance``).
    """

    def __init__(self) -> None:
        self._project_path: Path | None = None
        self._globals: dict[str, Any] = {}
        self._env = "local"
        self._raw_folders: list[str] = []

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project_path = Path(context.project_path)
        self._globals = dict(context.config_loader["globals"])
        self._env = context.env or "local"

    @hook_impl(trylast=True)  # after kedro-mlflow has started the run
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any) -> None:
        import mlflow

        from face_health.provenance import git_commit

        if mlflow.active_run() is None:
            return
        names = run_params.get("pipeline_names") or [run_params.get("pipeline_name")]
        pipeline_name = "+".join(n for n in names if n) or "__default__"
        commit, dirty = git_commit(self._project_path or Path.cwd())
        cohort = self._globals.get("cohort") or {}
        source = cohort.get("source", "synthetic")
        cohort_name = Path(str(cohort.get("path", "cohort"))).name
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
        mlflow.set_tags(
            {
                "mlflow.runName": f"{pipeline_name} · {cohort_name} · {self._env} · "
                f"{commit[:7]} · {stamp}",
                "pipeline": pipeline_name,
                "kedro_env": self._env,
                "git_commit": commit,
                "mlflow.source.git.commit": commit,
                "git_dirty": str(dirty).lower(),
                "cohort_source": source,
            }
        )
        datasets = pipeline.datasets()
        self._raw_folders = []
        if "raw_scans" in datasets or "raw_clinical" in datasets:
            self._raw_folders.append(str(cohort.get("path", "")))
        if "new_scans" in datasets:
            self._raw_folders.append(str((self._globals.get("inference") or {}).get("scans_path")))

    @hook_impl(tryfirst=True)  # before kedro-mlflow ends the run
    def after_pipeline_run(self) -> None:
        import mlflow

        from face_health.provenance import data_fingerprint

        if mlflow.active_run() is None or not self._raw_folders:
            return
        root = self._project_path or Path.cwd()
        folders = [p if Path(p).is_absolute() else root / p for p in self._raw_folders]
        mlflow.set_tag("data_fingerprint", data_fingerprint(folders))
        mlflow.set_tag("data_folders", ", ".join(self._raw_folders))


class ProjectMlflowBackendHook:
    """Make a relative ``sqlite:///`` tracking or registry URI in ``mlflow.yml`` absolute
    against the project root, before kedro-mlflow sets MLflow up."""

    @hook_impl(tryfirst=True)  # before kedro-mlflow reads mlflow.yml
    def after_context_created(self, context: Any) -> None:
        loader = context.config_loader
        loader.config_patterns.setdefault("mlflow", ["mlflow*", "mlflow*/**", "**/mlflow*"])
        try:
            config = dict(loader["mlflow"])
        except Exception:  # noqa: BLE001 - no mlflow.yml: kedro-mlflow's defaults apply
            return
        server = dict(config.get("server") or {})
        for key in ("mlflow_tracking_uri", "mlflow_registry_uri"):
            server[key] = project_sqlite_uri(server.get(key), Path(context.project_path))
        config["server"] = server
        loader["mlflow"] = config


class IgnoredLocalConfigHook:
    """Warn once when ``conf/local/globals.yml`` exists but the environment is not ``local``."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        loader = context.config_loader
        warn_ignored_local_globals(Path(loader.conf_source), getattr(loader, "env", None))


_WARNED: set[str] = set()


class ParallelBackendHook:
    """Apply the ``parallel`` parameters (processes or Dask) for the run, then undo them.

    Kedro's own runner stays sequential (nodes one after another); within a node the
    per-subject work goes to the backend. A ``LocalCluster`` the run started is closed when
    the run ends or fails; a remote scheduler keeps running.
    """

    def __init__(self) -> None:
        self._before: Any = None
        self._catalog: Any = None

    @hook_impl
    def before_pipeline_run(self, run_params: Any, pipeline: Any, catalog: Any) -> None:
        from face_health import spool
        from face_health.config import ParallelSettings
        from face_health.parallel import use_backend

        self._catalog = catalog
        try:
            values = catalog.load("params:parallel")
        except Exception:  # noqa: BLE001 - a project without the section runs on processes
            spool.open_run_spool(None)
            return
        settings = ParallelSettings.from_parameters(values)
        self._before = use_backend(settings)
        remote = settings.backend == "dask" and settings.scheduler is not None
        spool.open_run_spool(settings.spool, remote_workers=remote)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        """A partitioned dataset written from spooled values: their files go now (a memory
        dataset keeps the handles for the next node, so theirs stay until the run ends)."""
        from kedro.io import MemoryDataset

        from face_health import spool

        if self._catalog is None or not isinstance(data, dict):
            return
        try:
            dataset = self._catalog.get(dataset_name)
        except Exception:  # noqa: BLE001 - unknown to the catalog: keep the files till the end
            return
        if dataset is not None and not isinstance(dataset, MemoryDataset):
            spool.remove_spooled(data)

    @hook_impl
    def after_pipeline_run(self, run_params: Any, pipeline: Any, catalog: Any) -> None:
        self._restore()

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: Any, pipeline: Any, catalog: Any):
        self._restore()

    def _restore(self) -> None:
        from face_health import spool
        from face_health.parallel import close_dask, use_backend

        spool.close_run_spool()
        self._catalog = None
        if self._before is not None:
            use_backend(self._before)
            self._before = None
        close_dask()


class OneLineErrorHook:
    """Print a :data:`ONE_LINE_ERRORS` error that stops a run as one line, no traceback."""

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: Any, pipeline: Any, catalog: Any):
        if isinstance(error, one_line_errors()):
            install_one_line_excepthook(error)


def one_line_errors() -> tuple[type[Exception], ...]:
    """Errors whose message says all (the data's fault, named by row): no traceback."""
    from face_health.ingest.clinical import ClinicalTableError

    return (ClinicalTableError,)


def install_one_line_excepthook(error: BaseException) -> None:
    """When ``error`` ends the process uncaught, print ``Error: <message>`` alone; any other
    exception goes to the previous hook (Kedro's rich traceback)."""
    import sys

    previous = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if value is error:
            print(f"Error: {value}", file=sys.stderr)
        else:
            previous(kind, value, tb)

    sys.excepthook = excepthook


def warn_ignored_local_globals(
    conf_source: Path, env: str | None, *, log: bool = True
) -> str | None:
    """Log (once per file and environment; not with ``log=False``) that
    ``conf/local/globals.yml`` is not read with ``env``; the message, or None when there is
    nothing to say."""
    from face_health.settings import CONFIG_LOADER_ARGS

    local = CONFIG_LOADER_ARGS["default_run_env"]
    env = env or local
    files = sorted(Path(conf_source, local).glob("globals*.y*ml")) if env != local else []
    if not files:
        return None
    names = ", ".join(str(Path("conf", local, f.name)) for f in files)
    key = f"{names}|{env}"
    message = (
        f"{names} is not read with --env {env}: Kedro reads conf/base and conf/{env} only, "
        f"so its globals (data folder, cohort) are ignored; put them in conf/{env}/ or run "
        "without --env"
    )
    if log and key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message)
    return message


def project_sqlite_uri(uri: str | None, project_path: Path) -> str | None:
    """``sqlite:///relative.db`` -> ``sqlite:////<project>/relative.db``; others unchanged."""
    prefix = "sqlite:///"
    if not uri or not uri.startswith(prefix) or Path(uri[len(prefix) :]).is_absolute():
        return uri
    return prefix + str((project_path / uri[len(prefix) :]).resolve())
