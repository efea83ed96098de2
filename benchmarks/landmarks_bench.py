"""Benchmark: landmark accuracy and the seconds per scan of landmarks, alignment and views.

Run by hand (not in CI):

    .venv/bin/python benchmarks/landmarks_bench.py --cohort data/01_raw/synthetic_cohort

- Synthetic: the held-out test split of a simulated cohort (the pipeline's split: stratified,
  seed 0), detected landmarks against the simulator's exact ones, in mm.
- Real: ``../shared/real_scans/demoface`` against its 5 reference points (no tuning to it),
  and ``lee_perry_smith`` shown in a picture.
- Speed: seconds per scan on this machine for landmarking, alignment + crop, and the 13
  directional views, one scan at a time on one process.

Results go to ``benchmarks/results/landmarks.json`` and the picture of the real scans to
``docs/images/landmarks_real_scans.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from face_health import schema  # noqa: E402
from face_health.alignment.similarity import (  # noqa: E402
    align_to_template,
    build_template,
    crop_to_box,
    face_box,
    landmark_frame,
)
from face_health.config import base_section  # noqa: E402
from face_health.ingest.clinical import read_clinical, validate_clinical  # noqa: E402
from face_health.ingest.scan import ingest_scan  # noqa: E402
from face_health.ingest.splits import make_splits, subjects_in  # noqa: E402
from face_health.landmarks.detector import LandmarkDetector  # noqa: E402
from face_health.views.rendering import FaceRenderer, OrthoRenderer, render_directional_views  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real_scans"
DEMOFACE_POINTS = ["en_r", "en_l", "prn", "ch_r", "ch_l"]


def _summary(errors: np.ndarray) -> dict[str, float]:
    e = errors[np.isfinite(errors)]
    return {
        "mean_mm": round(float(e.mean()), 3),
        "median_mm": round(float(np.median(e)), 3),
        "p95_mm": round(float(np.percentile(e, 95)), 3),
        "n": int(e.size),
    }


def synthetic(cohort: Path, detector: LandmarkDetector, limit: int | None) -> dict:
    clinical, _ = validate_clinical(read_clinical(cohort / "clinical.csv"))
    splits = make_splits(clinical, seed=0)
    test = subjects_in(splits, "test")[:limit]
    train = subjects_in(splits, "train")[:40]
    names = list(schema.LANDMARK_NAMES)

    truth_train = {
        s: pd.read_csv(cohort / "landmarks" / f"{s}.csv").set_index("name")[["x", "y", "z"]]
        for s in train
    }
    template = build_template(
        {s: {n: t.loc[n].to_numpy(float) for n in names} for s, t in truth_train.items()}, names
    )
    lower, upper = face_box(template)

    errors, timing = [], {"landmarks": [], "alignment": [], "views": []}
    renderer = OrthoRenderer(detector.input_size)
    for sid in test:
        mesh, qc = ingest_scan(cohort / "scans" / f"{sid}.obj", sid)
        t0 = time.perf_counter()
        table = detector.detect(mesh, renderer)
        t1 = time.perf_counter()
        found = table.set_index("name")[["x", "y", "z"]]
        fit = align_to_template({n: found.loc[n].to_numpy(float) for n in names}, template)
        aligned = mesh.copy()
        aligned.apply_transform(fit["matrix"])
        aligned = crop_to_box(aligned, lower, upper)
        t2 = time.perf_counter()
        render_directional_views(aligned, base_section("views", image_size=112))
        t3 = time.perf_counter()
        truth = pd.read_csv(cohort / "landmarks" / f"{sid}.csv").set_index("name")
        diff = found.loc[names].to_numpy(float) - truth.loc[names, ["x", "y", "z"]].to_numpy()
        errors.append(np.linalg.norm(diff, axis=1))
        timing["landmarks"].append(t1 - t0)
        timing["alignment"].append(t2 - t1)
        timing["views"].append(t3 - t2)
        print(f"{sid}: mean {errors[-1].mean():.2f} mm, {t1 - t0:.2f} s", flush=True)
    renderer.close()
    errors = np.array(errors)
    per_landmark = {n: _summary(errors[:, i]) for i, n in enumerate(names)}
    return {
        "cohort": str(cohort),
        "n_test_subjects": len(test),
        "overall": _summary(errors.ravel()),
        "per_landmark": per_landmark,
        "seconds_per_scan": {k: round(float(np.mean(v)), 3) for k, v in timing.items()},
    }


def real_scans(detector: LandmarkDetector) -> tuple[dict, dict[str, tuple]]:
    results, shown = {}, {}
    demo = REAL / "demoface"
    if demo.is_dir():
        mesh, qc = ingest_scan(demo / "DemoFace_10K.obj", "demoface")
        table = detector.detect(mesh).set_index("name")
        reference = np.loadtxt(demo / "DemoFaceLandmarks.csv", delimiter=",", ndmin=2)
        reference = reference[:, -3:] * qc["scale_to_mm"]
        found = table.loc[DEMOFACE_POINTS, ["x", "y", "z"]].to_numpy(float)
        err = np.linalg.norm(found - reference, axis=1)
        results["demoface"] = {
            "per_point_mm": dict(zip(DEMOFACE_POINTS, err.round(2).tolist(), strict=True)),
            **_summary(err),
        }
        shown["demoface"] = (mesh, table, reference)
    lps = REAL / "lee_perry_smith"
    if lps.is_dir():
        mesh, qc = ingest_scan(lps / "LeePerrySmith.glb", "lee_perry_smith")
        table = detector.detect(mesh).set_index("name")
        results["lee_perry_smith"] = {
            "units_inferred": qc["units_inferred"],
            "mean_confidence": round(float(table["confidence"].mean()), 3),
            "landmarks_placed": int((table["status"] == "ok").sum()),
        }
        shown["lee_perry_smith"] = (mesh, table, None)
    return results, shown


def picture(shown: dict[str, tuple], out: Path) -> None:
    fig, axes = plt.subplots(1, len(shown), figsize=(6 * len(shown), 6.4), squeeze=False)
    for ax, (name, (mesh, table, reference)) in zip(axes[0], shown.items(), strict=False):
        placed = table[table["status"] == "ok"]
        pts = {n: placed.loc[n, ["x", "y", "z"]].to_numpy(float) for n in placed.index}
        frame = landmark_frame(pts)
        frontal = mesh.copy()
        frontal.apply_transform(frame)
        # Frame every face at the same size in the picture, whatever its units.
        size = np.linalg.norm(pts["ex_l"] - pts["ex_r"]) / 90.0
        frontal.apply_scale(1.0 / size)
        frame = np.diag([1 / size] * 3 + [1.0]) @ frame
        centre = np.array([0.0, 15.0, -40.0])
        found = np.array(list(pts.values()))
        marks = {"found": found} if reference is None else {"found": found, "reference": reference}
        with FaceRenderer(480, distance_mm=420.0, background=(1, 1, 1)) as renderer:
            colour, _ = renderer.render(frontal, [(0.0, 0.0)], centre=centre)
            pixels = {
                k: renderer.project(v @ frame[:3, :3].T + frame[:3, 3], (0.0, 0.0), centre)
                for k, v in marks.items()
            }
        ax.imshow(colour[0])
        ax.scatter(*pixels["found"].T, s=14, c="tab:red", label="found")
        if "reference" in pixels:
            ax.scatter(
                *pixels["reference"].T,
                s=60,
                facecolors="none",
                edgecolors="tab:blue",
                label="reference",
            )
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title(name)
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=ROOT / "data/01_raw/synthetic_cohort")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="at most this many test scans")
    parser.add_argument("--real-only", action="store_true", help="only the two real scans")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/landmarks.json")
    args = parser.parse_args()
    detector = LandmarkDetector.from_checkpoint(args.checkpoint)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.real_only:
        result = {"synthetic": previous.get("synthetic", {})}
    else:
        result = {"synthetic": synthetic(args.cohort, detector, args.limit)}
    real, shown = real_scans(detector)
    result["real"] = real
    if shown:
        picture(shown, ROOT / "docs/images/landmarks_real_scans.png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps({k: v for k, v in result["synthetic"].items() if k != "per_landmark"}, indent=2)
    )
    print(json.dumps(real, indent=2))


if __name__ == "__main__":
    main()
