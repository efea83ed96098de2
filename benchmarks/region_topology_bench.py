"""Benchmark: should the 20 regions move to the fitted model's topology?

Run by hand (not in CI):

    .venv/bin/python benchmarks/region_topology_bench.py --cohort /tmp/lmtrain --limit 15

For each scan of the validation split and a second sampling of the same surface (the scan
decimated to 55 % of its vertices, as a rescan on another scanner would sample it), the
regions are made twice:

- on the scan: landmark cycles cut along shortest paths on the scan's own graph (the
  pipeline's way, ``regions.segment_regions``), from the fitted landmarks;
- on the fitted model: the same landmark cycles cut once on the model's mean face, carried
  to every fit by its fixed topology (``fitted.model_face_regions``);
- transferred: each scan triangle takes the region of the fitted model's nearest triangle
  (within 3 mm), so the scan keeps its own resolution (texture, curvature) and the model's
  boundaries.

Repeatability is the relative difference of each region's area between the two samplings
(mean over regions and scans); a smaller one means region features that depend less on how
the scanner sampled the face. Also: the areas' agreement between the two ways, and time.
Results go to ``benchmarks/results/region_topology.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from face_health import schema  # noqa: E402
from face_health.alignment.similarity import landmark_frame  # noqa: E402
from face_health.face_model import load_face_model  # noqa: E402
from face_health.ingest.clinical import read_clinical, validate_clinical  # noqa: E402
from face_health.ingest.decimation import decimate  # noqa: E402
from face_health.ingest.scan import ingest_scan  # noqa: E402
from face_health.ingest.splits import make_splits, subjects_in  # noqa: E402
from face_health.landmarks.detector import LandmarkDetector  # noqa: E402
from face_health.landmarks.fitted import fitted_landmarks, model_face_regions  # noqa: E402
from face_health.omics.regions import segment_regions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
K = len(schema.REGIONS)


def areas(labels: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    ok = labels >= 0
    return np.bincount(labels[ok], weights=mesh.area_faces[ok], minlength=K)


def both_ways(mesh: trimesh.Trimesh, detector: LandmarkDetector) -> tuple[np.ndarray, ...]:
    cnn = detector.detect(mesh)
    table, fit = fitted_landmarks(mesh, cnn)
    points = dict(zip(table["name"], table[["x", "y", "z"]].to_numpy(float), strict=True))
    frame = landmark_frame(points)
    aligned = mesh.copy()
    aligned.apply_transform(frame)
    local = {n: frame[:3, :3] @ p + frame[:3, 3] for n, p in points.items()}
    t0 = time.perf_counter()
    on_scan = areas(segment_regions(aligned, local).labels, aligned)
    t1 = time.perf_counter()
    fitted = trimesh.Trimesh(fit.vertices, load_face_model().faces, process=False)
    on_model = areas(model_face_regions(), fitted)
    t2 = time.perf_counter()
    distance, nearest = cKDTree(fitted.triangles_center).query(mesh.triangles_center)
    labels = np.where(distance < 3.0, model_face_regions()[nearest], -1)
    transferred = areas(labels, mesh)
    t3 = time.perf_counter()
    return on_scan, on_model, transferred, np.array([t1 - t0, t2 - t1, t3 - t2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=Path("/tmp/lmtrain"))
    parser.add_argument("--split", default="validation")
    parser.add_argument("--limit", type=int, default=15)
    args = parser.parse_args()
    clinical, _ = validate_clinical(read_clinical(args.cohort / "clinical.csv"))
    subjects = subjects_in(make_splits(clinical, seed=0), args.split)[: args.limit]
    detector = LandmarkDetector.from_checkpoint()
    change = {"scan": [], "model": [], "transferred": []}
    agreement, seconds = [], []
    for sid in subjects:
        mesh, _ = ingest_scan(args.cohort / "scans" / f"{sid}.obj", sid)
        rescan = decimate(mesh, int(0.55 * len(mesh.vertices)))
        first, second = both_ways(mesh, detector), both_ways(rescan, detector)
        for i, way in enumerate(change):
            a, b = first[i], second[i]
            change[way].append(np.abs(a - b) / np.maximum((a + b) / 2.0, 1e-9))
        agreement.append(np.abs(first[0] - first[1]) / np.maximum(first[1], 1e-9))
        seconds.append(first[3])
        print(
            f"{sid}: area change scan {change['scan'][-1].mean():.3f}, "
            f"model {change['model'][-1].mean():.3f}, "
            f"transferred {change['transferred'][-1].mean():.3f}",
            flush=True,
        )
    result = {
        "cohort": str(args.cohort),
        "split": args.split,
        "n_subjects": len(subjects),
        "rescan": "the scan decimated to 55 % of its vertices",
        "area_change_between_samplings": {
            way: {
                "mean": round(float(np.mean(v)), 4),
                "per_region": dict(
                    zip(schema.REGIONS, np.mean(v, axis=0).round(4).tolist(), strict=True)
                ),
            }
            for way, v in change.items()
        },
        "scan_vs_model_area_difference": round(float(np.mean(agreement)), 4),
        "seconds": dict(zip(change, np.mean(seconds, axis=0).round(4).tolist(), strict=True)),
    }
    out = ROOT / "benchmarks/results/region_topology.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "area_change_between_samplings"}))
    print({w: v["mean"] for w, v in result["area_change_between_samplings"].items()})


if __name__ == "__main__":
    main()
