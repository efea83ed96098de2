"""``face-health``: the project's own command line, beside ``kedro``."""

# Not cli.py: Kedro reserves <package>/cli.py for project-specific kedro commands.

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import click

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")


#: Shared by every command that reads one scan.
UNITS_OPTION = click.option(
    "--units",
    type=click.Choice(["auto", "mm", "cm", "m"]),
    default=None,
    help="Units of the scan; auto infers them from its size. Default: the project's "
    "ingest.units (auto).",
)
#: The Kedro environment whose parameters a command uses, as `kedro run --env`.
ENV_OPTION = click.option(
    "--env",
    default=None,
    help="Kedro environment whose parameters to use (conf/base + conf/ENV); default: local.",
)


def _project_settings(section: str, env: str | None):
    """The project's settings of ``section``, as ``kedro run --env ENV`` builds them: the
    commands clean and locate a scan with the same settings as the pipeline."""
    from face_health.config import SettingsError
    from face_health.config import section as project_section

    try:
        settings = project_section(section, env)
    except (SettingsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    from face_health.config import find_project_root
    from face_health.hooks import warn_ignored_local_globals

    root = find_project_root()
    if root is not None:  # as `kedro run --env`: say when conf/local/globals.yml is left out
        message = warn_ignored_local_globals(root / "conf", env, log=False)
        if message:
            click.echo(f"Warning: {message}", err=True)
    return settings


def _ingest(scan: Path, units: str | None, env: str | None):
    """The ingest stage on one scan with the project's ``ingest`` settings (``--units``
    overrides ``ingest.units``)."""
    from face_health.ingest.scan import ingest_scan

    kwargs = _project_settings("ingest", env).as_kwargs()
    if units is not None:
        kwargs["units"] = units
    return ingest_scan(scan, scan.stem, **kwargs)


def _positive_finite(ctx: click.Context, param: click.Parameter, value: float | None):
    """A limit given on the command line: a positive, finite number (not 0, inf or nan)."""
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a positive, finite number, not {value!r}")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="face_health")
def main() -> None:
    """3D facial scans to age, clinical parameters and medical conditions."""
    from face_health.quiet import silence_known_library_noise

    silence_known_library_noise()


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
@ENV_OPTION
def check_scan(scan: Path, units: str | None, env: str | None) -> None:
    """Read, clean and QC one scan with the project's ingest settings; print its QC record as
    JSON (exit 1 if it failed)."""
    _, qc = _ingest(scan, units, env)
    plain = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in qc.items()}
    click.echo(json.dumps(plain, indent=2, default=str))  # valid JSON: no NaN
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
    help="Landmark network checkpoint; default: landmarks.checkpoint of the project, else "
    "the one shipped with the package.",
)
@click.option(
    "--method",
    type=click.Choice(["fit", "cnn"]),
    default=None,
    help="fit: the CNN's landmarks start a fit of the face model to the scan, and the "
    "landmarks are read off the fitted model; cnn: the CNN alone. Default: the project's "
    "landmarks.method (fit).",
)
@ENV_OPTION
def landmarks(
    scan: Path,
    out: Path | None,
    units: str | None,
    checkpoint: Path | None,
    method: str | None,
    env: str | None,
) -> None:
    """Find the named landmarks of SCAN (OBJ, PLY, STL, OFF, GLB/glTF).

    Writes name,x,y,z in the scan's own frame and units (the `unit` column says which),
    each landmark's CNN confidence and, with --method fit, the model fit's residual near the
    landmark (mm), how far the fitted point lies from the CNN's (mm), and the fit's overall
    residual and coverage on standard error. A scan that is not a face, or one the face model
    cannot follow, is an error with the reason. The scan is cleaned and its landmarks found
    with the project's ingest and landmarks settings, by the pipeline's own stage functions.
    """
    import dataclasses

    from face_health.errors import DataError
    from face_health.landmarks.detector import LandmarkDetector, detect_one

    settings = _project_settings("landmarks", env)
    if method is not None:
        settings = dataclasses.replace(settings, method=method)
    method = settings.method
    mesh, qc = _ingest(scan, units, env)
    if mesh is None:
        raise click.ClickException(f"{scan}: {qc['reason']}")
    detector = LandmarkDetector.from_checkpoint(checkpoint or settings.checkpoint)
    try:
        table, stage_qc, _ = detect_one(mesh, detector, settings)
    except DataError as exc:
        raise click.ClickException(f"{scan}: {exc}") from exc
    # Ingest only rescales to millimetres, so the scan's own frame is one division away.
    scale = float(qc["scale_to_mm"])
    result = table[["name", "x", "y", "z"]].copy()
    result[["x", "y", "z"]] = result[["x", "y", "z"]] / scale
    result["unit"] = qc["units_inferred"]
    result["confidence"] = table["confidence"].round(3)
    for column in ("fit_residual_mm", "cnn_distance_mm"):
        if column in table:
            result[column] = table[column].round(3)
    text = result.to_csv(index=False, float_format="%.6g")
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {len(result)} landmarks ({qc['units_inferred']}) to {out}", err=True)
    if method == "fit":
        click.echo(
            f"model fit: residual {stage_qc['fit_residual_mm']:.2f} mm, "
            f"face covered {stage_qc['fit_coverage']:.0%}",
            err=True,
        )
    if stage_qc["landmark_reason"]:
        click.echo(f"warning: {stage_qc['landmark_reason']}", err=True)


@main.command("train-landmarks")
@click.option(
    "--cohort",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="A raw cohort folder with scans/, landmarks/ and clinical.csv.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--env",
    default=None,
    help="Kedro environment whose `landmarks` parameters to train with (conf/base, then "
    "conf/ENV)  [default: local]",
)
@click.option("--epochs", type=int, help="[default: landmarks.fit.module.max_epochs]")
@click.option("--views-per-scan", type=int, help="[default: landmarks.views.views_per_scan]")
@click.option("--size", type=int, help="View size in pixels  [default: landmarks.views.size]")
@click.option("--jobs", type=int, help="Render processes  [default: landmarks.n_jobs]")
@click.option("--seed", type=int, help="[default: landmarks.seed]")
@click.option("--lr", type=float, help="Peak learning rate  [default: landmarks.fit.module.lr]")
@click.option(
    "--init-weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Start from this landmark checkpoint (fine-tuning)  [default: landmarks.fit.init_weights]",
)
@click.option(
    "--reshape/--no-reshape",
    default=None,
    help="Vary face proportions (per-axis scale, smooth warps) beyond the training faces'  "
    "[default: landmarks.views]",
)
@click.option(
    "--scanner-noise/--no-scanner-noise",
    default=None,
    help="Add surface noise and spikes as real scanners leave them  [default: landmarks.views]",
)
@click.option(
    "--decimation/--no-decimation",
    default=None,
    help="Decimate half the training scans to 3k-20k vertices (real scans' resolutions)  "
    "[default: landmarks.views]",
)
def train_landmarks(
    cohort: Path,
    out: Path,
    env: str | None,
    epochs: int | None,
    views_per_scan: int | None,
    size: int | None,
    jobs: int | None,
    seed: int | None,
    lr: float | None,
    init_weights: Path | None,
    reshape: bool | None,
    scanner_noise: bool | None,
    decimation: bool | None,
) -> None:
    """Train the landmark network on an annotated cohort (train / validation split of its
    clinical table) and write a compact checkpoint to OUT.

    Trains with the project's `landmarks` parameters as `kedro run --env ENV` does with
    `landmarks.train: true`; each flag given replaces one of them (no flag: the YAML's value).
    """
    from kedro.config import MissingConfigException

    from face_health.config import LandmarkSettings, SettingsError, project_parameters
    from face_health.landmarks.fit import train_from_cohort_folder, training_options

    try:
        options = training_options(
            project_parameters(env).get("landmarks") or {},
            epochs=epochs,
            lr=lr,
            views_per_scan=views_per_scan,
            size=size,
            n_jobs=jobs,
            seed=seed,
            init_weights=None if init_weights is None else str(init_weights),
            reshape=reshape,
            scanner_noise=scanner_noise,
            decimation=decimation,
        )
        LandmarkSettings.from_parameters(options)  # refuses what the pipeline would refuse
    except (SettingsError, MissingConfigException) as exc:
        raise click.ClickException(str(exc)) from exc
    metrics = train_from_cohort_folder(cohort, out, options=options)
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
    """Predict age, clinical parameters and condition probabilities for SCAN; print JSON.

    The JSON's ``ood`` says how far the scan's features are from the training cohort
    (``score`` 1.0 = the 99th percentile of the validation subjects; ``flag`` beyond it)."""
    from face_health.serving.scorer import json_record, load_scorer

    try:
        scorer = load_scorer(model, tracking_uri)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    record = scorer.score(scan)
    body = json_record(record)
    click.echo(json.dumps(body, indent=2))
    if body["ood"]["flag"]:
        score = body["ood"]["score"]
        click.echo(
            "warning: the scan is out of distribution"
            + ("" if score is None else f" (ood_score {score:.2f})")
            + ": its features are beyond those of the training cohort's validation subjects; "
            "treat the predictions with caution",
            err=True,
        )
    if record["qc_status"] == "failed":
        sys.exit(1)


@main.command()
@click.option("--host", default=None, help="Interface to listen on  [default: 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="[default: 8000]")
@click.option(
    "--model",
    default=None,
    help="A run id, models:/face_health@newest, a runs:/ URI or a model folder; "
    "default: `model` in conf/base/serving.yml, else the newest model `training` logged.",
)
@click.option(
    "--tracking-uri",
    default=None,
    help="The MLflow backend  [default: sqlite:///mlflow.db in the project root]",
)
@click.option(
    "--storage-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep each upload here; default: uploads are deleted after their request.",
)
@click.option(
    "--max-upload-mb",
    type=float,
    default=None,
    callback=_positive_finite,
    help="Largest upload  [default: 100]",
)
@click.option(
    "--request-timeout",
    type=float,
    default=None,
    callback=_positive_finite,
    help="Seconds per request  [default: 120]",
)
@click.option(
    "--ssl-certfile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Serve HTTPS with this certificate (with --ssl-keyfile).",
)
@click.option(
    "--ssl-keyfile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The certificate's private key.",
)
@click.option(
    "--insecure-dev",
    is_flag=True,
    help="Serve without a token: development only, and only on a loopback host.",
)
@click.option(
    "--project-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Project whose conf/*/serving.yml to read; default: the one around the working directory.",
)
def serve(
    host: str | None,
    port: int | None,
    model: str | None,
    tracking_uri: str | None,
    storage_dir: Path | None,
    max_upload_mb: float | None,
    request_timeout: float | None,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
    insecure_dev: bool,
    project_dir: Path | None,
) -> None:
    """Serve predictions over HTTP: POST a scan to /v1/predictions (docs at /docs).

    The bearer token comes from the environment variable FACE_HEALTH_API_TOKEN (or `token` in
    conf/local/serving.yml); without one the service refuses to start unless --insecure-dev
    on a loopback host. Flags override conf/base/serving.yml and conf/local/serving.yml.
    """
    from face_health.serving.settings import SettingsError, load_settings

    try:
        settings = load_settings(project_dir).with_overrides(
            host=host,
            port=port,
            model=model,
            tracking_uri=tracking_uri,
            storage_dir=storage_dir.resolve() if storage_dir else None,
            max_upload_mb=max_upload_mb,
            request_timeout_s=request_timeout,
            ssl_certfile=ssl_certfile.resolve() if ssl_certfile else None,
            ssl_keyfile=ssl_keyfile.resolve() if ssl_keyfile else None,
            insecure_dev=True if insecure_dev else None,
        )
        from face_health.serving.server import serve as run_server

        run_server(settings)
    except (SettingsError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    main()
