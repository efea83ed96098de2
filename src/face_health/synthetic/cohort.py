"""A whole synthetic cohort on disk: scans, clinical table, ground-truth landmarks and latents.

Layout written by :func:`write_cohort` (the raw-data contract of DESIGN.md section 2)::

    DIR/cohort.json                 what was generated (n, seed, settings, version)
    DIR/clinical.csv                subject_id, sex + every target of schema.TARGETS
    DIR/scans/<id>.obj|.mtl|.png    textured mesh in mm, scanner frame (or <id>.ply)
    DIR/landmarks/<id>.csv          name,x,y,z in mm, the scan's own frame (exact, on surface)
    DIR/truth/latents.csv           generative parameters: benchmarks only, never the pipeline
    DIR/truth/shape.csv             face-model identity and expression weights of each subject

The same ``n`` and ``seed`` give byte-identical files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from face_health import schema
from face_health.face_model import FaceModel, load_face_model
from face_health.parallel import map_subjects
from face_health.synthetic import io
from face_health.synthetic.anatomy import (
    Hair,
    ShapeFields,
    draw_expression,
    draw_hair,
    draw_identity,
    face_vertices,
    one_thread,
    scalp_hair,
    shape_fields,
)
from face_health.synthetic.effects import (
    Appearance,
    appearance_from_phenotype,
    visible_latents,
)
from face_health.synthetic.phenotypes import simulate_phenotypes
from face_health.synthetic.scanner import ScannerSettings, bake_lighting, capture
from face_health.synthetic.texture import atlas, atlas_uv, draw_skin_traits, paint_albedo

# Bump whenever the same seed would give other files (4: the issue-13 recalibration).
GENERATOR_VERSION = 4
SCAN_FORMATS = ("obj", "ply")
#: The columns of ``clinical.csv``, in order.
CLINICAL_COLUMNS: tuple[str, ...] = (schema.ID_COLUMN, schema.SEX_COLUMN, *schema.TARGET_NAMES)


@dataclass(frozen=True)
class CohortSettings:
    """Everything that decides the files of a cohort besides ``n`` and ``seed``."""

    obesity_criterion: str = "chinese"
    scan_format: str = "obj"
    texture_size: int = 512  # texels: the face tile is texture_size square (~1.7 px/mm)
    scanner: ScannerSettings = field(default_factory=ScannerSettings)

    def __post_init__(self) -> None:
        if self.scan_format not in SCAN_FORMATS:
            raise ValueError(f"scan_format must be one of {SCAN_FORMATS}, got {self.scan_format!r}")
        if not 128 <= self.texture_size <= 4096 or self.texture_size % 2:
            raise ValueError(
                f"texture_size must be an even number in [128, 4096], got {self.texture_size}"
            )  # noqa: E501

    @classmethod
    def from_dict(cls, options: dict | None) -> CohortSettings:
        options = dict(options or {})
        unknown = set(options) - {"obesity_criterion", "scan_format", "texture_size", "scanner"}
        if unknown:
            raise ValueError(f"unknown cohort settings {sorted(unknown)}")
        scanner = ScannerSettings(**_tuples(options.pop("scanner", {})))
        return cls(scanner=scanner, **options)


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def subject_ids(n: int) -> list[str]:
    width = max(4, len(str(n)))
    return [f"S{i + 1:0{width}d}" for i in range(n)]


@dataclass
class SimulatedScan:
    """One simulated capture, in the scanner frame."""

    subject_id: str
    vertices: np.ndarray  # (n, 3) mm
    faces: np.ndarray  # (m, 3)
    uv: np.ndarray  # (t, 2) texture coordinates in the texture image, v up
    faces_uv: np.ndarray  # (m, 3) uv index of each corner
    texture: np.ndarray  # (h, w, 3) uint8
    landmarks: np.ndarray  # (k, 3) mm, order of schema.LANDMARK_NAMES
    latents: dict
    shape: dict  # identity weights and expression of the face model


@dataclass(frozen=True)
class FaceDraw:
    """What one subject's face is made of, before skin and scanner."""

    look: Appearance
    traits: dict[str, float]
    hair: Hair
    identity: np.ndarray  # (k,) identity weights
    expression: dict[str, float]
    vertices: np.ndarray  # (n, 3) mm, the model's topology and frame


def draw_face(
    phenotype: dict, rng: np.random.Generator, model: FaceModel, fields: ShapeFields
) -> FaceDraw:
    """Draw a subject's appearance, skin traits, hair, identity and expression, in the
    simulator's order, and build the face (the first draws of ``simulate_face``)."""
    look = appearance_from_phenotype(phenotype, rng)
    traits = draw_skin_traits(rng)
    hair = draw_hair(look, traits, rng)
    identity = draw_identity(look.sex, rng, fields)
    expression = draw_expression(rng)
    vertices = face_vertices(model, fields, identity, expression, look, hair)
    return FaceDraw(look, traits, hair, identity, expression, vertices)


@one_thread  # the same bytes in the main process and in workers (anatomy.one_thread)
def simulate_face(
    subject_id: str, phenotype: dict, seed: np.random.SeedSequence, settings: CohortSettings
) -> SimulatedScan:
    """Build, texture and capture the face of one subject."""
    rng = np.random.default_rng(seed)
    model, fields = load_face_model(), shape_fields()
    face = draw_face(phenotype, rng, model, fields)
    look, hair = face.look, face.hair

    size = settings.texture_size
    albedo = paint_albedo(look, face.traits, hair, rng, height=size)
    at = atlas(size)
    normals = model.mesh(face.vertices).vertex_normals
    shade, cast, light = bake_lighting(normals, settings.scanner, rng)
    shaded = albedo * at.vertex_values(shade)[:, None] * cast.astype(np.float32)
    texture = at.image(np.round(np.clip(shaded, 0.0, 1.0) * 255.0).astype(np.uint8))

    # hair noise where hair stands off the scalp; flat hair (sideburns) scans like skin
    standing = scalp_hair(model, hair) * np.linalg.norm(fields.hair_volume, axis=1)
    scan = capture(face.vertices, standing, settings.scanner, rng, model)
    visible = visible_latents(look)
    face_scale = visible.pop("face_scale")  # written after the hair, as it always was
    latents = {
        "subject_id": subject_id,
        **visible,
        **{f"skin_{k}": v for k, v in face.traits.items()},
        "hair_recession_mm": hair.recession_mm,
        "hair_bald_crown": hair.bald_crown,
        "hair_thickness_mm": hair.thickness_mm,
        "hair_grey": hair.grey,
        "face_scale": face_scale,
        **scan.meta,
        **light,
    }
    shape = {
        "subject_id": subject_id,
        **{f"identity_{k:02d}": float(w) for k, w in enumerate(face.identity)},
        **{f"expression_{k}": float(v) for k, v in face.expression.items()},
    }
    return SimulatedScan(
        subject_id,
        scan.vertices,
        scan.faces,
        atlas_uv(scan.uv, size),
        scan.faces_uv,
        texture,
        scan.landmarks,
        latents,
        shape,
    )


def draw_phenotypes(
    n: int, seed: int, *, obesity_criterion: str = "chinese"
) -> tuple[pd.DataFrame, list[np.random.SeedSequence]]:
    """The health states of ``write_cohort(out, n, seed)``'s subjects and their own seeds.

    Returns
    -------
    (pandas.DataFrame, list of numpy.random.SeedSequence)
        ``subject_id`` plus :data:`~face_health.synthetic.phenotypes.PHENOTYPE_COLUMNS`, one
        row per subject; and each subject's seed, from which :func:`simulate_face` draws the
        face. The phenotypes are drawn as one vectorised table, so a subject's values depend
        on ``n`` as well as ``seed``.
    """
    pheno_seed, *subject_seeds = np.random.SeedSequence(seed).spawn(n + 1)
    pheno = simulate_phenotypes(
        n, np.random.default_rng(pheno_seed), obesity_criterion=obesity_criterion
    )
    pheno.insert(0, schema.ID_COLUMN, subject_ids(n))
    return pheno, subject_seeds


def simulate_latents(n: int, seed: int, *, obesity_criterion: str = "chinese") -> pd.DataFrame:
    """Health state and face-visible latents of ``write_cohort(out, n, seed)``, no faces.

    The latents are the first draws of each subject's generator in :func:`simulate_face`
    (:func:`~face_health.synthetic.effects.appearance_from_phenotype`, then
    :func:`~face_health.synthetic.effects.visible_latents`), so the values equal those of
    ``truth/latents.csv`` (and ``clinical.csv``, columns :data:`CLINICAL_COLUMNS`) of the
    cohort with the same ``n``, ``seed`` and obesity criterion, at well under a millisecond a
    subject instead of seconds: what the latent oracle needs for tens of thousands.

    Returns
    -------
    pandas.DataFrame
        ``subject_id``, the phenotype columns, ``look_*`` and ``face_scale``, one row per
        subject in id order.
    """
    pheno, subject_seeds = draw_phenotypes(n, seed, obesity_criterion=obesity_criterion)
    visible = [
        visible_latents(appearance_from_phenotype(row, np.random.default_rng(s)))
        for row, s in zip(pheno.to_dict("records"), subject_seeds, strict=True)
    ]
    return pd.concat([pheno, pd.DataFrame(visible, index=pheno.index)], axis=1)


def _write_subject(job: tuple[str, dict, np.random.SeedSequence], out: Path, settings_dict: dict):
    subject_id, phenotype, seed = job
    settings = CohortSettings.from_dict(settings_dict)
    scan = simulate_face(subject_id, phenotype, seed, settings)
    base = out / "scans" / subject_id
    if settings.scan_format == "obj":
        io.write_obj(base, scan.vertices, scan.faces, scan.uv, scan.faces_uv, scan.texture)
    else:
        corner_uv = np.zeros((len(scan.vertices), 2))
        corner_uv[scan.faces.ravel()] = scan.uv[scan.faces_uv.ravel()]
        colours = io.sample_texture(scan.texture, corner_uv)
        io.write_ply(base, scan.vertices, scan.faces, colours)
    io.write_landmarks(
        out / "landmarks" / f"{subject_id}.csv", list(schema.LANDMARK_NAMES), scan.landmarks
    )
    return {"latents": scan.latents, "shape": scan.shape}


def _settings_dict(settings: CohortSettings) -> dict:
    return json.loads(json.dumps(asdict(settings)))


def write_cohort(
    out_dir: str | Path,
    n: int,
    seed: int,
    *,
    settings: CohortSettings | None = None,
    n_jobs: int = 1,
    progress: bool = True,
) -> dict:
    """Simulate ``n`` subjects into the new folder ``out_dir``; returns the manifest.

    Refuses to write into a folder that exists (raw data is never overwritten). Files go to
    a temporary sibling first and are renamed at the end, so a crash leaves no half cohort.
    """
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists; the simulator writes only to a new folder")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    settings = settings or CohortSettings()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for sub in ("scans", "landmarks", "truth"):
            (tmp / sub).mkdir()
        pheno, subject_seeds = draw_phenotypes(
            n, seed, obesity_criterion=settings.obesity_criterion
        )
        ids = list(pheno[schema.ID_COLUMN])
        jobs = {
            sid: (sid, row, s)
            for sid, row, s in zip(ids, pheno.to_dict("records"), subject_seeds, strict=True)
        }
        outcomes = map_subjects(
            _write_subject,
            jobs,
            n_jobs=n_jobs,
            desc="simulating faces",
            progress=progress,
            out=tmp,
            settings_dict=_settings_dict(settings),
        )
        failed = {k: o.error for k, o in outcomes.items() if not o.ok}
        if failed:
            raise RuntimeError(f"simulation failed for {len(failed)} subject(s): {failed}")

        pheno[list(CLINICAL_COLUMNS)].to_csv(tmp / "clinical.csv", index=False, float_format="%.4g")
        latents = pd.DataFrame([o.value["latents"] for o in outcomes.values()])
        truth = pheno.merge(latents, on=schema.ID_COLUMN)
        truth.to_csv(tmp / "truth" / "latents.csv", index=False, float_format="%.6g")
        shapes = pd.DataFrame([o.value["shape"] for o in outcomes.values()])
        shapes.to_csv(tmp / "truth" / "shape.csv", index=False, float_format="%.6g")
        (tmp / "truth" / "README.md").write_text(
            "Generative parameters of the synthetic cohort (face_health.synthetic).\n"
            "For benchmarks and the latent oracle only: the pipeline never reads this folder.\n"
            "latents.csv: phenotype, face-visible latents, skin and hair, capture and light.\n"
            "shape.csv: ICT-FaceKit identity weights (N(0, 1) prior) and expression weights.\n"
        )
        manifest = {
            "generator": "face_health.synthetic",
            "generator_version": GENERATOR_VERSION,
            "n": n,
            "seed": seed,
            "settings": _settings_dict(settings),
            "subjects": ids,
        }
        (tmp / "cohort.json").write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def ensure_cohort(
    out_dir: str | Path,
    n: int,
    seed: int,
    *,
    settings: CohortSettings | None = None,
    n_jobs: int = 1,
    progress: bool = True,
) -> dict:
    """Return the manifest of the cohort at ``out_dir``, simulating it first if absent.

    A folder that exists but holds a different cohort (other n, seed or settings) is an
    error, not something to overwrite.
    """
    out = Path(out_dir)
    settings = settings or CohortSettings()
    wanted = {
        "generator_version": GENERATOR_VERSION,
        "n": n,
        "seed": seed,
        "settings": _settings_dict(settings),
    }
    manifest_path = out / "cohort.json"
    if out.exists():
        if not manifest_path.exists():
            raise FileExistsError(f"{out} exists but holds no cohort.json; not a simulated cohort")
        manifest = json.loads(manifest_path.read_text())
        differs = [k for k, v in wanted.items() if manifest.get(k) != v]
        if differs:
            raise FileExistsError(
                f"{out} holds a different synthetic cohort (differs in: {', '.join(differs)}); "
                "point cohort.path to a new folder or remove the old one yourself"
            )
        return manifest
    return write_cohort(out, n, seed, settings=settings, n_jobs=n_jobs, progress=progress)
