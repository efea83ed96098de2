"""Silence the known, harmless noise of the project's libraries, in one place.

Every entry point calls :func:`silence_known_library_noise` early: ``settings.py`` (Kedro
imports it first for ``kedro run``), the ``face-health`` group callback (so also
``python -m face_health``) and :func:`face_health.serving.server.serve`.

Each filter below is narrow: one message, one category, the one library module that emits it,
with whose bug it is and the versions it was seen with. Drop a filter when the library is
fixed. Noise that an argument of ours can avoid is avoided there instead (e.g. the landmark
evaluator's ``enable_checkpointing=False``, ``log_every_n_steps`` of the trainers); our own
warnings (QC, ``UserWarning`` from ``face_health``) are never filtered.

The module imports only the standard library: it must stay cheap to import.
"""

from __future__ import annotations

import logging
import re
import warnings

#: ``(message regex, category, module regex)`` of each ``warnings`` filter.
_WARNING_FILTERS: tuple[tuple[str, type[Warning], str], ...] = (
    # kedro 1.7.0 registers its `globals` / `runtime_params` resolvers (and settings'
    # CUSTOM_RESOLVERS) with OmegaConf.register_new_resolver, deprecated in omegaconf 2.4.0
    # (a UserWarning, stacklevel 2: attributed to kedro's module).
    (
        r"register_new_resolver\(\) is deprecated",
        UserWarning,
        r"kedro\.config\.omegaconf_config",
    ),
    # kedro-mlflow 2.0.3 registers `km.random_name` the same way (after_context_created).
    (
        r"register_new_resolver\(\) is deprecated",
        UserWarning,
        r"kedro_mlflow\.framework\.hooks\.mlflow_hook",
    ),
    # lightning 2.6.6 builds torch.utils._pytree.LeafSpec(), deprecated in torch 2.14
    # (FutureWarning on every fit / predict).
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree",
    ),
    # lightning 2.6.6's advice on machines with more than 2 cores (a PossibleUserWarning, a
    # UserWarning subclass: named by its base so that this module need not import Lightning).
    # Our data modules hold their views in memory and load them in the main process
    # (num_workers 0) on purpose; a run that wants workers sets `data: {num_workers: N}`.
    # Lightning's docs suggest this very filter (advanced/warnings.rst).
    (
        r"The '\w+_dataloader' does not have many workers",
        UserWarning,
        r"lightning\.pytorch\.trainer\.connectors\.data_connector",
    ),
)


class _DropMessages(logging.Filter):
    """Drops the records of one logger whose message matches ``pattern`` (``re.search``)."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return self.pattern.search(record.getMessage()) is None


# Lightning 2.6 logs "💡 Tip: ... install litlogger" on every Trainer without a LitLogger (no
# argument turns it off) and "💡 Tip: ... install litmodels" on a Trainer with its default
# checkpoint callback (ours pass enable_checkpointing=False or their own ModelCheckpoint).
# ``rank_zero_info`` logs through whichever of these loggers was imported last.
_LIGHTNING_TIPS = _DropMessages(r"^💡 Tip: For seamless cloud")

#: ``logger name -> filter`` of the log records that advertise, not inform.
_LOG_FILTERS: dict[str, logging.Filter] = {
    "lightning.pytorch.utilities.rank_zero": _LIGHTNING_TIPS,
    "lightning.fabric.utilities.rank_zero": _LIGHTNING_TIPS,
    "lightning_fabric.utilities.rank_zero": _LIGHTNING_TIPS,
    "pytorch_lightning.utilities.rank_zero": _LIGHTNING_TIPS,
    # mlflow 3.17 logs on every pyfunc log_model of a python_model object "Passing a Python
    # object as `python_model` causes it to be serialized using CloudPickle ... Consider using
    # a file path". serving/scorer.py logs the scorer so on purpose (its pickle is an artifact
    # anyway); models-from-code would be the change there, not a filter here.
    "mlflow.pyfunc": _DropMessages(r"^Passing a Python object as `python_model`"),
    # mlflow 3.17 warns "Add type hints to the `predict` method ..." (UserWarning) when a
    # PythonModel subclass without type hints is defined: kedro-mlflow 2.0.3's
    # KedroPipelineModel, whenever Kedro loads the plugin's CLI. Our FaceHealthPyfunc has type
    # hints. mlflow emits it under its own catch_warnings + simplefilter("once", UserWarning),
    # which overrides any warnings filter of ours; Kedro's RichHandler routes warnings to the
    # `py.warnings` logger (logging.captureWarnings), so it is dropped there, by file and text.
    "py.warnings": _DropMessages(
        r"mlflow[/\\]pyfunc[/\\]utils[/\\]data_validation\.py:\d+: UserWarning: "
        r"(\x1b\[\d+m)?Add type hints to the `predict` method"
    ),
}


def silence_known_library_noise() -> None:
    """Install the filters above (idempotent: a second call changes nothing).

    ``warnings.filterwarnings`` moves an identical filter to the front instead of adding a
    second, and a logger keeps one copy of each filter object.
    """
    for message, category, module in _WARNING_FILTERS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, log_filter in _LOG_FILTERS.items():
        logging.getLogger(name).addFilter(log_filter)
