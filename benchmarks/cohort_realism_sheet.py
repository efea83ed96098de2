"""Picture: simulated faces beside the two real scans, textured and as shaded geometry.

Run by hand (about a minute):

    .venv/bin/python benchmarks/cohort_realism_sheet.py

Simulates a small cohort with ``write_cohort`` (24 subjects, seed 5), picks subjects that
span sex, age and BMI (``reporting.pick_diverse_subjects``: the leanest and the heaviest in
turn, young to old, both sexes), ingests each scan with ``ingest_scan`` like any raw scan,
and moves it frontal by the least-squares fit of its frame landmarks (en_r, en_l, prn, ch_r,
ch_l) onto those of the model's mean face (nose tip at the origin): rigid (rotation and
translation, so sizes stay true) for scans in millimetres; with a scale as well for
``lee_perry_smith``, whose units are arbitrary. The simulated faces use their exact truth
landmarks, ``demoface`` its 5 reference points, ``lee_perry_smith`` the landmarks found by
the shipped detector (it has none of its own; if detection fails, its file's own axes are
taken as frontal and the tile says so). Every face is rendered by ``FaceRenderer`` at one
camera, textured and as grey shaded geometry. lee_perry_smith's texture, as ``ingest_scan``
attaches it, renders upside down and at 40 % brightness; the sheet undoes that
(``_companion_texture_fix``) and says so in its caption.
A missing real-scan folder leaves its tile out.
Writes ``docs/images/cohort_realism_sheet.png``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import trimesh  # noqa: E402

from face_health import schema  # noqa: E402
from face_health.alignment.similarity import FRAME_LANDMARKS, landmark_frame, similarity_transform  # noqa: E402
from face_health.colour import has_colour  # noqa: E402
from face_health.face_model import load_face_model  # noqa: E402
from face_health.ingest.scan import ingest_scan  # noqa: E402
from face_health.reporting import pick_diverse_subjects  # noqa: E402
from face_health.synthetic import write_cohort  # noqa: E402
from face_health.views.rendering import TEMPLATE_FACE_CENTRE, FaceRenderer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real_scans"


def mean_face_frame_points() -> dict[str, np.ndarray]:
    """The model's mean-face frame landmarks in its frontal frame (nose tip at the origin)."""
    model = load_face_model()
    points = dict(zip(schema.LANDMARK_NAMES, model.landmarks(model.mean), strict=True))
    frame = landmark_frame(points)
    return {n: frame[:3, :3] @ points[n] + frame[:3, 3] for n in FRAME_LANDMARKS}


def frontal(
    mesh: trimesh.Trimesh, points: dict[str, np.ndarray], *, scale: bool
) -> tuple[trimesh.Trimesh, float]:
    """A copy of ``mesh`` moved so its frame landmarks fit the mean face's; and the scale."""
    target = mean_face_frame_points()
    source = np.array([points[n] for n in FRAME_LANDMARKS], float)
    s, r, t = similarity_transform(
        source, np.array([target[n] for n in FRAME_LANDMARKS]), allow_scale=scale
    )
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = s * r, t
    moved = mesh.copy()
    moved.apply_transform(matrix)
    return moved, s


def _flip_texture_v(mesh: trimesh.Trimesh) -> bool:
    """Flip the texture's v, in place, for the picture only.

    lee_perry_smith's ``Map-COL.jpg`` (found beside the GLB, which references no image)
    is stored for v pointing down in the GLB's texture coordinates, so as ``read_scan``
    attaches it the lips land under the chin. A quirk of this file that a reader cannot
    know; the pipeline does not correct it. Returns whether the mesh has a texture.
    """
    if not hasattr(mesh.visual, "uv") or mesh.visual.uv is None:
        return False
    mesh.visual.uv = np.column_stack([mesh.visual.uv[:, 0], 1.0 - mesh.visual.uv[:, 1]])
    return True


def simulated_tiles(n: int, seed: int, picks: int, workdir: Path) -> list[tuple]:
    """``(mesh, caption, textured)`` of ``picks`` subjects of a fresh cohort."""
    cohort = workdir / "cohort"
    write_cohort(cohort, n, seed, n_jobs=2, progress=False)
    clinical = pd.read_csv(cohort / "clinical.csv")
    latents = pd.read_csv(cohort / "truth" / "latents.csv").set_index(schema.ID_COLUMN)
    tiles = []
    for sid in pick_diverse_subjects(clinical, picks):
        mesh, qc = ingest_scan(cohort / "scans" / f"{sid}.obj", sid)
        if mesh is None:
            print(f"{sid}: ingest failed: {qc['reason']}")
            continue
        table = pd.read_csv(cohort / "landmarks" / f"{sid}.csv").set_index("name")
        points = {k: table.loc[k, ["x", "y", "z"]].to_numpy(float) for k in FRAME_LANDMARKS}
        moved, _ = frontal(mesh, points, scale=False)
        row = clinical.set_index(schema.ID_COLUMN).loc[sid]
        caption = (
            f"{sid} (simulated): {row['sex']}, {row['age']:.0f} y, BMI {row['bmi']:.1f}\n"
            f"apparent age {latents.loc[sid, 'look_apparent_age']:.0f} y, "
            f"adiposity {latents.loc[sid, 'look_adiposity']:+.1f}"
        )
        tiles.append((moved, caption, True))
    return tiles


def real_tiles() -> list[tuple]:
    """demoface by its reference points, lee_perry_smith by detected landmarks."""
    tiles = []
    demo = REAL / "demoface"
    if demo.is_dir():
        mesh, qc = ingest_scan(demo / "DemoFace_10K.obj", "demoface")
        reference = np.loadtxt(demo / "DemoFaceLandmarks.csv", delimiter=",", ndmin=2)[:, -3:]
        points = dict(zip(FRAME_LANDMARKS, reference * qc["scale_to_mm"], strict=True))
        moved, _ = frontal(mesh, points, scale=False)
        caption = "demoface (real): no texture\naligned by its 5 reference points"
        tiles.append((moved, caption, False))
    else:
        print(f"{demo} absent: no demoface tile")
    lps = REAL / "lee_perry_smith"
    if lps.is_dir():
        mesh, qc = ingest_scan(lps / "LeePerrySmith.glb", "lee_perry_smith")
        try:  # landmarks on the scan as the pipeline reads it
            from face_health.landmarks.detector import LandmarkDetector

            table = LandmarkDetector.from_checkpoint(None).detect(mesh).set_index("name")
            points = {k: table.loc[k, ["x", "y", "z"]].to_numpy(float) for k in FRAME_LANDMARKS}
            moved, s = frontal(mesh, points, scale=True)
            how = f"aligned by detected landmarks, scaled x{s:.2f}"
        except Exception as exc:  # no detector, or no face found: the file's own axes
            print(f"lee_perry_smith: detection failed ({exc}); using its own axes")
            moved = mesh.copy()
            moved.apply_translation(-moved.bounds.mean(axis=0))
            s = 150.0 / float(moved.extents[0])
            moved.apply_scale(s)
            moved.apply_translation([0.0, 0.0, -moved.bounds[1, 2]])
            how = f"manual frontal orientation (file axes), scaled x{s:.2f}"
        fixed = _flip_texture_v(moved)
        note = " (texture v flipped for the picture)" if fixed else ""
        tiles.append((moved, f"lee_perry_smith (real){note}: eyes closed\n{how}", True))
    else:
        print(f"{lps} absent: no lee_perry_smith tile")
    return tiles


def sheet(tiles: list[tuple], title: str, columns: int = 4, image_size: int = 300) -> plt.Figure:
    """Each tile: textured | shaded at the same camera, with its caption."""
    rows = int(np.ceil(len(tiles) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 2.75 * rows), squeeze=False)
    renderer = FaceRenderer(image_size, distance_mm=430.0, background=(1, 1, 1))
    for ax, (mesh, caption, textured) in zip(axes.ravel(), tiles, strict=False):
        images = []
        for with_texture in (True, False):
            colour, _ = renderer.render(
                mesh,
                [(0.0, 0.0)],
                centre=TEMPLATE_FACE_CENTRE,
                textured=with_texture and textured and has_colour(mesh),
            )
            images.append(colour[0])
        ax.imshow(np.concatenate(images, axis=1))
        ax.set_title(caption, fontsize=8.5)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="subjects simulated")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--picks", type=int, default=10, help="simulated subjects shown")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/cohort_realism_sheet.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tiles = simulated_tiles(args.n, args.seed, args.picks, Path(tmp)) + real_tiles()
    title = (
        f"Simulated scans (write_cohort n={args.n}, seed {args.seed}) beside two real scans; "
        "each: textured | shaded geometry, one camera, frontal by en_r en_l prn ch_r ch_l"
    )
    fig = sheet(tiles, title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out} ({len(tiles)} faces)")


if __name__ == "__main__":
    main()
