"""How the per-subject stages scale on Dask: subjects per second, memory per worker, and an
extrapolation to a biobank from the measured costs.

One simulated cohort of ``--n`` subjects (``face-health simulate``, timed on its own) runs
through ingest, landmarks, template, alignment, views, regions + radiomics
(``kedro run --pipelines=training --to-nodes ...``) in a fresh project copy, once per worker
count, each on a ``LocalCluster`` this script starts (``parallel.backend: dask`` pointed at
its scheduler), so the run's Kedro process is the client and the workers' own peak memory
can be read after the run.

From a 1-worker and a 2-worker run the time splits into a part that parallelises (``p``
seconds a subject on one worker) and one that does not (``s``: the Kedro process loads and
saves every partition, builds the template, writes the tables), T(N) = n (s + p / N); the
README's table extrapolates that to 100,000 subjects on N workers.

    .venv/bin/python benchmarks/scale_bench.py --n 2000 --workers 1 2

``--backend processes`` runs the same stages on the local process pool instead (each stage's
``n_jobs`` set to the worker count), the per-subject cost to compare Dask's with; its workers'
memory is not read (the pool's workers are not the run's children).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import copy_project  # noqa: E402  (the project copy the tests run in)

#: The sections whose ``n_jobs`` the per-subject stages take (``--backend processes``).
N_JOBS_SECTIONS = ("ingest", "landmarks", "alignment", "views", "radiomics")
STAGES = (
    "feature.local_features.segment_regions_and_extract_radiomics",
    "data_engineering.views.render_directional_views",
    "data_engineering.reports.build_qc_report",
)
_STAMP = re.compile(r"^\[(\d\d/\d\d/\d\d \d\d:\d\d:\d\d)\]")
_NODE = re.compile(r"Running node: (\w+)")


def simulate(n: int, seed: int, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(ROOT / ".venv/bin/face-health"), "simulate", "--n", str(n), "--seed", str(seed)]
        + ["--out", str(out), "--jobs", str(os.cpu_count() or 1)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def _peak_rss_mb() -> float:
    """This worker process's peak resident memory (run on each worker)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_stages(cohort: Path, workers: int, scratch: Path, backend: str = "dask") -> dict:
    project = copy_project(scratch / f"project_{backend}_{workers}")
    (project / "conf" / "local" / "globals.yml").write_text(
        f"cohort:\n  source: folder\n  path: {cohort}\n  clinical: clinical.csv\n"
    )
    if backend == "processes":
        params = ",".join(
            ["parallel.backend=processes"] + [f"{s}.n_jobs={workers}" for s in N_JOBS_SECTIONS]
        )
        result, wall = _kedro(project, params, scratch / f"kedro_{backend}_{workers}.log")
        return _summary(workers, backend, result, wall, worker_mb=[])
    from distributed import Client, LocalCluster

    from face_health.parallel import THREAD_ENV_VARS

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        dashboard_address=None,
        env=dict.fromkeys(THREAD_ENV_VARS, "1"),
    )
    client = Client(cluster)
    try:
        params = f"parallel.backend=dask,parallel.scheduler={cluster.scheduler_address}"
        result, wall = _kedro(project, params, scratch / f"kedro_{backend}_{workers}.log")
        worker_mb = sorted(client.run(_peak_rss_mb).values())
    finally:
        client.close()
        cluster.close()
    return _summary(workers, backend, result, wall, worker_mb)


def _kedro(project: Path, params: str, log: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = os.environ | {"KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "300"}
    start = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "PEAK_KB %M", str(ROOT / ".venv/bin/kedro"), "run"]
        + ["--pipelines=training"]
        + ["--to-nodes", ",".join(STAGES), "--params", params],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"kedro run failed (see {log}):\n{result.stderr[-3000:]}")
    return result, wall


def _summary(workers: int, backend: str, result, wall: float, worker_mb: list[float]) -> dict:
    return {
        "workers": workers,
        "backend": backend,
        "wall_s": wall,
        "stages_s": stage_seconds(result.stdout + result.stderr),
        "worker_peak_mb": worker_mb,
        # /usr/bin/time of the kedro command: the Kedro process (the Dask client)
        "client_peak_mb": int(re.findall(r"PEAK_KB (\d+)", result.stderr)[-1]) / 1024,
    }


def stage_seconds(log: str) -> dict[str, float]:
    """Seconds from each node's start to the next node's (Kedro's log timestamps; rich
    prints a timestamp only when it changes), the last node to the end of the log."""
    marks, stamp = [], None
    for line in log.splitlines():
        if found := _STAMP.match(line):
            stamp = dt.datetime.strptime(found[1], "%m/%d/%y %H:%M:%S")
        if (node := _NODE.search(line)) and stamp is not None:
            marks.append((stamp, node[1]))
    ends = [t for t, _ in marks[1:]] + [stamp]
    return {name: (t1 - t0).total_seconds() for (t0, name), t1 in zip(marks, ends, strict=True)}


def extrapolate(n: int, one: dict, two: dict, targets=(1, 8, 32, 128), n_big=100_000) -> dict:
    """Amdahl from two measured runs: per-subject serial ``s`` and parallel ``p`` seconds."""
    p = 2 * (one["wall_s"] - two["wall_s"]) / n
    s = one["wall_s"] / n - p
    return {
        "serial_s_per_subject": s,
        "parallel_s_per_subject_per_worker": p,
        f"hours_for_{n_big}": {w: n_big * (s + p / w) / 3600 for w in targets},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="subjects (default 2000)")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backend", choices=("dask", "processes"), default="dask")
    parser.add_argument("--scratch", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="scale_bench_"))
    scratch.mkdir(parents=True, exist_ok=True)
    cohort = scratch / "cohort"
    print(f"simulating {args.n} subjects into {cohort} ...", flush=True)
    report = {"n": args.n, "seed": args.seed, "backend": args.backend}
    report["simulate_s"] = simulate(args.n, args.seed, cohort)
    print(f"  {report['simulate_s']:.0f} s", flush=True)
    runs = []
    for workers in args.workers:
        print(f"per-subject stages on {workers} {args.backend} worker(s) ...", flush=True)
        run = run_stages(cohort, workers, scratch, args.backend)
        runs.append(run)
        print(
            f"  {run['wall_s']:.0f} s, {args.n / run['wall_s']:.2f} subjects/s, worker peak "
            f"{_mb(run['worker_peak_mb'])} MB, Kedro process peak "
            f"{run['client_peak_mb']:.0f} MB",
            flush=True,
        )
    report["runs"] = runs
    by_workers = {r["workers"]: r for r in runs}
    if 1 in by_workers and 2 in by_workers:
        report["model"] = extrapolate(args.n, by_workers[1], by_workers[2])
    report["cpu_count"] = os.cpu_count()
    report["date"] = dt.date.today().isoformat()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\n{'workers':>8} {'wall s':>8} {'subj/s':>8} {'worker MB':>10} {'Kedro MB':>9}")
    for r in runs:
        print(
            f"{r['workers']:>8} {r['wall_s']:>8.0f} {args.n / r['wall_s']:>8.2f} "
            f"{_mb(r['worker_peak_mb']):>10} {r['client_peak_mb']:>9.0f}"
        )
    if "model" in report:
        m = report["model"]
        print(
            f"\nserial {m['serial_s_per_subject']:.3f} s/subject, parallel "
            f"{m['parallel_s_per_subject_per_worker']:.3f} s/subject/worker"
        )
        for w, hours in m["hours_for_100000"].items():
            print(f"  100,000 subjects on {w} workers: {hours:.1f} h")
    print(f"wrote {args.out}")


def _mb(values: list[float]) -> str:
    return f"{max(values):.0f}" if values else "-"


if __name__ == "__main__":
    main()
