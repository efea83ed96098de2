"""Benchmark: latency and throughput of the prediction service on loopback.

Run by hand (not in CI), after a training run has logged a model:

    .venv/bin/python benchmarks/serving_bench.py --n 20 --concurrency 1 2

Without ``--url`` it starts ``face-health serve`` on a free loopback port with a throwaway
token (``--model`` / ``--tracking-uri`` pick the model, default the project's newest) and
stops it at the end; with ``--url`` it measures a running service, the token taken from
``FACE_HEALTH_API_TOKEN``. Uploads alternate between the two kinds a phone app sends: a zip
of OBJ + MTL + texture, and a single binary PLY with vertex colours (made from the same
scans). One warm-up request is not counted. For each concurrency it prints and writes the
latency p50 / p95 per request and the throughput to ``benchmarks/results/serving.json``.

The service scores in a worker process (``face_health.serving.worker``) that holds the
model, so memory is reported for both: ``--memory-at 0 100 300 500`` sends that many
sequential requests (after the latency runs) and records, at each count, the resident set
size of the server process and of its scoring worker, read from ``/proc`` (Linux; only
when the benchmark started the server). ``--worst`` then sends the worst legal inputs of
``benchmarks/ingest_cost_bench.py`` (a PLY just under the file limit, 1.2 M vertices, and a
zipped OBJ whose texture is just under the pixel cap) and records each one's status, time
and the scoring worker's peak resident memory (sampled every 50 ms). The server runs with a
private ``TMPDIR``; what is left in it after the server stops is reported (``temp_left``: a
model copy per start would show here). To run it on the tiny model of a test project:

    .venv/bin/python benchmarks/serving_bench.py --n 6 \
        --tracking-uri sqlite:////path/to/project/mlflow.db \
        --scans /path/to/project/data/tiny/01_raw/synthetic_cohort/scans --memory-at 0 10 20
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCANS = ROOT / "data" / "01_raw" / "synthetic_cohort" / "scans"
RESULTS = ROOT / "benchmarks" / "results" / "serving.json"


def zip_payload(obj: Path) -> bytes:
    """The OBJ with its MTL and texture image beside it, zipped."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(obj.parent.glob(f"{obj.stem}.*")):
            if path.suffix.lower() in (".obj", ".mtl", ".png", ".jpg", ".jpeg"):
                zf.write(path, path.name)
    return buffer.getvalue()


def ply_payload(obj: Path) -> bytes:
    """The textured OBJ as one binary PLY, its texture sampled into vertex colours."""
    import trimesh

    mesh = trimesh.load_mesh(obj, process=False, maintain_order=True)
    mesh.visual = mesh.visual.to_color()
    return mesh.export(file_type="ply", encoding="binary")


def make_payloads(scans: Path, n: int) -> list[tuple[str, str, bytes]]:
    """``n`` uploads ``(kind, file name, bytes)``, alternating zip and PLY over the scans."""
    objs = sorted(scans.glob("*.obj"))[-max(1, min(n, 10)) :]
    if not objs:
        raise SystemExit(f"no OBJ scans in {scans}")
    cache: dict[tuple[str, Path], bytes] = {}
    payloads = []
    for i in range(n):
        obj = objs[(i // 2) % len(objs)]
        kind = "zip" if i % 2 == 0 else "ply"
        if (kind, obj) not in cache:
            cache[kind, obj] = zip_payload(obj) if kind == "zip" else ply_payload(obj)
        payloads.append((kind, f"{obj.stem}.{kind}", cache[kind, obj]))
    return payloads


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str | None, tracking_uri: str | None, token: str, log: Path, tmpdir: Path):
    """``face-health serve`` on a free loopback port; returns (process, url)."""
    port = free_port()
    command = [sys.executable, "-m", "face_health.command_line", "serve",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    if model:
        command += ["--model", model]
    if tracking_uri:
        command += ["--tracking-uri", tracking_uri]
    env = {**os.environ, "FACE_HEALTH_API_TOKEN": token, "KEDRO_DISABLE_TELEMETRY": "true"}
    env["TMPDIR"] = str(tmpdir)
    env.setdefault("PYOPENGL_PLATFORM", "egl")
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("the server did not answer /healthz within 300 s")


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB, from ``/proc`` (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (the scoring worker, and multiprocessing's
    resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def process_memory(pid: int) -> dict:
    """RSS of the server and of each child, largest child first (the scoring worker)."""
    kids = sorted(((c, rss_mb(c)) for c in children(pid)), key=lambda item: -(item[1] or 0.0))
    worker = kids[0] if kids else (None, None)
    return {
        "server_rss_mb": rss_mb(pid),
        "worker_pid": worker[0],
        "worker_rss_mb": worker[1],
        "total_rss_mb": round((rss_mb(pid) or 0) + sum(m or 0 for _, m in kids), 1),
    }


def memory_run(url: str, token: str, payloads: list, pid: int, checkpoints: list[int]) -> list:
    """Sequential requests; the memory of the server and its worker after each checkpoint
    count of requests (0 = before any of them)."""
    headers = {"Authorization": f"Bearer {token}"}
    rows, sent, statuses = [], 0, {}
    with httpx.Client(headers=headers, timeout=600) as client:
        for target in sorted(set(checkpoints)):
            while sent < target:
                result = send(client, url, payloads[sent % len(payloads)])
                statuses[str(result["status"])] = statuses.get(str(result["status"]), 0) + 1
                sent += 1
            row = {"requests": sent, **process_memory(pid), "statuses": dict(statuses)}
            rows.append(row)
            print(
                f"after {sent} requests: server {row['server_rss_mb']} MB, "
                f"worker {row['worker_rss_mb']} MB (pid {row['worker_pid']}), "
                f"statuses {statuses}"
            )
    return rows


def worst_payloads(folder: Path) -> list[tuple[str, str, bytes]]:
    """The worst legal inputs of the ingest cost benchmark, as uploads."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ingest_cost_bench import make_case

    from face_health.config import base_section

    limits = base_section("ingest").limits()
    ply = make_case("ply_near_file_limit", folder / "ply", limits)
    obj = make_case("texture_under_cap", folder / "texture", limits)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(obj.parent.iterdir()):
            zf.write(path, path.name)
    return [
        ("ply_near_file_limit", "worst.ply", ply.read_bytes()),
        ("texture_under_cap", "worst.zip", buffer.getvalue()),
    ]


def worst_run(url: str, token: str, pid: int, folder: Path) -> list[dict]:
    """Each worst legal input once: status, reason, seconds, the worker's peak RSS."""
    import threading

    headers = {"Authorization": f"Bearer {token}"}
    rows = []
    with httpx.Client(headers=headers, timeout=600) as client:
        for kind, name, data in worst_payloads(folder):
            before = process_memory(pid)
            peak = {"worker": before["worker_rss_mb"] or 0.0, "total": before["total_rss_mb"]}
            done = threading.Event()

            def sample(peak=peak, done=done) -> None:
                while not done.wait(0.05):
                    now = process_memory(pid)
                    peak["worker"] = max(peak["worker"], now["worker_rss_mb"] or 0.0)
                    peak["total"] = max(peak["total"], now["total_rss_mb"])

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            response = client.post(f"{url}/v1/predictions", files={"scan": (name, data)})
            seconds = time.perf_counter() - started
            done.set()
            sampler.join()
            body = response.json()
            reason = (body.get("qc") or {}).get("reason") or body.get("detail") or ""
            row = {
                "input": kind,
                "upload_mb": round(len(data) / 2**20, 1),
                "status": response.status_code,
                "reason": str(reason)[:300],
                "seconds": round(seconds, 1),
                "worker_rss_before_mb": before["worker_rss_mb"],
                "worker_peak_rss_mb": round(peak["worker"], 1),
                "total_peak_rss_mb": round(peak["total"], 1),
                "worker_rss_after_mb": process_memory(pid)["worker_rss_mb"],
            }
            rows.append(row)
            print(
                f"worst input {kind} ({row['upload_mb']} MB): status {row['status']} in "
                f"{row['seconds']} s, worker peak {row['worker_peak_rss_mb']} MB "
                f"(before {row['worker_rss_before_mb']} MB)"
            )
    return rows


def folder_entries(folder: Path) -> list[dict]:
    """What is in ``folder``: each entry's name and size in MB."""
    out = []
    for entry in sorted(folder.iterdir()):
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        out.append(
            {"name": entry.name, "mb": round(sum(f.stat().st_size for f in files) / 2**20, 1)}
        )
    return out


def send(client: httpx.Client, url: str, payload: tuple[str, str, bytes]) -> dict:
    kind, name, data = payload
    started = time.perf_counter()
    response = client.post(f"{url}/v1/predictions", files={"scan": (name, data)})
    seconds = time.perf_counter() - started
    qc = response.json().get("qc", {}).get("status") if response.status_code == 200 else None
    return {"kind": kind, "status": response.status_code, "seconds": seconds, "qc": qc}


def run_batch(url: str, token: str, payloads: list, concurrency: int) -> dict:
    """Send every payload with ``concurrency`` clients at once; latency and throughput."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(headers=headers, timeout=600) as client:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(lambda p: send(client, url, p), payloads))
        wall = time.perf_counter() - started
    latencies = np.array([r["seconds"] for r in results])
    by_kind = {
        kind: round(float(np.median([r["seconds"] for r in results if r["kind"] == kind])), 2)
        for kind in sorted({r["kind"] for r in results})
    }
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    return {
        "concurrency": concurrency,
        "n": len(results),
        "statuses": statuses,
        "qc": {q: sum(r["qc"] == q for r in results) for q in ("ok", "warning")},
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 2),
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 2),
        "latency_mean_s": round(statistics.fmean(latencies), 2),
        "latency_p50_by_kind_s": by_kind,
        "wall_s": round(wall, 1),
        "throughput_per_s": round(len(results) / wall, 3),
        "throughput_per_min": round(60 * len(results) / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running service; default: start one")
    parser.add_argument("--model", help="model to serve when starting one (default: newest)")
    parser.add_argument("--tracking-uri", help="MLflow backend when starting one")
    parser.add_argument("--scans", type=Path, default=DEFAULT_SCANS, help="folder of OBJ scans")
    parser.add_argument("--n", type=int, default=20, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--memory-at",
        type=int,
        nargs="*",
        default=[],
        help="request counts at which to record server and worker memory, e.g. 0 100 300 500",
    )
    parser.add_argument(
        "--worst", action="store_true", help="also send the worst legal inputs (peak memory)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    payloads = make_payloads(args.scans, args.n)
    process = None
    if args.url:
        url, token = args.url.rstrip("/"), os.environ.get("FACE_HEALTH_API_TOKEN", "")
    else:
        token = secrets.token_urlsafe(24)
        scratch = Path(tempfile.mkdtemp(prefix="serving_bench_"))
        log, server_tmp = scratch / "server.log", scratch / "server_tmp"
        server_tmp.mkdir()
        print(f"server log: {log}")
        process, url = start_server(args.model, args.tracking_uri, token, log, server_tmp)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        model = httpx.get(f"{url}/v1/model", headers=headers, timeout=30).json()
        warm = send(httpx.Client(headers=headers, timeout=600), url, payloads[0])
        print(f"warm-up: status {warm['status']} in {warm['seconds']:.1f} s")
        levels = []
        for concurrency in args.concurrency:
            result = run_batch(url, token, payloads, concurrency)
            levels.append(result)
            print(
                f"concurrency {concurrency}: n={result['n']} statuses={result['statuses']} "
                f"p50={result['latency_p50_s']} s p95={result['latency_p95_s']} s "
                f"throughput={result['throughput_per_min']} scans/min"
            )
        memory = []
        if args.memory_at:
            if process is None:
                print("--memory-at needs the benchmark to start the server (no --url)")
            else:
                memory = memory_run(url, token, payloads, process.pid, args.memory_at)
        worst = []
        if args.worst and process is not None:
            worst = worst_run(url, token, process.pid, scratch / "worst")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=60)
    temp_left = folder_entries(server_tmp) if process is not None else None
    if temp_left is not None:
        print(f"left in the server's TMPDIR after it stopped: {temp_left or 'nothing'}")
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "model": {k: model.get(k) for k in ("uri", "run_id", "run_name", "start_time", "tags")},
        "payloads": {
            kind: {
                "n": sum(p[0] == kind for p in payloads),
                "mean_mb": round(
                    statistics.fmean(len(p[2]) for p in payloads if p[0] == kind) / 2**20, 2
                ),
            }
            for kind in sorted({p[0] for p in payloads})
        },
        "warm_up_s": round(warm["seconds"], 2),
        "levels": levels,
        "memory": memory,
        "worst_legal_inputs": worst,
        "temp_left": temp_left,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
