"""How far a trained model's predictions move under surface noise below the ingest thresholds.

Ingest warns when a scan's ``surface_noise_deg`` (the median angle between neighbouring
triangles' normals, :mod:`face_health.ingest.surface`) exceeds
``ingest.warn_surface_noise_deg`` and fails it above ``ingest.max_surface_noise_deg``; this
measures what noise that passes those thresholds does to the predictions. ``--n`` new
subjects of a seed no cohort uses (31337; simulated into a temporary folder with the settings
of the model's training cohort, as ``ood_bench.py`` does: never the training cohort's test
split) are scored (``ScanScorer.score``) with their vertices displaced along the vertex normals
by Gaussian noise of each ``--sigmas`` (mm; the same noise pattern per subject, scaled). Only
the ``v`` lines of each OBJ are rewritten (faces, UVs, material and texture stay; the raw
file is never touched); sigma 0 is the clean reference, rewritten the same way. The simulated
scans already carry scanner noise of 0.1-0.3 mm (``ScannerSettings.noise_sd_mm``): the added
noise comes on top of it.

Per sigma: ``surface_noise_deg`` as ingest measures it (``ScanScorer.ingest``), QC status
counts, ``ood_score`` median / max, and for each target the median and max of
``|prediction - clean prediction|`` (target units; probabilities for the binary targets).
The model logs no validation error per target (only test metrics, which are not used here),
so the drift is in target units; for scale, the error of the clean predictions on these
``--n`` new subjects against their simulated labels is given beside it (few subjects: a rough
scale only). Prints a table and writes ``benchmarks/results/noise_drift.json``. Usage (in the
project, after training)::

    .venv/bin/python benchmarks/noise_drift_bench.py --model face_health@newest --n 12
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import trimesh  # noqa: E402

from face_health import schema  # noqa: E402
from face_health.quiet import silence_known_library_noise  # noqa: E402
from face_health.serving.scorer import load_scorer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ood_bench import SEED, _clean, real_scan_files, simulate_heldout  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (0.0, 0.1, 0.2, 0.3, 0.5)
#: Columns of the printed summary table (regression targets; the binaries as one column).
SHOWN = ("age", "weight", "height", "bmi")


def material_files(obj: Path) -> list[Path]:
    """The files an OBJ needs beside it: its ``mtllib`` files and the maps they name."""
    needed: list[Path] = []
    for line in obj.read_text().splitlines():
        if line.startswith("mtllib "):
            mtl = obj.parent / line.split(maxsplit=1)[1].strip()
            needed.append(mtl)
            for entry in mtl.read_text().splitlines():
                if entry.strip().startswith("map_"):
                    needed.append(mtl.parent / entry.split()[-1])
    return needed


class NoisyScan:
    """One OBJ scan and its vertex normals; writes copies with noise along the normals.

    Only the ``v`` lines are rewritten, in order, so faces, UVs and the material stay
    exactly as in the source; the material files are copied beside the copies."""

    def __init__(self, obj: Path, out_dir: Path, seed: int, mm_per_unit: float) -> None:
        self.lines = obj.read_text().splitlines(keepends=True)
        self.v_rows = [i for i, line in enumerate(self.lines) if line.startswith("v ")]
        mesh = trimesh.load(obj, process=False, maintain_order=True)
        if len(mesh.vertices) != len(self.v_rows):
            raise RuntimeError(
                f"{obj}: trimesh read {len(mesh.vertices)} vertices, the file has "
                f"{len(self.v_rows)} v lines"
            )
        self.vertices = np.asarray(mesh.vertices, float)
        self.normals = np.asarray(mesh.vertex_normals, float)
        self.unit_noise = np.random.default_rng(seed).standard_normal(len(self.vertices))
        self.mm_per_unit = mm_per_unit
        self.out_dir = out_dir
        self.stem = obj.stem
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in material_files(obj):
            shutil.copy2(path, out_dir / path.name)

    def write(self, sigma_mm: float) -> Path:
        """``<out_dir>/<stem>_sigma<sigma>.obj``: vertices moved by ``sigma_mm`` * N(0, 1)
        along their normals (the same draw for every sigma)."""
        shift = (sigma_mm / self.mm_per_unit) * self.unit_noise
        moved = self.vertices + shift[:, None] * self.normals
        lines = list(self.lines)
        for row, (x, y, z) in zip(self.v_rows, moved, strict=True):
            lines[row] = f"v {x:.4f} {y:.4f} {z:.4f}\n"
        path = self.out_dir / f"{self.stem}_sigma{sigma_mm:.2f}.obj"
        path.write_text("".join(lines))
        return path


def _spread(values: list[float]) -> dict[str, float] | None:
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if not len(a):
        return None
    return {"median": float(np.median(a)), "max": float(a.max()), "n": int(len(a))}


def summarise(rows: list[dict[str, Any]], clean: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One sigma's rows against the clean rows of the same subjects."""
    statuses = [r["qc_status"] for r in rows]
    out: dict[str, Any] = {
        "n": len(rows),
        "qc": {s: statuses.count(s) for s in ("ok", "warning", "failed")},
        "n_ood_flagged": sum(bool(r.get("ood_flag")) for r in rows),
        "surface_noise_deg": _spread([r["surface_noise_deg"] for r in rows]),
        "ood_score": _spread([r.get("ood_score") for r in rows]),
        "seconds": _spread([r["seconds"] for r in rows]),
        "qc_reasons": sorted({r["qc_reason"] for r in rows if r["qc_reason"]}),
    }
    drift: dict[str, Any] = {}
    for target in schema.TARGET_NAMES:
        diffs = [
            abs(r[target] - clean[r["subject_id"]][target])
            for r in rows
            if r.get(target) is not None and clean[r["subject_id"]].get(target) is not None
        ]
        drift[target] = _spread(diffs)
    out["abs_drift"] = drift
    return out


def clean_error(clean: dict[str, dict[str, Any]], labels: pd.DataFrame) -> dict[str, Any]:
    """Mean absolute error of the clean predictions against the simulated labels of these
    new subjects, per regression target (a rough scale for the drift: few subjects)."""
    truth = labels.set_index(schema.ID_COLUMN)
    out = {}
    for target in schema.REGRESSION_TARGETS:
        errors = [
            abs(record[target] - float(truth.loc[sid, target]))
            for sid, record in clean.items()
            if record.get(target) is not None and np.isfinite(truth.loc[sid, target])
        ]
        out[target] = {"mae": float(np.mean(errors)), "n": len(errors)} if errors else None
    return out


def print_table(summary: dict[str, Any], reference: dict[str, Any]) -> None:
    head = (
        f"{'sigma mm':>8} {'noise deg med (max)':>19} {'ok/warn/fail':>12} "
        f"{'ood med/max':>11} "
        + " ".join(f"{'|d ' + t + '|':>10}" for t in SHOWN)
        + f" {'|d p| med/max':>13}"
    )
    print(head)
    for key, s in summary.items():
        noise = s["surface_noise_deg"]
        ood = s["ood_score"]
        qc = s["qc"]
        cells = [
            f"{float(key):8.2f}",
            f"{noise['median']:10.1f} ({noise['max']:5.1f})" if noise else f"{'n/a':>19}",
            f"{qc['ok']:>4}/{qc['warning']}/{qc['failed']}".rjust(12),
            f"{ood['median']:5.2f}/{ood['max']:5.2f}" if ood else f"{'n/a':>11}",
        ]
        for t in SHOWN:
            d = s["abs_drift"][t]
            cells.append(f"{d['median']:10.2f}" if d else f"{'n/a':>10}")
        binary = [s["abs_drift"][t] for t in schema.BINARY_TARGETS if s["abs_drift"][t]]
        cells.append(
            f"{np.median([d['median'] for d in binary]):6.3f}/{max(d['max'] for d in binary):.3f}"
            if binary
            else f"{'n/a':>13}"
        )
        print(" ".join(cells))
    print("(|d p|: median over the binary targets of the median |change of probability|, max)")
    print("\nmedian |prediction - clean prediction| per regression target (target units)")
    print(f"{'target':<11} {'unit':<7} {'clean MAE*':>10} " + " ".join(f"{k:>7}" for k in summary))
    for t in schema.REGRESSION_TARGETS:
        ref = reference.get(t)
        cells = [f"{t:<11}", f"{schema.TARGET_BY_NAME[t].unit:<7}"]
        cells.append(f"{ref['mae']:10.3g}" if ref else f"{'n/a':>10}")
        for s in summary.values():
            d = s["abs_drift"][t]
            cells.append(f"{d['median']:7.3g}" if d else f"{'n/a':>7}")
        print(" ".join(cells))
    print("* clean MAE: the clean predictions' error on these new subjects (few: a rough scale)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="face_health@newest",
        help="a run id, face_health@newest, models:/ or runs:/ URI, or a model folder",
    )
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--n", type=int, default=12, help="new simulated subjects")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the simulated subjects")
    parser.add_argument(
        "--sigmas", type=float, nargs="+", default=list(SIGMAS), help="noise SD along normals, mm"
    )
    parser.add_argument("--jobs", type=int, default=2, help="simulation processes")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "noise_drift.json"
    )
    args = parser.parse_args()
    silence_known_library_noise()
    sigmas = sorted(set(args.sigmas) | {0.0})  # the clean reference is always scored

    try:
        scorer = load_scorer(args.model, args.tracking_uri)
    except LookupError as exc:
        sys.exit(f"error: {exc}")
    ingest = scorer.settings("ingest")
    thresholds = {
        "warn_surface_noise_deg": ingest.warn_surface_noise_deg,
        "max_surface_noise_deg": ingest.max_surface_noise_deg,
    }
    print(
        f"model {args.model} (run {scorer.run_id}); surface noise warns above "
        f"{thresholds['warn_surface_noise_deg']} deg, fails above "
        f"{thresholds['max_surface_noise_deg']} deg"
    )
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="noise_drift_bench_") as tmp:
        folder = Path(tmp) / "heldout"
        print(f"simulating {args.n} new subjects (seed {args.seed}) ...", flush=True)
        simulate_heldout(scorer, folder, args.n, args.seed, args.jobs)
        labels = pd.read_csv(folder / "clinical.csv")
        scans, _ = real_scan_files(folder / "scans")
        for index, (subject, obj) in enumerate(sorted(scans.items())):
            if obj.suffix.lower() != ".obj":
                sys.exit(f"error: {obj.name} is not an OBJ (the cohort's scan_format)")
            _, raw_qc = scorer.ingest(obj, subject)
            scan = NoisyScan(
                obj, Path(tmp) / "noisy" / subject, (args.seed, index), raw_qc["scale_to_mm"]
            )
            for sigma in sigmas:
                path = scan.write(sigma)
                _, qc = scorer.ingest(path, subject)  # what the thresholds compare
                record = scorer.score(path, subject)
                row = {
                    "subject_id": subject,
                    "sigma_mm": sigma,
                    "surface_noise_deg": qc["surface_noise_deg"],
                    "has_texture": bool(qc["has_texture"]),
                    "qc_status": record["qc_status"],
                    "qc_reason": record["qc_reason"],
                    "ood_score": record.get("ood_score"),
                    "ood_flag": record.get("ood_flag"),
                    **{t: record.get(t) for t in schema.TARGET_NAMES},
                    "seconds": record["seconds"],
                }
                rows.append(row)
                score, age = row["ood_score"], row["age"]
                print(
                    f"  {subject} sigma {sigma:4.2f} mm: noise {row['surface_noise_deg']:5.1f} "
                    f"deg, qc {row['qc_status']:<7} ood "
                    f"{'  n/a' if score is None else format(score, '5.2f')} age "
                    f"{'  n/a' if age is None else format(age, '5.1f')} "
                    f"({row['seconds']:.1f} s)",
                    flush=True,
                )
                if not row["has_texture"]:
                    sys.exit(f"error: {path.name} lost its texture; the material was not kept")

    clean = {r["subject_id"]: r for r in rows if r["sigma_mm"] == 0.0}
    summary = {
        f"{sigma:g}": summarise([r for r in rows if r["sigma_mm"] == sigma], clean)
        for sigma in sigmas
    }
    reference = clean_error(clean, labels)
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "model": args.model,
        "run_id": scorer.run_id,
        "n_subjects": args.n,
        "simulated_seed": args.seed,
        "sigmas_mm": sigmas,
        "thresholds": thresholds,
        "drift_units": (
            "target units (probabilities for the binary targets); the model logs no "
            "validation error per target and test metrics are not used, so no fraction of "
            "the model's error is given"
        ),
        "reference_clean_mae_new_subjects": reference,
        "seconds_total": round(time.perf_counter() - started, 1),
        "per_sigma": summary,
        "scans": rows,
    }
    print("\nsummary")
    print_table(summary, reference)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_clean(results), indent=2, default=str) + "\n")
    print(f"wrote {args.out} ({results['seconds_total']:.0f} s)")


if __name__ == "__main__":
    main()
