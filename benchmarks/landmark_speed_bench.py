"""Benchmark: what the landmark stage's speed settings cost in accuracy.

Run by hand (not in CI), after a default run (which writes the cohort):

    .venv/bin/python benchmarks/landmark_speed_bench.py --cohort data/01_raw/synthetic_cohort

On the VALIDATION subjects of the cohort (the pipeline's split, seed 0; the choice is made
here, never on the test split) the whole landmark stage (``detector.detect_one``: CNN, then
the model fit, one torch thread as in the pipeline's workers) runs once per variant of
``DetectorSettings``: pyrender's 4x multisampling on or off, the network in float32 or in
NHWC memory under bfloat16 autocast, one decimation pass for the rendered copy. Reported per
variant: the fitted landmarks' error against the simulator's exact landmarks (mean, median,
95th percentile, max, mm), how far they moved from the baseline's (float32, multisampled,
4 passes), and the seconds per scan on one process.
Results go to ``benchmarks/results/landmark_speed.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import landmark_fit_bench  # noqa: E402  (beside this file: the fit benchmark's summaries)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from face_health import schema  # noqa: E402
from face_health.config import base_section  # noqa: E402
from face_health.ingest.clinical import read_clinical, validate_clinical  # noqa: E402
from face_health.ingest.scan import ingest_scan  # noqa: E402
from face_health.ingest.splits import make_splits, subjects_in  # noqa: E402
from face_health.landmarks.detector import LandmarkDetector, detect_one  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(schema.LANDMARK_NAMES)
VARIANTS = {  # the first is the baseline the others are compared with
    "fp32_msaa": {"antialias": True, "bf16": False, "render_passes": 4},
    "fp32_single": {"antialias": False, "bf16": False, "render_passes": 4},
    "bf16_msaa": {"antialias": True, "bf16": True, "render_passes": 4},
    "bf16_single": {"antialias": False, "bf16": True, "render_passes": 4},
    "bf16_single_1pass": {"antialias": False, "bf16": True, "render_passes": 1},  # default
    # fewer views, on top of the default: coarse without the pitched pair, fine without the
    # two widest yaws, fine without the four diagonals
    "coarse3": {"coarse_views": ((0, 0), (-35, 0), (35, 0))},
    "fine9": {"fine_views": ((0, 0), (-25, 0), (25, 0), (0, -20), (0, 20),
                             (-30, -20), (30, -20), (-30, 20), (30, 20))},
    "fine7": {"fine_views": ((0, 0), (-25, 0), (25, 0), (-50, 0), (50, 0), (0, -20), (0, 20))},
}  # fmt: skip


def _xyz(table: pd.DataFrame) -> np.ndarray:
    return landmark_fit_bench._xyz(table, NAMES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=ROOT / "data/01_raw/synthetic_cohort")
    parser.add_argument("--limit", type=int, default=20, help="validation subjects used")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/landmark_speed.json")
    args = parser.parse_args()

    clinical, _ = validate_clinical(read_clinical(args.cohort / "clinical.csv"))
    subjects = subjects_in(make_splits(clinical, seed=0), "validation")[: args.limit]
    settings = base_section("landmarks")
    meshes = {s: ingest_scan(args.cohort / "scans" / f"{s}.obj", s)[0] for s in subjects}
    truth = {s: _xyz(pd.read_csv(args.cohort / "landmarks" / f"{s}.csv")) for s in subjects}
    found: dict[str, dict[str, np.ndarray]] = {}
    out: dict = {"cohort": str(args.cohort), "split": "validation", "n_subjects": len(subjects)}
    if args.out.exists():  # variants run before are kept
        out = {**json.loads(args.out.read_text()), **out}
    variants = ["fp32_msaa"] + [v for v in args.variants if v != "fp32_msaa"]
    for name in variants:
        options = VARIANTS[name]
        detector = LandmarkDetector.from_checkpoint()
        detector.settings = dataclasses.replace(detector.settings, **options)
        detect_one(meshes[subjects[0]], detector, settings)  # warm: contexts, first batch
        found[name], seconds = {}, []
        for sid, mesh in meshes.items():
            t0 = time.perf_counter()
            table, _, _ = detect_one(mesh, detector, settings)
            seconds.append(time.perf_counter() - t0)
            found[name][sid] = _xyz(table)
        errors = np.stack([np.linalg.norm(found[name][s] - truth[s], axis=1) for s in subjects])
        moved = np.stack(
            [np.linalg.norm(found[name][s] - found["fp32_msaa"][s], axis=1) for s in subjects]
        )
        out[name] = {
            **options,
            "error": landmark_fit_bench._summary(errors.ravel()),
            "moved_from_fp32_msaa": landmark_fit_bench._summary(moved.ravel()),
            "seconds_per_scan": round(float(np.mean(seconds)), 3),
        }
        print(name, json.dumps(out[name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
