"""Out-of-distribution flags of a trained model: real scans vs held-out simulated subjects.

Scores with the logged model (``ScanScorer``; its ``ood_monitor`` fitted on the training
subjects, thresholds at the 99th percentile of the validation subjects) (a) the real scans in
``../shared/real_scans`` (each subject's one mesh file; skipped when the folder is absent)
and (b) ``--n`` new simulated subjects of a seed no cohort uses (31337; simulated into a
temporary folder with the settings of the model's training cohort). A model trained on the
synthetic cohort should flag the real scans and flag about 1-3 % of the simulated ones (two
feature spaces, each at its 99th percentile). ``--formats obj ply`` scores each simulated
subject also as a binary PLY with its texture sampled into vertex colours (what
``benchmarks/serving_bench.py`` uploads), a legitimate input the model never saw in training.

The score at which the service refuses to predict (``modelling.ood_refuse_score``) is derived
here, on the simulated subjects of seed 31337 only: where answers stop meaning anything. Each
PLY copy's regression answers are compared with its OBJ's (median over the targets of the
difference in units of the OBJ answers' mean absolute error on these subjects); the limit is
the ``ood_score`` at which an increasing (isotonic) fit of that drift reaches 1, the model's
own error, rounded down to a half. The real scans are reported beside it and never used to
choose it. Prints the rates, score distributions and the derived value and
writes them to ``benchmarks/results/ood.json``. Usage (in the project, after training)::

    .venv/bin/python benchmarks/ood_bench.py --model face_health@newest --n 20 --formats obj ply
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from face_health import schema  # noqa: E402
from face_health.ingest.scan import group_scan_files  # noqa: E402
from face_health.quiet import silence_known_library_noise  # noqa: E402
from face_health.serving.scorer import load_scorer  # noqa: E402
from face_health.synthetic import CohortSettings, ensure_cohort  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL_SCANS = ROOT.parent / "shared" / "real_scans"
SEED = 31337  # no cohort of the project uses it (default 20261126, tiny 7, landmarks 1, ...)
#: ``modelling.ood_refuse_score`` = ceil(REFUSE_MARGIN * the largest simulated score).
REFUSE_MARGIN = 1.5
FORMATS = ("obj", "ply")


def real_scan_files(folder: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """``subject -> mesh file`` of a folder of scans (one subject per file or subfolder, as
    the inference pipeline reads them), and the entries that hold no scan, with why."""
    listing = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]
    scans, rejected = group_scan_files(listing)
    return {s: folder / rel for s, rel in scans.items()}, rejected


def score_all(scorer: Any, scans: dict[str, Path], group: str) -> list[dict[str, Any]]:
    rows = []
    for subject, path in scans.items():
        started = time.perf_counter()
        record = scorer.score(path, subject)
        row = {
            "subject_id": subject,
            "file": path.name,
            "qc_status": record["qc_status"],
            "qc_reason": record["qc_reason"],
            "ood_score": record.get("ood_score"),
            "ood_flag": record.get("ood_flag"),
            **{
                k: v
                for k, v in record.items()
                if k.startswith("ood_") and k not in ("ood_score", "ood_flag")
            },
            "seconds": round(time.perf_counter() - started, 1),
            **{t: record.get(t) for t in schema.REGRESSION_TARGETS},
        }
        rows.append(row)
        score = row["ood_score"]
        shown = "not scored" if score is None else f"ood_score {score:6.2f} flag {row['ood_flag']}"
        print(f"  [{group}] {subject:<20} {shown:<32} qc {row['qc_status']}", flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Flag rate over the scored scans, and the scores' distribution."""
    scored = [r for r in rows if r["ood_score"] is not None and r["ood_flag"] is not None]
    scores = np.array([r["ood_score"] for r in scored], dtype=float)
    finite = scores[np.isfinite(scores)]
    out: dict[str, Any] = {
        "n": len(rows),
        "n_scored": len(scored),
        "n_failed_qc": sum(r["qc_status"] == "failed" for r in rows),
        "n_flagged": sum(bool(r["ood_flag"]) for r in scored),
        "flag_rate": (sum(bool(r["ood_flag"]) for r in scored) / len(scored)) if scored else None,
    }
    if len(finite):
        out["ood_score"] = {
            "min": float(finite.min()),
            "median": float(np.median(finite)),
            "p90": float(np.percentile(finite, 90)),
            "max": float(finite.max()),
        }
    return out


def as_ply(obj: Path, out: Path) -> Path:
    """``out``: the textured OBJ as one binary PLY, its texture sampled into vertex colours."""
    import trimesh

    mesh = trimesh.load_mesh(obj, process=False, maintain_order=True)
    mesh.visual = mesh.visual.to_color()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(mesh.export(file_type="ply", encoding="binary"))
    return out


def format_drift(
    by_format: dict[str, dict[str, Any]], labels: pd.DataFrame
) -> list[dict[str, Any]] | None:
    """Per subject, how far its PLY copy's answers are from its OBJ's: for each regression
    target ``|PLY - OBJ|`` over the OBJ predictions' mean absolute error on these subjects
    (the model's own error here), and the median over the targets, beside the PLY copy's
    ``ood_score``. None without both formats."""
    if not {"obj", "ply"} <= set(by_format):
        return None
    obj = {r["subject_id"]: r for r in by_format["obj"]["scans"]}
    truth = labels.set_index(schema.ID_COLUMN)
    mae = {}
    for t in schema.REGRESSION_TARGETS:
        errors = [
            abs(r[t] - float(truth.loc[s, t]))
            for s, r in obj.items()
            if r.get(t) is not None and np.isfinite(truth.loc[s, t])
        ]
        if errors and np.mean(errors) > 0:
            mae[t] = float(np.mean(errors))
    rows = []
    for r in by_format["ply"]["scans"]:
        o = obj.get(r["subject_id"])
        if o is None or r.get("ood_score") is None or o.get("age") is None:
            continue
        ratios = {
            t: abs(r[t] - o[t]) / m
            for t, m in mae.items()
            if r.get(t) is not None and o.get(t) is not None
        }
        if ratios:
            rows.append(
                {
                    "subject_id": r["subject_id"],
                    "ood_score": r["ood_score"],
                    "drift_over_error": float(np.median(list(ratios.values()))),
                    "age_drift_over_error": ratios.get("age"),
                }
            )
    return rows


def derived_refuse_score(
    by_format: dict[str, dict[str, Any]], drift: list[dict[str, Any]] | None
) -> dict[str, Any] | None:
    """Where answers stop meaning anything: the ``ood_score`` at which an increasing
    (isotonic) fit of the PLY copies' drift from their OBJ answers, in units of the model's
    error, reaches 1, rounded down to a half. Without any scan that far (or without both
    formats): ceil(REFUSE_MARGIN x the largest simulated score), refusing none of them."""
    maxima = {fmt: s["ood_score"]["max"] for fmt, s in by_format.items() if s.get("ood_score")}
    if not maxima:
        return None
    out: dict[str, Any] = {"max_by_format": maxima, "largest_simulated_score": max(maxima.values())}
    if drift and len(drift) >= 5:
        from sklearn.isotonic import IsotonicRegression

        x = np.array([d["ood_score"] for d in drift], float)
        y = np.array([d["drift_over_error"] for d in drift], float)
        fit = IsotonicRegression(increasing=True).fit(x, y)
        grid = np.linspace(x.min(), x.max(), 500)
        above = grid[fit.predict(grid) >= 1.0]
        out["drift_fit"] = {
            "n": len(drift),
            "ood_score": [round(float(g), 2) for g in grid[::25]],
            "drift_over_error": [round(float(v), 3) for v in fit.predict(grid[::25])],
        }
        if len(above):
            out["value"] = max(1.0, math.floor(2 * float(above[0])) / 2)
            out["rule"] = (
                "the ood_score at which the isotonic fit of the vertex-colour PLY copies' "
                "drift from their textured-OBJ answers (median over the regression targets "
                "of |PLY - OBJ| / the OBJ answers' mean absolute error) reaches 1, rounded "
                f"down to a half (seed {SEED})"
            )
            return out
    out["value"] = float(math.ceil(REFUSE_MARGIN * out["largest_simulated_score"]))
    out["rule"] = (
        f"no scan drifted by the model's error: ceil({REFUSE_MARGIN} x the largest ood_score "
        f"of the simulated subjects (seed {SEED}) over the formats {sorted(maxima)})"
    )
    return out


def simulate_heldout(scorer: Any, folder: Path, n: int, seed: int, jobs: int) -> None:
    """``n`` new subjects of ``seed`` in ``folder``, with the model's training-cohort settings."""
    ensure_cohort(
        folder, n=n, seed=seed, settings=_cohort_settings(scorer), n_jobs=jobs, progress=False
    )


def _cohort_settings(scorer: Any) -> CohortSettings:
    """The synthetic settings of the model's training cohort (the defaults when absent)."""
    synthetic = (scorer.options.get("cohort") or {}).get("synthetic") or {}
    return CohortSettings.from_dict(synthetic.get("settings"))


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        required=True,
        help="a run id, face_health@newest, models:/ or runs:/ URI, or a model folder",
    )
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--scans", type=Path, default=REAL_SCANS, help="folder of real scans")
    parser.add_argument("--n", type=int, default=20, help="held-out simulated subjects")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the simulated subjects")
    parser.add_argument("--jobs", type=int, default=2, help="simulation processes")
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=FORMATS,
        default=["obj"],
        help="score the simulated subjects as textured OBJ and/or vertex-coloured PLY",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ood.json")
    args = parser.parse_args()
    silence_known_library_noise()

    try:
        scorer = load_scorer(args.model, args.tracking_uri)
    except LookupError as exc:
        sys.exit(f"error: {exc}")
    monitor = scorer.ood_monitor
    summary = monitor.summary()
    print(
        f"model {args.model} (run {scorer.run_id}); thresholds from {summary['threshold_source']}"
    )
    for name, space in summary["spaces"].items():
        print(
            f"  space {name:<10} {space['n_features']:4d} features, {space['n_train']} training / "
            f"{space['n_validation']} validation subjects, shrinkage {space['shrinkage']:.3f}, "
            f"threshold {space['threshold']:.3g}"
        )

    n_validation = min(space["n_validation"] for space in summary["spaces"].values())
    caveat = None
    if n_validation < 20:
        caveat = (
            f"the thresholds rest on {n_validation} validation subject(s): the 99th percentile "
            "cannot be estimated, so the flag rates say little (the default cohort has ~45)"
        )
        print(f"  note: {caveat}")
    results: dict[str, Any] = {
        "model": args.model,
        "run_id": scorer.run_id,
        "monitor": summary,
        "caveat": caveat,
        "simulated_seed": args.seed,
    }
    if args.scans.is_dir():
        print(f"real scans in {args.scans}:")
        scans, rejected = real_scan_files(args.scans)
        real = score_all(scorer, scans, "real")
        results["real"] = {**summarise(real), "scans": real, "not_scans": rejected}
    else:
        print(f"real scans: {args.scans} absent, skipped")
        results["real"] = {"skipped": f"{args.scans} absent"}

    if args.n < 1:  # e.g. the final test cohort already gave the held-out rate
        results["simulated"] = {"skipped": "--n 0"}
    else:
        with tempfile.TemporaryDirectory(prefix="ood_bench_") as tmp:
            folder = Path(tmp) / "heldout"
            print(f"simulating {args.n} held-out subjects (seed {args.seed}) ...", flush=True)
            simulate_heldout(scorer, folder, args.n, args.seed, args.jobs)
            scans, _ = real_scan_files(folder / "scans")
            labels = pd.read_csv(folder / "clinical.csv")
            by_format: dict[str, dict[str, Any]] = {}
            for fmt in args.formats:
                if fmt == "ply":
                    files = {s: as_ply(p, Path(tmp) / "ply" / f"{s}.ply") for s, p in scans.items()}
                else:
                    files = scans
                rows = score_all(scorer, files, f"simulated {fmt}")
                by_format[fmt] = {**summarise(rows), "scans": rows}
        results["simulated"] = by_format.get("obj") or next(iter(by_format.values()))
        results["simulated_by_format"] = {
            fmt: {k: v for k, v in s.items() if k != "scans"} for fmt, s in by_format.items()
        }
        results["simulated_by_format_scans"] = {fmt: s["scans"] for fmt, s in by_format.items()}
        drift = format_drift(by_format, labels)
        results["format_drift"] = drift
        results["derived_ood_refuse_score"] = derived_refuse_score(by_format, drift)

    print("\nsummary")
    groups = {"real": results["real"]}
    groups.update(
        {f"sim {fmt}": s for fmt, s in (results.get("simulated_by_format") or {}).items()}
        or {"simulated": results["simulated"]}
    )
    for group, s in groups.items():
        if "skipped" in s:
            print(f"  {group:<10} skipped ({s['skipped']})")
            continue
        rate = "n/a" if s["flag_rate"] is None else f"{s['flag_rate']:.0%}"
        dist = s.get("ood_score")
        shown = (
            ""
            if dist is None
            else f"; ood_score min {dist['min']:.2f}, median {dist['median']:.2f}, "
            f"max {dist['max']:.2f}"
        )
        print(
            f"  {group:<10} flagged {s['n_flagged']}/{s['n_scored']} scored ({rate}), "
            f"{s['n_failed_qc']} failed QC{shown}"
        )
    derived = results.get("derived_ood_refuse_score")
    if derived:
        print(
            f"  derived modelling.ood_refuse_score: {derived['value']:g} ({derived['rule']}; "
            f"largest {derived['largest_simulated_score']:.2f}); the model refuses above "
            f"{monitor.refuse_score:g}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_clean(results), indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
