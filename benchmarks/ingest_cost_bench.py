"""What the worst legal scan costs to ingest, and what the limits refuse (issue 14, part 2).

The ``ingest`` limits of ``conf/base/parameters_data_engineering.yml`` (``max_file_mb``,
``max_texture_pixels``, ``texture_working_size``, ``max_vertices``) bound one scan's cost for
every entry point. This generates the inputs at and just over them, and ingests each in a
fresh subprocess with the project's ``ingest`` settings (``ingest_scan``, as ``check-scan``,
the pipeline's node and the service run it), measuring wall time and peak resident memory
(``resource.getrusage``: the child's ``ru_maxrss``; ``baseline_mb`` is the RSS after its
imports, so ``added_mb`` is what the scan itself cost).

Cases:

* ``texture_under_cap``: a small face with a PNG texture one row under the pixel cap
  (decoded, then downsampled to the working size);
* ``texture_over_cap``: the same one row over it (refused from the header);
* ``obj_at_budget``: an OBJ with UV at ``max_vertices`` vertices;
* ``obj_near_file_limit``: the largest OBJ under ``max_file_mb`` (decimated to the budget
  before cleaning);
* ``ply_near_file_limit``: the largest binary PLY with vertex colours under ``max_file_mb``
  (the most vertices a legal file can hold);
* ``obj_over_file_limit``: just over ``max_file_mb`` (refused unread).

Usage::

    .venv/bin/python benchmarks/ingest_cost_bench.py            # writes results/ingest_cost.json
    .venv/bin/python benchmarks/ingest_cost_bench.py --cases texture_under_cap obj_at_budget
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ingest_cost.json"

#: The child: imports, then one ingest_scan with the project's settings, then its numbers.
CHILD = r"""
import json, resource, sys, time
from face_health.config import base_section
from face_health.ingest.scan import ingest_scan
kwargs = base_section("ingest").as_kwargs()
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
mesh, record = ingest_scan(sys.argv[1], "bench", **kwargs)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({
    "status": record["status"], "reason": record["reason"],
    "n_vertices_raw": int(record["n_vertices_raw"]), "n_vertices": int(record["n_vertices"]),
    "seconds": round(seconds, 2), "baseline_mb": round(baseline), "peak_mb": round(peak),
    "added_mb": round(peak - baseline),
}))
"""


def write_grid_obj(path: Path, n_side: int, texture: str | None = None) -> None:
    """An ``n_side`` x ``n_side`` face-sized grid (150 x 200 mm) with UV; MTL when ``texture``."""
    i, j = np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij")
    u, v = i.ravel() / (n_side - 1), j.ravel() / (n_side - 1)
    z = 40 * np.exp(-((u - 0.5) ** 2 + (v - 0.5) ** 2) * 6)
    idx = (i * n_side + j)[:-1, :-1].ravel() + 1
    a, b, c, d = idx, idx + n_side, idx + n_side + 1, idx + 1
    with path.open("w") as file:
        if texture:
            file.write(f"mtllib {path.stem}.mtl\n")
        np.savetxt(file, np.c_[(u - 0.5) * 150, (v - 0.5) * 200, z], fmt="v %.4f %.4f %.4f")
        np.savetxt(file, np.c_[u, v], fmt="vt %.5f %.5f")
        if texture:
            file.write("usemtl skin\n")
        faces = np.r_[np.c_[a, a, b, b, c, c], np.c_[a, a, c, c, d, d]]
        np.savetxt(file, faces, fmt="f %d/%d %d/%d %d/%d")
    if texture:
        (path.parent / f"{path.stem}.mtl").write_text(f"newmtl skin\nKd 1 1 1\nmap_Kd {texture}\n")


def write_grid_ply(path: Path, n_side: int) -> None:
    """A binary PLY grid with vertex colours (float32 xyz, uchar rgb, uchar + int32 faces)."""
    i, j = np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij")
    u, v = i.ravel() / (n_side - 1), j.ravel() / (n_side - 1)
    z = 40 * np.exp(-((u - 0.5) ** 2 + (v - 0.5) ** 2) * 6)
    vertex = np.zeros(
        len(u),
        dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")],
    )
    vertex["x"], vertex["y"], vertex["z"] = (u - 0.5) * 150, (v - 0.5) * 200, z
    vertex["r"], vertex["g"], vertex["b"] = 200, 150, 120
    idx = (i * n_side + j)[:-1, :-1].ravel()
    a, b, c, d = idx, idx + n_side, idx + n_side + 1, idx + 1
    corners = np.r_[np.c_[a, b, c], np.c_[a, c, d]]
    face = np.zeros(len(corners), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face["n"], face["i"] = 3, corners
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertex)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {len(face)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    with path.open("wb") as file:
        file.write(header.encode())
        file.write(vertex.tobytes())
        file.write(face.tobytes())


def largest_side(bytes_per_vertex: float, limit_bytes: float) -> int:
    """Grid side whose file is just under ``limit_bytes`` (estimated, then checked)."""
    return int(math.sqrt(limit_bytes / bytes_per_vertex))


def make_case(name: str, folder: Path, limits) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cap, limit = limits.max_texture_pixels, limits.max_file_bytes
    if name in ("texture_under_cap", "texture_over_cap"):
        width = 8000
        height = cap // width + (1 if name == "texture_over_cap" else 0)
        Image.new("RGB", (width, height), (190, 150, 130)).save(
            folder / "face.png", compress_level=1
        )
        write_grid_obj(folder / "face.obj", 60, texture="face.png")
        return folder / "face.obj"
    if name.startswith("obj_"):  # textured like a scan (a 2048 px image), so QC can pass
        rng = np.random.default_rng(0)
        pixels = rng.integers(90, 220, (2048, 2048, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "face.png", compress_level=1)
    if name == "obj_at_budget":
        write_grid_obj(folder / "face.obj", int(math.sqrt(limits.max_vertices)), "face.png")
        return folder / "face.obj"
    if name in ("obj_near_file_limit", "obj_over_file_limit"):
        side = largest_side(130.0, limit * (0.97 if name == "obj_near_file_limit" else 1.03))
        path = folder / "face.obj"
        write_grid_obj(path, side, "face.png")
        while name == "obj_near_file_limit" and path.stat().st_size > limit:
            side = int(side * 0.98)
            write_grid_obj(path, side, "face.png")
        while name == "obj_over_file_limit" and path.stat().st_size <= limit:
            side = int(side * 1.02) + 1
            write_grid_obj(path, side, "face.png")
        return path
    if name == "ply_near_file_limit":
        side = int(math.sqrt(limit / (15 + 2 * 13))) - 1
        write_grid_ply(folder / "face.ply", side)
        return folder / "face.ply"
    raise ValueError(f"unknown case {name!r}")


CASES = (
    "texture_under_cap",
    "texture_over_cap",
    "obj_at_budget",
    "obj_near_file_limit",
    "ply_near_file_limit",
    "obj_over_file_limit",
)


def run_case(path: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=1200,
    )  # fmt: skip
    if result.returncode != 0:
        return {"status": "crashed", "reason": result.stderr[-2000:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", type=Path, default=None, help="keep the inputs in this folder")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from face_health.config import base_section

    settings = base_section("ingest")
    limits = settings.limits()
    work = args.keep or Path(tempfile.mkdtemp(prefix="ingest_cost_"))
    results = {}
    try:
        for name in args.cases:
            folder = work / name
            started = time.perf_counter()
            path = make_case(name, folder, limits)
            made = time.perf_counter() - started
            sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
            row = {"input": {"files_mb": {k: round(v / 2**20, 1) for k, v in sizes.items()}}}
            if name.startswith("texture"):
                with Image.open(folder / "face.png") as image:
                    row["input"]["texture_px"] = list(image.size)
            row.update(run_case(path))
            results[name] = row
            print(f"{name}: {json.dumps(row)} (inputs made in {made:.0f} s)", flush=True)
            if args.keep is None:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    out = {
        "limits": {
            k: v for k, v in settings.to_parameters().items() if k.startswith(("max_", "texture"))
        },
        "vertex_budget": settings.vertex_budget,
        "machine": f"{platform.machine()}, {platform.python_version()}, shared 2-core CPU",
        "cases": results,
        "worst_legal_peak_mb": max(
            (r.get("peak_mb", 0) for r in results.values() if r.get("status") != "failed"),
            default=None,
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if previous.get("cases") and set(args.cases) != set(CASES):
        out["cases"] = {**previous["cases"], **results}
        out["worst_legal_peak_mb"] = max(
            (r.get("peak_mb", 0) for r in out["cases"].values() if r.get("status") != "failed"),
            default=None,
        )
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
