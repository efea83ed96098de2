"""Scoring in a child process that the service kills at a request's deadline.

A Python thread cannot be stopped, so a scan that takes too long (a huge texture, a mesh the
landmark fit struggles with) would go on using memory and the CPU after its request was
answered 504. Here the model lives in one worker process (``multiprocessing``, ``spawn``
context by default), which loads it once, warms it up and then scores one job at a time:
the path of a saved upload and a subject id in, the scorer's record out.

:class:`ScoringPool` owns that process and a dispatcher thread that hands it the queued
jobs in order. At a job's deadline the dispatcher kills the worker (``terminate``, then
``kill`` after :data:`KILL_GRACE_S`), fails the job with :class:`JobTimeout`, and starts a
replacement, which loads and warms up the model before it takes work; meanwhile
:attr:`ScoringPool.ready` is False (the app answers 503 with ``Retry-After``). A worker that
dies on its own (a segfault, the kernel's out-of-memory killer) fails its job with
:class:`WorkerCrashed` and is replaced the same way. Jobs queued behind a killed job wait
for the replacement within their own deadline.

What the worker runs is a *factory*: a picklable callable, called once in the child, that
returns a scorer (``run_id`` and ``score(path, subject_id) -> record``). :class:`ModelLoader`
loads a logged model (the ``serve`` command); :class:`Preloaded` carries a scorer object
that is pickled into each worker (``create_app(scorer, ...)``, tests and test doubles).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import math
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any

logger = logging.getLogger("face_health.serving")

#: Seconds between ``terminate`` (SIGTERM) and ``kill`` (SIGKILL) of a worker.
KILL_GRACE_S = 2.0
#: Seconds to wait before trying again to start a worker whose start failed (doubles to 60).
RESTART_BACKOFF_S = 5.0


class WorkerError(RuntimeError):
    """The scoring worker could not do a job; ``code`` names why for the HTTP answer."""

    code = "worker_error"


class JobTimeout(WorkerError):
    """The job's deadline passed; the worker scoring it was killed."""

    code = "timeout"


class WorkerCrashed(WorkerError):
    """The worker process died while scoring (signal or exit code in the message)."""

    code = "worker_crashed"


class ScoringFailed(WorkerError):
    """The scorer raised in the worker: ``exc_type`` and ``where`` (files, lines,
    functions) say where, never the exception's message, which may hold scan data."""

    code = "internal_error"

    def __init__(self, exc_type: str, where: str) -> None:
        super().__init__(f"{exc_type} in the scoring worker")
        self.exc_type, self.where = exc_type, where


class WorkerStartFailed(LookupError):
    """The worker could not load the model (the message says why)."""


@dataclass(frozen=True)
class ModelLoader:
    """Factory of the ``serve`` command: load a logged model in the worker and warm it up."""

    uri: str
    tracking_uri: str | None = None

    def __call__(self) -> Any:
        from face_health.serving.scorer import load_scorer

        return load_scorer(self.uri, self.tracking_uri)


@dataclass(frozen=True)
class Preloaded:
    """Factory for a scorer already in memory: pickled into each worker as it starts.

    Any picklable object with ``run_id`` and ``score(path, subject_id)`` works, which is
    the hook tests use to put a test double (a slow or crashing scorer) in the worker.
    """

    scorer: Any

    def __call__(self) -> Any:
        return self.scorer


def describe_exit(exitcode: int | None) -> str:
    """``exitcode`` of a dead process in words: a signal by name, or the exit status."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the kernel's out-of-memory killer sends this)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exited with status {exitcode}"


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return " <- ".join(f"{f.filename}:{f.lineno}:{f.name}" for f in reversed(frames[-8:]))


def release_memory() -> None:
    """Collect the cyclic garbage one scan leaves and hand freed heap back to the system.

    Scoring a scan builds object graphs with reference cycles (a Lightning ``Trainer`` per
    embedding call, trimesh and pyrender objects holding the mesh and its images); Python
    frees those only at a full collection, which its thresholds rarely trigger in a process
    that keeps a large model alive, so without this the worker grew by 6 to 13 MB per scan
    (2.4 GB idle to 6.9 GB after 500 requests, ``benchmarks/serving_bench.py --memory-at``).
    ``malloc_trim`` (glibc only; skipped elsewhere) returns the freed arenas' pages."""
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    with contextlib.suppress(AttributeError):
        libc.malloc_trim(0)


def _worker_main(conn: Connection, factory: Callable[[], Any]) -> None:
    """The child: load the scorer, warm it up, say ready, then score jobs until told to stop
    (``None``) or the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        from face_health.quiet import silence_known_library_noise

        silence_known_library_noise()
        scorer = factory()
        warm_up = getattr(scorer, "warm_up", None)
        if callable(warm_up):
            warm_up()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        message = str(exc) if isinstance(exc, LookupError) else ""
        conn.send(("failed", type(exc).__name__, message, _where(exc)))
        return
    release_memory()  # what loading left behind, before the idle size is read
    conn.send(("ready", getattr(scorer, "run_id", "") or "", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        path, subject_id = job
        try:
            record = scorer.score(path, subject_id)
        except Exception as exc:  # noqa: BLE001 - the parent logs type and place
            reply: tuple = ("error", type(exc).__name__, _where(exc))
        else:
            reply = ("ok", record)
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return
        release_memory()  # after the answer is sent: costs the next job, not this one


class _Worker:
    """One child process and the parent's end of its pipe."""

    def __init__(self, factory: Callable[[], Any], start_method: str) -> None:
        ctx = get_context(start_method)
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child, factory), name="face-health-scorer", daemon=True
        )
        self.process.start()
        child.close()
        self.run_id = ""

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def wait_ready(self, timeout: float) -> None:
        """Block until the child says it is ready; raise :class:`WorkerStartFailed` else."""
        ready = wait([self.conn, self.process.sentinel], timeout)
        message = None
        if self.conn in ready or self.conn.poll():
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                message = None
        if message is not None and message[0] == "ready":
            self.run_id = message[1]
            return
        self.stop()
        if message is not None and message[0] == "failed":
            _, exc_type, text, where = message
            if text:
                raise WorkerStartFailed(text)
            raise WorkerStartFailed(
                f"the scoring worker could not load the model ({exc_type} at {where})"
            )
        if not ready:
            raise WorkerStartFailed(f"the scoring worker was not ready within {timeout:g} s")
        raise WorkerStartFailed(
            f"the scoring worker {describe_exit(self.process.exitcode)} while loading the model"
        )

    def stop(self, grace: float = KILL_GRACE_S) -> None:
        """End the child: SIGTERM, then SIGKILL if it is still there after ``grace``."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(grace)
        self.conn.close()

    def close(self, timeout: float = 5.0) -> None:
        """Ask the child to finish, then stop it if it does not."""
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.process.join(timeout)
        self.stop()


@dataclass
class _Job:
    path: str
    subject_id: str | None
    deadline: float  # time.monotonic()
    future: Future


class ScoringPool:
    """The scoring worker, its replacement when it is killed or dies, and the job queue.

    Parameters
    ----------
    factory : callable
        Picklable; called once in each worker to build the scorer.
    start_method : str
        ``spawn`` (default) or ``forkserver``: never ``fork``, which would copy the
        server's threads and event loop into the child.
    start_timeout_s : float
        How long a worker may take to load and warm up the model.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        *,
        start_method: str = "spawn",
        start_timeout_s: float = 600.0,
    ) -> None:
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"worker start method must be spawn or forkserver, not {start_method}")
        self.factory = factory
        self.start_method = start_method
        self.start_timeout_s = start_timeout_s
        self.run_id = ""
        self.replacements = 0
        self.last_start_s = 0.0
        self._worker: _Worker | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._state = "stopped"  # stopped, starting, ready, failed, closed
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._starting: _Worker | None = None

    # ----------------------------------------------------------------------- public

    @property
    def ready(self) -> bool:
        """A worker has loaded the model and takes jobs (a worker found dead while idle is
        replaced on the next job)."""
        worker = self._worker
        return self._state == "ready" and worker is not None and worker.process.is_alive()

    @property
    def state(self) -> str:
        return self._state

    @property
    def pid(self) -> int | None:
        """The worker process's id (None while none is running)."""
        worker = self._worker
        return worker.pid if worker is not None and worker.process.is_alive() else None

    def retry_after_s(self) -> int:
        """Seconds a client should wait while a worker is starting (the last start's)."""
        return max(1, math.ceil(self.last_start_s or 5.0))

    def start(self, wait: bool = False) -> None:
        """Start the dispatcher thread and the first worker (once). With ``wait``, block
        until that worker is ready and raise :class:`WorkerStartFailed` if it fails."""
        with self._lock:
            if self._thread is None and self._state != "closed":
                self._state = "starting"
                self._thread = threading.Thread(
                    target=self._dispatch, name="face-health-dispatcher", daemon=True
                )
                self._thread.start()
        if wait:
            self._started.wait()
            if self._start_error is not None:
                raise self._start_error

    def submit(self, path: str, subject_id: str | None, deadline: float) -> Future:
        """Queue a job; its future gets the record, or :class:`WorkerError`."""
        self.start()
        future: Future = Future()
        self._jobs.put(_Job(path, subject_id, deadline, future))
        return future

    def close(self) -> None:
        """Stop the worker (also one still starting) and the dispatcher; queued jobs are
        cancelled. Safe to call more than once."""
        with self._lock:
            self._state = "closed"
        self._jobs.put(None)
        starting = self._starting
        if starting is not None:
            starting.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(KILL_GRACE_S * 3 + 5)
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close(timeout=2.0)

    # ------------------------------------------------------------------ dispatcher

    def _dispatch(self) -> None:
        backoff = RESTART_BACKOFF_S
        job: _Job | None = None
        while self._state != "closed":
            if self._worker is None:
                if not self._start_worker():
                    self._started.set()
                    if self._state == "closed":
                        break
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                backoff = RESTART_BACKOFF_S
                self._started.set()
            if job is None:
                try:
                    job = self._jobs.get(timeout=1.0)
                except queue.Empty:
                    job = None
                if job is None and self._state == "closed":
                    break
            worker = self._worker
            if worker is not None and not worker.process.is_alive():  # died while idle
                self._replace(worker, "it died between jobs")
                continue  # start a new one, then run the job on it
            if job is not None:
                self._run(job)
                job = None
        if job is not None:
            job.future.cancel()
        while True:  # closed: nothing queued will be scored
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.cancel()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close(timeout=2.0)

    def _start_worker(self) -> bool:
        self._state = "starting"
        started = time.monotonic()
        try:
            worker = _Worker(self.factory, self.start_method)
            worker.wait_ready(self.start_timeout_s)
        except Exception as exc:  # noqa: BLE001 - logged; the service keeps trying
            self._start_error = (
                exc
                if isinstance(exc, WorkerStartFailed)
                else WorkerStartFailed(f"the scoring worker could not start ({type(exc).__name__})")
            )
            self._state = "failed"
            logger.error("scoring worker failed to start: %s", self._start_error)
            return False
        self.last_start_s = time.monotonic() - started
        self._worker, self.run_id = worker, worker.run_id
        self._start_error = None
        if self._state != "closed":
            self._state = "ready"
        logger.info("scoring worker pid=%s ready in %.1f s", worker.pid, self.last_start_s)
        return True

    def _run(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return  # the request gave up while queued
        worker = self._worker
        remaining = job.deadline - time.monotonic()
        if worker is None or remaining <= 0:
            job.future.set_exception(JobTimeout("the time limit passed before scoring began"))
            return
        try:
            worker.conn.send((job.path, job.subject_id))
            ready = wait([worker.conn, worker.process.sentinel], remaining)
            reply = worker.conn.recv() if worker.conn in ready or worker.conn.poll() else None
        except (EOFError, OSError, BrokenPipeError):
            reply = None
            ready = [worker.process.sentinel]
        if reply is not None:
            if reply[0] == "ok":
                job.future.set_result(reply[1])
            else:
                job.future.set_exception(ScoringFailed(reply[1], reply[2]))
            return
        if not ready:  # the deadline: stop the work, not only the wait
            self._replace(worker, "its job passed the time limit")
            job.future.set_exception(JobTimeout("killed at the time limit"))
            return
        worker.process.join(1.0)
        how = describe_exit(worker.process.exitcode)
        self._replace(worker, how)
        job.future.set_exception(WorkerCrashed(f"the scoring process {how}"))

    def _replace(self, worker: _Worker, why: str) -> None:
        pid = worker.pid
        with self._lock:
            if self._state != "closed":
                self._state = "starting"
        self._worker = None
        worker.stop()
        self.replacements += 1
        logger.warning(
            "scoring worker pid=%s stopped (%s, %s); starting a replacement",
            pid,
            why,
            describe_exit(worker.process.exitcode),
        )
