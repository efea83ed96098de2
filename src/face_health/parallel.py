"""Run independent per-subject work in parallel: the project's one executor abstraction.

Per-subject stages (ingest, landmarks, rendering, radiomics) never look at another subject,
so they run as ``fn(item, **kwargs)`` per subject over local processes. One broken scan must
not cost a night's run: every subject gets an :class:`Outcome`, failed or not, and the node
decides what a failure means (usually a QC row). Another backend (Dask, say) plugs in as an
object with the same ``.map`` as :class:`ProcessExecutor`; see :func:`get_executor`.

Examples
--------
>>> outcomes = map_subjects(load_scan, {"S0001": "scans/S0001.ply"}, n_jobs=4)  # doctest: +SKIP
>>> failed = {key: o.error for key, o in outcomes.items() if not o.ok}  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

#: Thread-pool sizes pinned to 1 in worker processes: n_jobs processes each running a
#: cores-wide BLAS / OpenMP / torch pool would oversubscribe the machine many times over.
THREAD_ENV_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

Items = Mapping[str, Any] | Iterable[tuple[str, Any]]


@dataclass(frozen=True)
class Outcome:
    """What happened to one subject.

    Attributes
    ----------
    key : str
        The subject id (or whatever key the item came with).
    ok : bool
        True when ``fn`` returned normally.
    value : Any
        ``fn``'s result when ``ok``, else None.
    error : str
        ``"ExceptionType: message"`` when not ``ok``; the traceback goes to the log.
    seconds : float
        Wall time of the call.
    """

    key: str
    ok: bool
    value: Any = None
    error: str = ""
    seconds: float = 0.0

    def failed_row(self, stage: str) -> dict[str, str]:
        """The QC row of a subject whose ``stage`` crashed: ``<stage>_status`` and why."""
        return {"subject_id": self.key, f"{stage}_status": "failed", f"{stage}_reason": self.error}


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
        means ``os.cpu_count()``. Never more workers than items are started.
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
        In the order of ``items``. A failing item has ``ok=False`` and its error text; its
        traceback is logged at WARNING. If a worker process dies (killed for memory, say),
        the items it held and those not yet started fail with ``BrokenProcessPool``.

    Raises
    ------
    TypeError
        If ``n_jobs > 1`` and ``fn`` or ``kwargs`` cannot be pickled.
    ValueError
        If keys repeat or ``chunksize < 1``.
    """
    pairs = _as_pairs(items)
    if chunksize < 1:
        raise ValueError(f"chunksize must be at least 1; got {chunksize}")
    workers = (os.cpu_count() or 1) if n_jobs <= 0 else n_jobs
    if workers > 1:
        _check_picklable(fn, kwargs, n_jobs=workers)

    outcomes: dict[str, Outcome | None] = dict.fromkeys((key for key, _ in pairs), None)
    with tqdm(total=len(pairs), desc=desc, unit="subject", disable=not progress) as bar:
        if min(workers, len(pairs)) <= 1:
            for key, item in pairs:
                outcomes[key] = _report(*_call(fn, key, item, kwargs))
                bar.update()
        else:
            chunks = [pairs[i : i + chunksize] for i in range(0, len(pairs), chunksize)]
            for outcome in _run_in_processes(
                fn, chunks, kwargs, min(workers, len(chunks)), mp_context, bar
            ):
                outcomes[outcome.key] = outcome
    return {key: outcome for key, outcome in outcomes.items() if outcome is not None}


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
    """One call, never raising: the outcome and, on failure, the formatted traceback."""
    start = time.perf_counter()
    try:
        value = fn(item, **kwargs)
    except Exception as exc:  # one bad subject must not stop the others
        seconds = time.perf_counter() - start
        error = f"{type(exc).__name__}: {exc}"
        return Outcome(key, False, error=error, seconds=seconds), traceback.format_exc()
    return Outcome(key, True, value=value, seconds=time.perf_counter() - start), ""


def _call_chunk(
    fn: Callable[..., Any], chunk: list[tuple[str, Any]], kwargs: dict[str, Any]
) -> list[tuple[Outcome, str]]:
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


def _run_in_processes(
    fn: Callable[..., Any],
    chunks: list[list[tuple[str, Any]]],
    kwargs: dict[str, Any],
    workers: int,
    mp_context: str,
    bar: tqdm,
) -> Iterable[Outcome]:
    context = multiprocessing.get_context(mp_context)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_limit_worker_threads)
    try:
        futures: dict[Future[list[tuple[Outcome, str]]], list[tuple[str, Any]]] = {
            pool.submit(_call_chunk, fn, chunk, kwargs): chunk for chunk in chunks
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                chunk = futures[future]
                try:
                    results = future.result()
                except Exception as exc:  # the worker died, or a result would not pickle
                    error = f"{type(exc).__name__}: {exc}"
                    trace = "".join(traceback.format_exception(exc))
                    results = [(Outcome(key, False, error=error), trace) for key, _ in chunk]
                for outcome, trace in results:
                    yield _report(outcome, trace)
                bar.update(len(chunk))
    finally:
        # On an interrupt, don't start the queued subjects.
        pool.shutdown(wait=True, cancel_futures=True)


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
