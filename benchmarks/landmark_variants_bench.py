"""Compare landmark checkpoints and snapping modes on synthetic scans, plain and reshaped.

The choice of the shipped checkpoint and of the default snapping is made here, on synthetic
scans the networks never saw: the test split of the landmark training cohort (seed 1, not
the default run's cohort, whose test split is scored once for the README), as scanned, and
the same scans reshaped by random proportions, smooth warps and scanner noise
(``face_health.landmarks.views.REAL_SCAN_VARIETY``, a fixed seed per scan). ``demoface`` is
printed beside them as a held-out report and is never the criterion.

    .venv/bin/face-health simulate --n 300 --seed 1 --out /tmp/lmtrain --jobs 2
    .venv/bin/python benchmarks/landmark_variants_bench.py --cohort /tmp/lmtrain \\
        --checkpoints first.pt src/face_health/resources/landmarks_synthetic.pt [--n 20]

Results go to ``benchmarks/results/landmark_variants.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from face_health import schema  # noqa: E402
from face_health.alignment.similarity import landmark_frame  # noqa: E402
from face_health.ingest.clinical import read_clinical, validate_clinical  # noqa: E402
from face_health.ingest.scan import ingest_scan  # noqa: E402
from face_health.ingest.splits import make_splits, subjects_in  # noqa: E402
from face_health.landmarks.detector import LandmarkDetector  # noqa: E402
from face_health.landmarks.views import (  # noqa: E402
    REAL_SCAN_VARIETY,
    TrainingViewSettings,
    _reshaped,
)
from face_health.views.rendering import OrthoRenderer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMOFACE = ROOT.parent / "shared" / "real_scans" / "demoface"
DEMOFACE_POINTS = ["en_r", "en_l", "prn", "ch_r", "ch_l"]


def synthetic_cases(cohort: Path, n: int) -> dict[tuple[str, str], tuple]:
    """``(kind, subject) -> (mesh, truth)`` for the first ``n`` test subjects, plain and
    reshaped (spikes on every other scan)."""
    clinical, _ = validate_clinical(read_clinical(cohort / "clinical.csv"))
    test = subjects_in(make_splits(clinical, seed=0), "test")[:n]
    names = list(schema.LANDMARK_NAMES)
    variety = TrainingViewSettings(**{**REAL_SCAN_VARIETY, "spike_probability": 0.5})
    cases = {}
    for i, subject in enumerate(test):
        mesh, _ = ingest_scan(cohort / "scans" / f"{subject}.obj", subject)
        truth = pd.read_csv(cohort / "landmarks" / f"{subject}.csv").set_index("name")
        points = truth.loc[names, ["x", "y", "z"]].to_numpy(float)
        cases[("plain", subject)] = (mesh, points)
        frame = landmark_frame(dict(zip(names, points, strict=True)))
        rng = np.random.default_rng(10_000 + i)
        cases[("reshaped", subject)] = _reshaped(mesh, points, frame, rng, variety)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    parser.add_argument("--cohort", type=Path, default=ROOT / "data/01_raw/synthetic_cohort")
    parser.add_argument("--n", type=int, default=20, help="test subjects")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/landmark_variants.json"
    )
    args = parser.parse_args()
    names = list(schema.LANDMARK_NAMES)
    cases = synthetic_cases(args.cohort, args.n)
    demo = None
    if DEMOFACE.is_dir():
        mesh, qc = ingest_scan(DEMOFACE / "DemoFace_10K.obj", "demoface")
        reference = np.loadtxt(DEMOFACE / "DemoFaceLandmarks.csv", delimiter=",", ndmin=2)
        demo = (mesh, reference[:, -3:] * qc["scale_to_mm"])
    renderer = OrthoRenderer(128)
    results = []
    for checkpoint in args.checkpoints:
        base = LandmarkDetector.from_checkpoint(checkpoint)
        for snap in ("nearest", "rays"):
            detector = replace(base, settings=replace(base.settings, snap=snap))
            errors: dict[str, list] = {"plain": [], "reshaped": []}
            started = time.perf_counter()
            for (kind, _), (mesh, truth) in cases.items():
                table = detector.detect(mesh, renderer).set_index("name")
                found = table.loc[names, ["x", "y", "z"]].to_numpy(float)
                errors[kind].append(np.linalg.norm(found - truth, axis=1))
            row = {
                "checkpoint": str(checkpoint),
                "snap": snap,
                "seconds_per_scan": round((time.perf_counter() - started) / len(cases), 2),
            }
            for kind, values in errors.items():
                e = np.array(values)
                row[f"{kind}_mean_mm"] = round(float(np.nanmean(e)), 3)
                row[f"{kind}_p95_mm"] = round(float(np.nanpercentile(e, 95)), 2)
            row["criterion_mm"] = round(
                float(np.nanmean(np.r_[np.ravel(errors["plain"]), np.ravel(errors["reshaped"])])),
                3,
            )
            if demo is not None:
                table = detector.detect(demo[0], renderer).set_index("name")
                found = table.loc[DEMOFACE_POINTS, ["x", "y", "z"]].to_numpy(float)
                err = np.linalg.norm(found - demo[1], axis=1)
                row["demoface_mean_mm"] = round(float(err.mean()), 2)
                row["demoface_per_point_mm"] = dict(
                    zip(DEMOFACE_POINTS, err.round(2).tolist(), strict=True)
                )
            results.append(row)
            print(json.dumps(row), flush=True)
    renderer.close()
    best = min(results, key=lambda r: r["criterion_mm"])
    print(f"chosen on synthetic data: {best['checkpoint']} with snap={best['snap']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"n_test_subjects": args.n, "results": results, "chosen": best}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
