"""``face-health``: the project's own command line, beside ``kedro``."""

# Not cli.py: Kedro reserves <package>/cli.py for project-specific kedro commands.

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")


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
@click.option(
    "--units",
    type=click.Choice(["auto", "mm", "cm", "m"]),
    default="auto",
    show_default=True,
    help="Units of the scan; auto infers them from its size.",
)
def check_scan(scan: Path, units: str) -> None:
    """Read, clean and QC one scan; print its QC record as JSON (exit 1 if it failed)."""
    from face_health.scan import ingest_scan

    _, qc = ingest_scan(scan, scan.stem, units=units)
    click.echo(json.dumps(qc, indent=2, default=str))
    if qc["status"] == "failed":
        sys.exit(1)


if __name__ == "__main__":
    main()
