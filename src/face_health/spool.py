"""The run's spool: bulky per-subject results stay on disk between a worker and the save.

Without it, every worker sends its subjects' meshes and views back to the Kedro process,
which holds the whole cohort's outputs until the node returns and the partitioned dataset
writes them: memory grows with the number of subjects (about 1.7 MB of clean mesh and 1.5 MB
of aligned mesh a subject, and the views). With it, a worker writes each bulky value to a
file in the spool (:func:`spooled`) and sends back a :class:`Spooled` handle of a few bytes.
A node returns the handles as its partitions; Kedro's ``PartitionedDataset`` calls each
handle when it writes that partition (its lazy save), so the Kedro process holds one
subject's value at a time, and the spooled file is removed once the dataset is saved
(``ParallelBackendHook``).

The spool is a folder on any fsspec filesystem (``parallel.spool``): by default a new folder
in the machine's temporary directory, which the local process pool and a ``LocalCluster``
share with the Kedro process. Workers of a remote scheduler need a folder this process can
read too (shared storage, an object store); without one, their results come back in memory
as before. Outside a Kedro run (no spool opened) :func:`spooled` returns its value as is, so
the same worker code serves a single scan from the command line.

>>> from face_health import spool
>>> spool.spooled([1, 2])  # no spool opened: the value itself
[1, 2]
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import pickle
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec

logger = logging.getLogger(__name__)

#: The Kedro process's spool for this run (None: results return in memory).
_RUN_SPOOL: str | None = None
#: Inside a worker call: the spool that :func:`spooled` writes to.
_WORKER_SPOOL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "face_health_spool", default=None
)


@dataclass(frozen=True)
class Spooled:
    """A value a worker wrote to the spool. Calling it loads the value (what a partitioned
    dataset's lazy save does); :meth:`remove` deletes the file."""

    url: str

    def __call__(self) -> Any:
        with fsspec.open(self.url, "rb") as stream:
            return pickle.load(stream)  # noqa: S301 - our own workers wrote it, this run

    def remove(self) -> None:
        fs, path = fsspec.core.url_to_fs(self.url)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path)


def spooled(value: Any) -> Any:
    """In a worker call of a run with a spool: ``value`` written there, as a :class:`Spooled`
    handle. Otherwise ``value`` itself."""
    folder = _WORKER_SPOOL.get()
    if folder is None:
        return value
    url = f"{folder}/{uuid.uuid4().hex}.pkl"
    with fsspec.open(url, "wb") as stream:
        pickle.dump(value, stream, protocol=pickle.HIGHEST_PROTOCOL)
    return Spooled(url)


def loaded(value: Any) -> Any:
    """``value``, loaded first when it is a :class:`Spooled` handle."""
    return value() if isinstance(value, Spooled) else value


@contextlib.contextmanager
def writing_to(folder: str | None) -> Iterator[None]:
    """Let :func:`spooled` write to ``folder`` for the block (a worker call)."""
    token = _WORKER_SPOOL.set(folder)
    try:
        yield
    finally:
        _WORKER_SPOOL.reset(token)


def current() -> str | None:
    """This run's spool folder, or None."""
    return _RUN_SPOOL


def open_run_spool(location: str | None, *, remote_workers: bool = False) -> str | None:
    """Make this run's spool: a new folder under ``location`` (an fsspec path; None: the
    temporary directory). None, with a warning, when the workers are remote and no shared
    ``location`` was given: their results then come back in memory."""
    global _RUN_SPOOL
    if location is None and remote_workers:
        logger.warning(
            "parallel.spool is not set: the remote Dask workers send their meshes and views "
            "back in memory, so this process's memory grows with the cohort. Set "
            "parallel.spool to a folder the workers and this process share to keep it flat"
        )
        return None
    base = (location or tempfile.gettempdir()).rstrip("/")
    folder = f"{base}/face_health_spool_{uuid.uuid4().hex[:12]}"
    fs, path = fsspec.core.url_to_fs(folder)
    fs.makedirs(path, exist_ok=True)
    _RUN_SPOOL = folder
    return folder


def close_run_spool() -> None:
    """Delete this run's spool folder and whatever is left in it."""
    global _RUN_SPOOL
    folder, _RUN_SPOOL = _RUN_SPOOL, None
    if folder is None:
        return
    fs, path = fsspec.core.url_to_fs(folder)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=True)


def remove_spooled(data: Any) -> int:
    """Delete the spooled files behind a saved dataset's partitions; how many."""
    if not isinstance(data, dict):
        return 0
    handles = [value for value in data.values() if isinstance(value, Spooled)]
    for handle in handles:
        handle.remove()
    return len(handles)
