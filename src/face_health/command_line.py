"""``face-health``: the project's own command line, beside ``kedro``."""

# Not cli.py: Kedro reserves <package>/cli.py for project-specific kedro commands.

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")


#: Shared by every command that reads one scan.
UNITS_OPTION = click.option(
    "--units",
    type=click.Choice(["auto", "mm", "cm", "m"]),
    default="auto",
    show_default=True,
    help="Units of the scan; auto infers them from its size.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="face_health")
def main() -> None:
    """3D facial scans to age, clinical parameters and medical conditions."""


@main.command()
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Number of subjects.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="New folder to write the cohort to (must not exist).",
)
@click.option(
    "--format",
    "scan_format",
    type=click.Choice(["obj", "ply"]),
    default="obj",
    show_default=True,
    help="obj: OBJ + MTL + PNG texture; ply: binary PLY with vertex colours.",
)
@click.option(
    "--obesity-criterion",
    type=click.Choice(["chinese", "who"]),
    default="chinese",
    show_default=True,
    help="BMI >= 28 (Chinese) or >= 30 (WHO).",
)
@click.option("--jobs", type=int, default=0, show_default=True, help="Processes; 0 = all cores.")
def simulate(
    n: int, seed: int, out: Path, scan_format: str, obesity_criterion: str, jobs: int
) -> None:
    """Write a synthetic cohort of N subjects to a new folder OUT.

    OUT/scans/<id>.obj (+ .mtl + .png), OUT/clinical.csv, OUT/landmarks/<id>.csv (mm, the
    scan's frame) and OUT/truth/ (latent parameters, for benchmarks only). The same N and
    SEED give byte-identical files.
    """
    from face_health.synthetic import CohortSettings, write_cohort

    if out.exists():
        raise click.ClickException(f"{out} already exists; choose a new folder")
    settings = CohortSettings(scan_format=scan_format, obesity_criterion=obesity_criterion)
    write_cohort(out, n, seed, settings=settings, n_jobs=jobs)
    click.echo(f"wrote {n} subjects to {out}")


@main.command("check-scan")
@click.argument("scan", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@UNITS_OPTION
def check_scan(scan: Path, units: str) -> None:
    """Read, clean and QC one scan; print its QC record as JSON (exit 1 if it failed)."""
    from face_health.scan import ingest_scan

    _, qc = ingest_scan(scan, scan.stem, units=units)
    click.echo(json.dumps(qc, indent=2, default=str))
    if qc["status"] == "failed":
        sys.exit(1)


@main.command()
@click.argument("scan", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV file to write; default: print to standard output.",
)
@UNITS_OPTION
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Landmark network checkpoint; default: the one shipped with the package.",
)
def landmarks(scan: Path, out: Path | None, units: str, checkpoint: Path | None) -> None:
    """Find the named landmarks of SCAN (OBJ, PLY, STL, OFF, GLB/glTF).

    Writes name,x,y,z in the scan's own frame and units (the `unit` column says which),
    with each landmark's confidence.
    """
    from face_health.landmarks.detector import LandmarkDetector
    from face_health.scan import ingest_scan

    mesh, qc = ingest_scan(scan, scan.stem, units=units)
    if mesh is None:
        raise click.ClickException(f"{scan}: {qc['reason']}")
    detector = LandmarkDetector.from_checkpoint(checkpoint)
    try:
        table = detector.detect(mesh)
    except ValueError as exc:
        raise click.ClickException(f"{scan}: {exc}") from exc
    # Ingest only rescales to millimetres, so the scan's own frame is one division away.
    scale = float(qc["scale_to_mm"])
    result = table[["name", "x", "y", "z"]].copy()
    result[["x", "y", "z"]] = result[["x", "y", "z"]] / scale
    result["unit"] = qc["units_inferred"]
    result["confidence"] = table["confidence"].round(3)
    text = result.to_csv(index=False, float_format="%.6g")
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {len(result)} landmarks ({qc['units_inferred']}) to {out}", err=True)


@main.command("train-landmarks")
@click.option(
    "--cohort",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="A raw cohort folder with scans/, landmarks/ and clinical.csv.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--views-per-scan", type=int, default=24, show_default=True)
@click.option("--size", type=int, default=128, show_default=True, help="View size in pixels.")
@click.option("--jobs", type=int, default=0, show_default=True, help="Render processes.")
@click.option("--seed", type=int, default=0, show_default=True)
def train_landmarks(
    cohort: Path, out: Path, epochs: int, views_per_scan: int, size: int, jobs: int, seed: int
) -> None:
    """Train the landmark network on an annotated cohort (train / validation split of its
    clinical table) and write a compact checkpoint to OUT."""
    from face_health.landmarks.fit import train_from_cohort_folder

    metrics = train_from_cohort_folder(
        cohort,
        out,
        options={
            "seed": seed,
            "n_jobs": jobs,
            "views": {"size": size, "views_per_scan": views_per_scan},
            "fit": {"module": {"max_epochs": epochs}},
        },
    )
    click.echo(json.dumps(metrics, indent=2, default=str))


@main.command()
@click.argument("scan", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--model",
    default=None,
    help="A run id, models:/face_health@newest, a runs:/ URI or a model folder; "
    "default: the newest model that `training` logged.",
)
@click.option(
    "--tracking-uri",
    default="sqlite:///mlflow.db",
    show_default=True,
    help="The MLflow backend to find the model in.",
)
def predict(scan: Path, model: str | None, tracking_uri: str) -> None:
    """Predict age, clinical parameters and condition probabilities for SCAN; print JSON."""
    from face_health.inference import json_record, load_scorer

    try:
        scorer = load_scorer(model, tracking_uri)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    record = scorer.score(scan)
    click.echo(json.dumps(json_record(record), indent=2))
    if record["qc_status"] == "failed":
        sys.exit(1)


if __name__ == "__main__":
    main()
