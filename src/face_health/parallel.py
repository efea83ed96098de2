"""Run independent per-subject work in parallel: the project's one executor abstraction.

Per-subject stages (ingest, landmarks, rendering, radiomics) never look at another subject,
so they run as ``fn(item, **kwargs)`` per subject over local processes. One broken scan must
not cost a night's run, and one bug must not hide as a cohort of "failed" subjects:

- ``fn`` raising a :class:`~face_health.errors.DataError` (the subject's data is unusable:
  no face found, too few landmarks, ...) gives that subject a failed :class:`Outcome` and the
  others go on; the node writes it as a ``failed`` QC row (:meth:`Outcome.failed_row`).
- Any other exception is a bug: :func:`map_subjects` stops and raises
  :class:`SubjectCrashedError`, naming the subject and carrying its traceback (from a worker
  process too, where the exception itself may not pickle). A worker process that dies
  (killed for memory, a segfault) raises ``BrokenProcessPool``: no QC row either.
- :func:`check_failures` fails a stage whose share of failed subjects is above a limit.

Two backends run them, chosen per run by the ``parallel`` parameters (:func:`use_backend`,
applied by the project's hook): local worker processes (the default; each stage's
``n_jobs``) or a ``dask.distributed`` cluster (a scheduler's address, or a ``LocalCluster``
sized to the machine). Both call the same ``_call_chunk`` in their workers, so a subject's
result, its failed QC row and a bug's :class:`SubjectCrashedError` are the same on either
(``tests/test_dask_backend.py`` compares a tiny cohort's outputs byte for byte). Another
backend plugs in as an object with the same ``.map`` as :class:`ProcessExecutor`; see
:func:`get_executor`.

Examples
--------
>>> outcomes = map_subjects(load_scan, {"S0001": "scans/S0001.ply"}, n_jobs=4)  # doctest: +SKIP
>>> failed = {key: o.error for key, o in outcomes.items() if not o.ok}  # doctest: +SKIP
>>> check_failures([o.failed_row("ingest") for o in outcomes.values() if not o.ok] + ok_rows,
...                "ingest", max_failed_fraction=0.2)  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import pickle
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

from tqdm.auto import tqdm

from face_health import spool
from face_health.errors import DataError

logger = logging.getLogger(__name__)

#: Thread-pool sizes pinned to 1 in worker processes: n_jobs processes each running a
#: cores-wide BLAS / OpenMP / torch pool would oversubscribe the machine many times over.
#: ``LP_NUM_THREADS`` is Mesa llvmpipe's rasteriser threads: with a worker per core, one each
#: renders the landmark views 4 % faster than a pool of threads per worker (measured, 2 cores).
THREAD_ENV_VARS: tuple[str, ...] = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "LP_NUM_THREADS",
)

Items = Mapping[str, Any] | Iterable[tuple[str, Any]]


@dataclass(frozen=True)
class Outcome:
    """What happened to one subject.

    Attributes
    ----------
    key : str
        The subject id (or whatever key the item came with).
    ok : bool
        True when ``fn`` returned normally, False when it raised a ``DataError``.
    value : Any
        ``fn``'s result when ``ok``, else None.
    error : str
        ``"ExceptionType: message"`` of the ``DataError`` when not ``ok``; the traceback goes
        to the log.
    seconds : float
        Wall time of the call.
    """

    key: str
    ok: bool
    value: Any = None
    error: str = ""
    seconds: float = 0.0

    def failed_row(self, stage: str) -> dict[str, str]:
        """The QC row of a subject whose ``stage`` failed on its data: ``<stage>_status`` and
        why."""
        return {"subject_id": self.key, f"{stage}_status": "failed", f"{stage}_reason": self.error}


class SubjectCrashedError(RuntimeError):
    """``fn`` raised something other than a ``DataError`` for a subject: a bug, not bad data.

    The message names the subject and the error; the traceback is chained (``__cause__``:
    the original exception with ``n_jobs=1``, the worker's traceback otherwise) and kept as
    text in ``worker_traceback``, so it is shown once, and survives the trip back from a
    worker process even when the original exception would not pickle.

    Attributes
    ----------
    key : str
        The subject (the keys of the chunk, comma-separated, when a chunk's result could not
        come back from its worker).
    error : str
        ``"ExceptionType: message"`` of the original exception.
    worker_traceback : str
        Its formatted traceback, where it was raised (in a worker process, possibly).
    """

    def __init__(self, key: str, error: str, worker_traceback: str = "") -> None:
        self.key, self.error, self.worker_traceback = key, error, worker_traceback
        super().__init__(
            f"subject {key!r} crashed: {error} (a bug, not bad data: only a "
            "face_health.errors.DataError becomes a failed QC row; traceback chained)"
        )

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        # Rebuilt from its three strings when it comes back from a worker process.
        return type(self), (self.key, self.error, self.worker_traceback)


class TooManyFailuresError(RuntimeError):
    """More subjects than allowed failed a stage (see :func:`check_failures`)."""


def map_subjects(
    fn: Callable[..., Any],
    items: Items,
    *,
    n_jobs: int = 1,
    desc: str = "",
    progress: bool = True,
    mp_context: str = "forkserver",
    chunksize: int = 1,
    **kwargs: Any,
) -> dict[str, Outcome]:
    """Call ``fn(item, **kwargs)`` for every ``(key, item)``, in parallel when asked.

    Parameters
    ----------
    fn : callable
        ``fn(item, **kwargs) -> value``. Must be picklable (defined at module top level, not
        a lambda or closure) when ``n_jobs > 1``.
    items : mapping or iterable of (str, Any)
        Keyed work, e.g. ``{subject_id: scan_path}``; keys must be unique.
    n_jobs : int
        Worker processes; 1 runs in this process (no pickling, easy debugging), 0 or less
        means ``os.cpu_count()``. Never more workers than items are started. With the
        ``dask`` backend (:func:`use_backend`) any value but 1 sends the items to the
        cluster, whose workers are set there.
    desc : str
        Label of the progress bar.
    progress : bool
        Show a tqdm progress bar (unit ``subject``).
    mp_context : str
        Multiprocessing start method. ``forkserver`` (the default) starts workers from a
        clean process, so they don't inherit the parent's threads, CUDA context or locks.
    chunksize : int
        Items sent to a worker at a time; raise it for many very short calls.
    **kwargs
        Passed to every call of ``fn``; must be picklable when ``n_jobs > 1``.

    Returns
    -------
    dict of str to Outcome
        In the order of ``items``. An item whose ``fn`` raised a
        :class:`~face_health.errors.DataError` has ``ok=False`` and its error text; its
        traceback is logged at WARNING.

    Raises
    ------
    SubjectCrashedError
        If ``fn`` raises anything but a ``DataError`` for an item (a bug): it names the
        subject and holds the traceback; chained from the original exception (``n_jobs=1``)
        or from the worker's traceback. The items not yet started are not run.
    concurrent.futures.process.BrokenProcessPool
        If a worker process dies (killed for memory, a crash in native code); the message
        names the subjects that had not finished.
    TypeError
        If ``n_jobs > 1`` and ``fn`` or ``kwargs`` cannot be pickled.
    ValueError
        If keys repeat or ``chunksize < 1``.
    """
    pairs = _as_pairs(items)
    if chunksize < 1:
        raise ValueError(f"chunksize must be at least 1; got {chunksize}")
    workers = (os.cpu_count() or 1) if n_jobs <= 0 else n_jobs
    on_dask = _BACKEND.backend == "dask" and n_jobs != 1 and bool(pairs)
    if workers > 1 or on_dask:
        _check_picklable(fn, kwargs, n_jobs=workers)

    outcomes: dict[str, Outcome | None] = dict.fromkeys((key for key, _ in pairs), None)
    folder = spool.current()  # a Kedro run's spool: bulky results stay on disk (spool.py)
    with tqdm(total=len(pairs), desc=desc, unit="subject", disable=not progress) as bar:
        if min(workers, len(pairs)) <= 1 and not on_dask:
            for key, item in pairs:
                with spool.writing_to(folder):
                    outcomes[key] = _report(*_call(fn, key, item, kwargs))
                bar.update()
        else:
            chunks = [pairs[i : i + chunksize] for i in range(0, len(pairs), chunksize)]
            if on_dask:  # the cluster's workers take the subjects (n_jobs: local processes)
                results = _run_on_dask(fn, chunks, kwargs, folder, bar)
            else:
                results = _run_in_processes(
                    fn, chunks, kwargs, folder, min(workers, len(chunks)), mp_context, bar
                )
            for outcome in results:
                outcomes[outcome.key] = outcome
    return {key: outcome for key, outcome in outcomes.items() if outcome is not None}


def check_failures(
    records: Iterable[Mapping[str, Any]] | Any,
    stage: str,
    *,
    max_failed_fraction: float,
) -> None:
    """Fail a stage whose share of failed subjects is above ``max_failed_fraction``.

    One unreadable scan is a QC row; a third of the cohort failing is a problem (a wrong
    setting, a changed scanner export, a broken model) that must stop the run, not reach the
    models as a smaller cohort.

    Parameters
    ----------
    records : iterable of dict, or pandas.DataFrame
        The stage's QC rows, one per subject, with ``<stage>_status`` and ``<stage>_reason``
        (what :meth:`Outcome.failed_row` and the stages' QC dicts hold) or, when no row has
        ``<stage>_status``, plain ``status`` and ``reason`` (the ingest QC table). A subject
        failed when its status is ``'failed'``.
    stage : str
        The stage's name, as in its QC columns (``'landmark'``, ``'alignment'``, ...).
    max_failed_fraction : float
        Largest share of failed subjects that passes, in ``[0, 1]``; ``1.0`` disables the
        check. Exactly at the limit passes.

    Raises
    ------
    TooManyFailuresError
        When more than ``max_failed_fraction`` of the subjects failed; the message gives the
        stage, the count and the 3 most common reasons with their counts. No subjects at all
        never fail.
    ValueError
        If ``max_failed_fraction`` is outside ``[0, 1]``, or the records hold neither status
        column.
    """
    limit = float(max_failed_fraction)
    if not 0.0 <= limit <= 1.0:
        raise ValueError(f"max_failed_fraction must be in [0, 1]; got {max_failed_fraction!r}")
    rows = records.to_dict("records") if hasattr(records, "to_dict") else list(records)
    if not rows:
        return
    prefixed = f"{stage}_status"
    if any(prefixed in row for row in rows):
        status_column, reason_column = prefixed, f"{stage}_reason"
    elif any("status" in row for row in rows):
        status_column, reason_column = "status", "reason"
    else:
        raise ValueError(f"the {stage} QC records have neither {prefixed!r} nor 'status'")
    failed = [row for row in rows if row.get(status_column) == "failed"]
    if len(failed) <= limit * len(rows):
        return
    reasons = Counter(_reason_text(row.get(reason_column)) for row in failed)
    common = "; ".join(f"{reason!r} ({count})" for reason, count in reasons.most_common(3))
    raise TooManyFailuresError(
        f"stage {stage!r}: {len(failed)} of {len(rows)} subjects "
        f"({100 * len(failed) / len(rows):.3g} %) failed, above the limit of "
        f"{100 * limit:.3g} %; most common reasons: {common}. See the stage's QC table; "
        "raise the limit (max_failed_fraction, 1.0 disables) only if this is expected."
    )


def _reason_text(reason: Any) -> str:
    if reason is None or (isinstance(reason, float) and reason != reason) or reason == "":
        return "(no reason given)"
    return str(reason)


class Executor(Protocol):
    """A backend that runs per-subject work: anything with this ``map`` can be plugged in."""

    def map(
        self, fn: Callable[..., Any], items: Items, *, desc: str = "", **kwargs: Any
    ) -> dict[str, Outcome]:
        """Run ``fn(item, **kwargs)`` per ``(key, item)``; see :func:`map_subjects`."""
        ...


@dataclass(frozen=True)
class ProcessExecutor:
    """Local worker processes (:func:`map_subjects` with ``n_jobs`` workers)."""

    n_jobs: int = 0
    mp_context: str = "forkserver"
    chunksize: int = 1
    progress: bool = True

    def map(
        self, fn: Callable[..., Any], items: Items, *, desc: str = "", **kwargs: Any
    ) -> dict[str, Outcome]:
        """Run ``fn(item, **kwargs)`` per ``(key, item)``; see :func:`map_subjects`."""
        return map_subjects(
            fn,
            items,
            n_jobs=self.n_jobs,
            desc=desc,
            progress=self.progress,
            mp_context=self.mp_context,
            chunksize=self.chunksize,
            **kwargs,
        )


@dataclass(frozen=True)
class SequentialExecutor:
    """Everything in this process, one subject after another (debugging, tiny cohorts)."""

    progress: bool = True

    def map(
        self, fn: Callable[..., Any], items: Items, *, desc: str = "", **kwargs: Any
    ) -> dict[str, Outcome]:
        """Run ``fn(item, **kwargs)`` per ``(key, item)``; see :func:`map_subjects`."""
        return map_subjects(fn, items, n_jobs=1, desc=desc, progress=self.progress, **kwargs)


EXECUTORS: dict[str, type[ProcessExecutor] | type[SequentialExecutor]] = {
    "processes": ProcessExecutor,
    "sequential": SequentialExecutor,
}


def get_executor(name: str = "processes", **options: Any) -> Executor:
    """The executor called ``name``, configured with ``options``.

    Parameters
    ----------
    name : {'processes', 'sequential'}
    **options
        Fields of the executor class, e.g. ``n_jobs=8`` for ``processes``.

    Returns
    -------
    Executor

    Raises
    ------
    ValueError
        If ``name`` is not a known executor.
    """
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; valid: {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[name](**options)


# --- helpers ------------------------------------------------------------------------------


def _as_pairs(items: Items) -> list[tuple[str, Any]]:
    pairs = list(items.items()) if isinstance(items, Mapping) else [tuple(p) for p in items]
    seen: set[str] = set()
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"items must be (key, item) pairs; got {pair!r}")
        if pair[0] in seen:
            raise ValueError(f"duplicate key {pair[0]!r}: results are keyed, keys must be unique")
        seen.add(pair[0])
    return pairs  # type: ignore[return-value]


def _check_picklable(fn: Callable[..., Any], kwargs: dict[str, Any], *, n_jobs: int) -> None:
    """Fail early and clearly, instead of once per item deep inside the process pool."""
    for what, obj in (("fn", fn), ("kwargs", kwargs)):
        try:
            pickle.dumps(obj)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            name = getattr(fn, "__qualname__", repr(fn)) if what == "fn" else "kwargs"
            raise TypeError(
                f"map_subjects(n_jobs={n_jobs}) sends {what} to worker processes, so it must "
                f"be picklable; {name!r} is not ({type(exc).__name__}: {exc}). Define fn at "
                "module top level (not a lambda, closure or nested function), or use n_jobs=1."
            ) from exc


def _call(
    fn: Callable[..., Any], key: str, item: Any, kwargs: dict[str, Any]
) -> tuple[Outcome, str]:
    """One call: the outcome and, for a ``DataError``, the formatted traceback.

    Anything else raises :class:`SubjectCrashedError`, chained, with the traceback as text
    (what survives the trip back from a worker process).
    """
    start = time.perf_counter()
    try:
        value = fn(item, **kwargs)
    except DataError as exc:  # the subject's data: a QC row, and the others go on
        seconds = time.perf_counter() - start
        error = f"{type(exc).__name__}: {exc}"
        return Outcome(key, False, error=error, seconds=seconds), traceback.format_exc()
    except Exception as exc:  # a bug: stop, and say for which subject
        error = f"{type(exc).__name__}: {exc}"
        raise SubjectCrashedError(key, error, traceback.format_exc()) from exc
    return Outcome(key, True, value=value, seconds=time.perf_counter() - start), ""


def _call_chunk(
    fn: Callable[..., Any],
    chunk: list[tuple[str, Any]],
    kwargs: dict[str, Any],
    folder: str | None = None,
) -> list[tuple[Outcome, str]]:
    with spool.writing_to(folder):
        return [_call(fn, key, item, kwargs) for key, item in chunk]


def _report(outcome: Outcome, trace: str) -> Outcome:
    # Logged in the parent: worker processes don't share the parent's logging setup.
    if not outcome.ok:
        logger.warning("subject %s failed: %s\n%s", outcome.key, outcome.error, trace.rstrip())
    return outcome


def _limit_worker_threads() -> None:
    """Process-pool initializer: one thread per worker for BLAS, OpenMP and torch."""
    # Env vars cover libraries imported from now on (the task's module imports numpy/torch
    # after this runs); threadpoolctl and torch cover any already loaded.
    for var in THREAD_ENV_VARS:
        os.environ[var] = "1"
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            threadpool_limits(1)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


#: Worker pools kept between calls, one per size and start method. Starting one costs about
#: 5 s (every worker imports the project, torch included) and a training run maps seven
#: stages, so the workers of one stage run the next. Workers keep only their per-process
#: caches between stages (the landmark network, OpenGL contexts). A call that fails (a bug,
#: a dead worker, an interrupt) shuts its pool down; ``release_pools`` ends them all (also
#: at exit).
_POOLS: dict[tuple[int, str], ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers: int, mp_context: str) -> ProcessPoolExecutor:
    with _POOLS_LOCK:
        pool = _POOLS.get((workers, mp_context))
        if pool is None or getattr(pool, "_broken", False):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            context = multiprocessing.get_context(mp_context)
            pool = ProcessPoolExecutor(
                workers, mp_context=context, initializer=_limit_worker_threads
            )
            _POOLS[(workers, mp_context)] = pool
        return pool


def release_pools() -> int:
    """Shut down the kept worker pools (their processes exit) and Dask clients (a
    ``LocalCluster`` they started too); returns how many there were."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)
    return len(pools) + close_dask()


atexit.register(release_pools)


def _discard(workers: int, mp_context: str, pool: ProcessPoolExecutor) -> None:
    with _POOLS_LOCK:
        if _POOLS.get((workers, mp_context)) is pool:
            del _POOLS[(workers, mp_context)]
    pool.shutdown(wait=True, cancel_futures=True)  # don't start the queued subjects


def _run_in_processes(
    fn: Callable[..., Any],
    chunks: list[list[tuple[str, Any]]],
    kwargs: dict[str, Any],
    folder: str | None,
    workers: int,
    mp_context: str,
    bar: tqdm,
) -> Iterable[Outcome]:
    pool = _pool(workers, mp_context)
    finished = False
    try:
        futures: dict[Future[list[tuple[Outcome, str]]], list[tuple[str, Any]]] = {
            pool.submit(_call_chunk, fn, chunk, kwargs, folder): chunk for chunk in chunks
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                chunk = futures[future]
                try:
                    results = future.result()
                except SubjectCrashedError:  # fn's bug, raised in the worker: stop here
                    raise
                except BrokenProcessPool as exc:  # a worker died: no subject's data to blame
                    unfinished = [
                        str(k) for f in futures if not _succeeded(f) for k, _ in futures[f]
                    ]
                    raise _worker_died(
                        "a worker process",
                        fn,
                        unfinished,
                        "if memory ran out, rerun with fewer n_jobs",
                    ) from exc
                except Exception as exc:  # a result (or the chunk) would not pickle: a bug
                    raise _chunk_crashed(chunk, exc) from exc
                for outcome, trace in results:
                    yield _report(outcome, trace)
                bar.update(len(chunk))
        finished = True
    finally:
        if not finished:  # a crash or an interrupt: end this pool, the next call starts anew
            _discard(workers, mp_context, pool)


def _worker_died(
    who: str, fn: Callable[..., Any], unfinished: list[str], advice: str
) -> BrokenProcessPool:
    """The error of a stage whose worker process died: no subject's data is to blame."""
    shown = ", ".join(unfinished[:10])
    more = f" and {len(unfinished) - 10} more" if len(unfinished) > 10 else ""
    return BrokenProcessPool(
        f"{who} died (killed for memory, or a crash in native code) while running "
        f"{getattr(fn, '__qualname__', fn)!r}; subjects not finished: {shown}{more}. No QC "
        f"row is written for a dead worker; {advice}."
    )


def _chunk_crashed(chunk: list[tuple[str, Any]], exc: BaseException) -> SubjectCrashedError:
    """The error of a chunk whose result could not come back from its worker."""
    error = f"{type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(exc))
    return SubjectCrashedError(", ".join(str(key) for key, _ in chunk), error, trace)


def _succeeded(future: Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


@dataclass(frozen=True)
class Backend:
    """Where :func:`map_subjects` sends work with ``n_jobs != 1`` (see :func:`use_backend`)."""

    backend: str = "processes"
    scheduler: str | None = None
    n_workers: int = 0
    dashboard_address: str | None = None


_BACKEND = Backend()
_DASK: dict[Backend, Any] = {}  # the client of each configured backend, kept (like the pools)
_DASK_LOCK = threading.Lock()
#: A Dask client has run in this process. Forking it afterwards is unsafe: a Lightning fit
#: with ``ddp_fork`` hung in its forked ranks (gloo) even after the client was closed.
DASK_USED = False


def use_backend(settings: Any) -> Backend:
    """Send the per-subject work of this process to ``settings``' backend from now on.

    ``settings`` is a :class:`~face_health.config.ParallelSettings` (the ``parallel``
    parameters; the project's hook applies it at the start of every Kedro run) or anything
    with its fields. ``dask`` connects to the scheduler (or starts a ``LocalCluster``) on the
    first stage that maps subjects, and keeps the client for the next ones.

    Returns
    -------
    Backend
        The one in effect before, to restore with ``use_backend`` again.
    """
    global _BACKEND
    backend = Backend(
        str(settings.backend),
        settings.scheduler,
        int(settings.n_workers),
        settings.dashboard_address,
    )
    if backend.backend not in ("processes", "dask"):
        raise ValueError(f"unknown backend {backend.backend!r}; valid: dask, processes")
    if backend.backend == "dask":
        _import_distributed()  # a clear error now, not at the first stage
    before, _BACKEND = _BACKEND, backend
    return before


def dask_client(backend: Backend | None = None) -> Any:
    """The ``distributed.Client`` of ``backend`` (default: the one in effect), made once.

    A ``LocalCluster`` gets ``n_workers`` worker processes (0: one per core) of one thread
    each, with the thread variables of :data:`THREAD_ENV_VARS` at 1, as local pool workers
    have; workers of a remote scheduler get the same limits when the client connects.
    """
    backend = backend or _BACKEND
    with _DASK_LOCK:
        client = _DASK.get(backend)
        if client is not None and client.status == "running":
            return client
        distributed = _import_distributed()
        if backend.scheduler:
            client = distributed.Client(backend.scheduler)
        else:
            cluster = distributed.LocalCluster(
                n_workers=backend.n_workers or (os.cpu_count() or 1),
                threads_per_worker=1,
                processes=True,
                dashboard_address=backend.dashboard_address,
                env=dict.fromkeys(THREAD_ENV_VARS, "1"),
            )
            client = distributed.Client(cluster)
        client.run(_limit_worker_threads)
        if client.dashboard_link and backend.dashboard_address is not None:
            logger.info("Dask dashboard: %s", client.dashboard_link)
        logger.info(
            "per-subject stages on Dask: %s, %d workers",
            backend.scheduler or "LocalCluster",
            len(client.scheduler_info(n_workers=-1)["workers"]),
        )
        _DASK[backend] = client
        global DASK_USED
        DASK_USED = True
        return client


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise ImportError(
            "parallel.backend: dask needs dask.distributed (pip install 'dask[distributed]')"
        ) from exc
    return distributed


def close_dask() -> int:
    """Close the kept Dask clients (and the ``LocalCluster`` each started); how many."""
    with _DASK_LOCK:
        clients = list(_DASK.values())
        _DASK.clear()
    for client in clients:
        cluster = client.cluster
        with contextlib.suppress(Exception):  # closing a cluster that is already gone
            client.close()
            if cluster is not None:
                cluster.close()
    return len(clients)


def _run_on_dask(
    fn: Callable[..., Any],
    chunks: list[list[tuple[str, Any]]],
    kwargs: dict[str, Any],
    folder: str | None,
    bar: tqdm,
) -> Iterable[Outcome]:
    """The chunks as Dask tasks: outcomes as they finish, the same errors as the pool's."""
    distributed = _import_distributed()
    client = dask_client()
    # kwargs go with every task, as with the pool (scattered data would die with a worker).
    futures = {
        client.submit(_call_chunk, fn, chunk, kwargs, folder, pure=False, retries=0): chunk
        for chunk in chunks
    }
    finished = False
    try:
        for future in distributed.as_completed(futures):
            chunk = futures[future]
            try:
                results = future.result()
            except SubjectCrashedError:
                raise
            except distributed.KilledWorker as exc:
                unfinished = [
                    str(k) for f in futures if f.status != "finished" for k, _ in futures[f]
                ]
                raise _worker_died(
                    "a Dask worker",
                    fn,
                    unfinished,
                    "give the workers more memory or fewer threads",
                ) from exc
            except Exception as exc:  # a result (or the chunk) would not pickle: a bug
                raise _chunk_crashed(chunk, exc) from exc
            future.release()
            bar.update(len(chunk))
            for outcome, trace in results:
                yield _report(outcome, trace)
        finished = True
    finally:
        if not finished:
            client.cancel(list(futures))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with torch limited to ``n`` intra-op threads, then restore the setting.

    Small networks (the per-target MLPs) are fastest on one thread: with two, torch's
    workers spend most of each tiny operation waiting on each other.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
