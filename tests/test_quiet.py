"""``face_health.quiet``: the known library noise is filtered at the entry points, narrowly
(our own warnings still show), and ``python -m face_health`` is the ``face-health`` CLI."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from face_health import quiet

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: The loader the project's settings build, first without the filters (the library warns),
#: then with them (nothing at all), in a fresh interpreter that errors on deprecations.
LOADER_CHECK = """
import sys
import warnings

from kedro.config import OmegaConfigLoader

conf = sys.argv[1]
with warnings.catch_warnings(record=True) as unfiltered:
    warnings.simplefilter("always")
    OmegaConfigLoader(conf_source=conf, base_env="base", env="local")["parameters"]
assert any("register_new_resolver" in str(w.message) for w in unfiltered), (
    "kedro no longer warns about register_new_resolver: drop its filters in face_health.quiet"
)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import face_health.quiet

    face_health.quiet.silence_known_library_noise()
    from face_health.settings import CONFIG_LOADER_ARGS

    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    loader = OmegaConfigLoader(
        conf_source=conf, env=CONFIG_LOADER_ARGS["default_run_env"], **args
    )
    parameters = loader["parameters"]
assert "landmarks" in parameters, sorted(parameters)
assert not caught, [f"{w.category.__name__}: {w.message} ({w.filename})" for w in caught]
print("quiet")
"""


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"},
            "KEDRO_DISABLE_TELEMETRY": "true",
        },
    )


def test_project_config_loader_is_quiet_once_silenced() -> None:
    errors = ("-W", "error::DeprecationWarning", "-W", "error::FutureWarning")
    result = _python(*errors, "-c", LOADER_CHECK, str(PROJECT_ROOT / "conf"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "quiet"
    assert "Warning" not in result.stderr, result.stderr[-3000:]


def test_python_m_face_health_is_the_face_health_cli() -> None:
    result = _python("-W", "error::DeprecationWarning", "-m", "face_health", "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("Usage: face-health "), result.stdout[:200]
    assert "train-landmarks" in result.stdout
    assert result.stderr == ""


def test_kedro_mlflow_plugin_loads_quietly() -> None:
    # mlflow warns under its own simplefilter("once"); the filter is on Kedro's py.warnings.
    code = (
        "import face_health.quiet as q; q.silence_known_library_noise()\n"
        "import kedro.framework.project, kedro_mlflow.mlflow\n"
    )
    result = _python("-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Add type hints" not in result.stdout + result.stderr, result.stdout[-3000:]


def _lightning_possible_user_warning() -> type[Warning]:
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    return PossibleUserWarning


#: One sample of each filtered warning, as its library emits it: (text, category, module).
LIBRARY_WARNINGS = [
    (
        "register_new_resolver() is deprecated and will be removed in a future release.\n",
        UserWarning,
        "kedro.config.omegaconf_config",
    ),
    (
        "register_new_resolver() is deprecated and will be removed in a future release.\n",
        UserWarning,
        "kedro_mlflow.framework.hooks.mlflow_hook",
    ),
    (
        "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) "
        "and treespec.is_leaf()` instead.",
        FutureWarning,
        "lightning.pytorch.utilities._pytree",
    ),
    (
        "The 'train_dataloader' does not have many workers which may be a bottleneck.",
        "PossibleUserWarning",
        "lightning.pytorch.trainer.connectors.data_connector",
    ),
]


def test_filters_drop_the_library_noise_and_keep_our_warnings() -> None:
    ours = [
        # The same text from our own code, another library's deprecation, and a QC warning.
        ("register_new_resolver() is deprecated", UserWarning, "face_health.config"),
        ("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "face_health.x"),
        ("the scan is not a face", UserWarning, "face_health.ingest.scan"),
        ("Add type hints to the `predict` method", DeprecationWarning, "mlflow.pyfunc.x"),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.silence_known_library_noise()
        for text, category, module in [*LIBRARY_WARNINGS, *ours]:
            if category == "PossibleUserWarning":
                category = _lightning_possible_user_warning()
            warnings.warn_explicit(text, category, f"{module}.py", 1, module=module)
    assert [str(w.message) for w in caught] == [text for text, _, _ in ours]


def test_silencing_twice_adds_nothing() -> None:
    with warnings.catch_warnings():
        quiet.silence_known_library_noise()
        before = len(warnings.filters)
        quiet.silence_known_library_noise()
        assert len(warnings.filters) == before
    for name, log_filter in quiet._LOG_FILTERS.items():
        assert logging.getLogger(name).filters.count(log_filter) == 1


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize(
    ("logger_name", "tip", "information"),
    [
        (
            "lightning.pytorch.utilities.rank_zero",
            "💡 Tip: For seamless cloud logging and experiment tracking, try installing litlogger",
            "GPU available: False, used: False",
        ),
        (
            "lightning.fabric.utilities.rank_zero",
            "💡 Tip: For seamless cloud uploads and versioning, try installing litmodels",
            "`Trainer.fit` stopped: `max_epochs=1` reached.",
        ),
        (
            "mlflow.pyfunc",
            "Passing a Python object as `python_model` causes it to be serialized using ...",
            "Failed to infer model signature: ...",
        ),
        (
            "py.warnings",
            "/venv/site-packages/mlflow/pyfunc/utils/data_validation.py:187: UserWarning: "
            "\x1b[33mAdd type hints to the `predict` method to enable data validation\x1b[0m\n",
            "/src/face_health/ingest/scan.py:12: UserWarning: Add type hints to the `predict`\n",
        ),
    ],
)
def test_log_filters_drop_tips_only(logger_name: str, tip: str, information: str) -> None:
    quiet.silence_known_library_noise()
    logger, handler = logging.getLogger(logger_name), _Collect()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info(tip)
        logger.warning(information)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert handler.messages == [information]
