"""Figure: where the 33 landmarks of the face model sit, beside the Multi-PIE 68 points.

Run by hand (a few seconds):

    .venv/bin/python benchmarks/landmark_definitions_figure.py

Renders the neutral (mean) face of the shipped ICT-FaceKit model (``load_face_model()``)
frontal and in right profile with the project's ``FaceRenderer`` (shaded geometry), draws
the 33 landmarks of ``schema.LANDMARK_NAMES`` (``FaceModel.landmarks``) labelled with their
names, and the 68 Multi-PIE vertices of the upstream README (``model.multipie68``) small in
another colour. A landmark that lies behind the surface seen in a view is drawn hollow (the
camera is distant and narrow, nearly orthographic); the profile leaves out the far side.
Writes ``docs/images/landmark_definitions.png``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from face_health import schema  # noqa: E402
from face_health.face_model import FaceModel, load_face_model  # noqa: E402
from face_health.views.rendering import FaceRenderer, head_rotation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: Label offsets (points; +x to the image's right, +y up) in the frontal view for the midline
#: and the subject's right side (image left); the left side mirrors them.
FRONT_OFFSETS: dict[str, tuple[float, float]] = {
    "tr": (0, 9),
    "g": (9, 5),
    "n": (9, 0),
    "prn": (10, -2),
    "sn": (9, -4),
    "ls": (9, 1),
    "sto": (11, -1),
    "li": (9, -3),
    "sl": (9, 0),
    "pg": (9, 0),
    "gn": (0, -12),
    "ft_r": (-12, 6),
    "ex_r": (-22, 0),
    "en_r": (2, -12),
    "ps_r": (-4, 9),
    "pi_r": (-4, -12),
    "or_r": (-20, -10),
    "al_r": (-20, -2),
    "ch_r": (-20, -4),
    "zy_r": (-20, 2),
    "go_r": (-18, -6),
    "t_r": (-18, -10),
}

#: Offsets in the right profile (the face looks to the image's right).
PROFILE_OFFSETS: dict[str, tuple[float, float]] = {
    "tr": (8, 6),
    "g": (9, 3),
    "n": (9, -2),
    "prn": (9, 0),
    "sn": (8, -6),
    "ls": (9, 0),
    "sto": (9, -1),
    "li": (9, -2),
    "sl": (9, -2),
    "pg": (9, -1),
    "gn": (4, -11),
    "ft_r": (-6, 8),
    "ex_r": (-18, 2),
    "en_r": (14, -6),
    "ps_r": (-2, 9),
    "pi_r": (-16, -8),
    "or_r": (-8, -12),
    "al_r": (-4, -12),
    "ch_r": (-18, -6),
    "zy_r": (-16, 6),
    "go_r": (-16, -8),
    "t_r": (-18, 0),
}


def _offset(name: str, table: dict[str, tuple[float, float]]) -> tuple[float, float]:
    if name in table:
        return table[name]
    dx, dy = table[name[:-2] + "_r"]
    return (-dx, dy)


def visible(
    renderer: FaceRenderer,
    points: np.ndarray,
    view: tuple[float, float],
    centre: np.ndarray,
    depth: np.ndarray,
    tolerance_mm: float = 1.5,
    window: int = 3,
) -> np.ndarray:
    """``(n,)`` True where nothing of the mesh lies in front of a point on the surface.

    A point counts as seen when some pixel within ``window`` of its own shows empty space or
    a surface no nearer than the point (less ``tolerance_mm``), so that points on the
    silhouette (the profile's midline) are not lost to the pixel grid.
    """
    head = head_rotation(*view)[:3, :3]
    own = renderer.distance_mm - (points - centre) @ head.T[:, 2]
    pixels = np.round(renderer.project(points, view, centre)).astype(int)
    size = depth.shape[0]
    seen = np.zeros(len(points), bool)
    for i, (col, row) in enumerate(pixels):
        rows = slice(max(row - window, 0), min(row + window + 1, size))
        cols = slice(max(col - window, 0), min(col + window + 1, size))
        patch = depth[rows, cols]
        seen[i] = patch.size > 0 and bool(((patch == 0) | (patch >= own[i] - tolerance_mm)).any())
    return seen


def landmark_figure(model: FaceModel, image_size: int = 900) -> plt.Figure:
    """The mean face frontal and in right profile, with its landmarks and Multi-PIE 68."""
    points = model.landmarks(model.mean)
    multipie = model.mean[model.multipie68]
    mesh = model.mesh()
    prn = points[schema.LANDMARK_NAMES.index("prn")]
    panels = (
        ("frontal", (0.0, 0.0), prn + [0.0, 5.0, -40.0], FRONT_OFFSETS),
        ("right profile", (90.0, 0.0), prn + [0.0, 5.0, -85.0], PROFILE_OFFSETS),
    )
    fig, axes = plt.subplots(1, 2, figsize=(17, 9.4))
    # A distant camera with a narrow field: nearly orthographic, so that a point on the side
    # of the face (zygion, tragion) is judged seen or hidden as from straight ahead.
    renderer = FaceRenderer(
        image_size, fov_deg=8.6, distance_mm=2000.0, background=(1, 1, 1), ambient=0.45
    )
    for ax, (title, view, centre, offsets) in zip(axes, panels, strict=True):
        colour, depth = renderer.render(mesh, [view], centre=centre, textured=False)
        ax.imshow(colour[0])
        px = renderer.project(points, view, centre)
        seen = visible(renderer, points, view, centre, depth[0])
        mp_px = renderer.project(multipie, view, centre)
        mp_seen = visible(renderer, multipie, view, centre, depth[0])
        ax.scatter(*mp_px[mp_seen].T, s=7, c="tab:blue", zorder=3, label="Multi-PIE 68 (ICT)")
        for name, p, ok in zip(schema.LANDMARK_NAMES, px, seen, strict=True):
            far_side = view[0] > 45 and name.endswith("_l")
            if far_side:
                continue
            ax.scatter(
                *p,
                s=26,
                zorder=4,
                facecolors="tab:red" if ok else "none",
                edgecolors="tab:red",
                linewidths=1.2,
            )
            ax.annotate(
                name,
                p,
                xytext=_offset(name, offsets),
                textcoords="offset points",
                fontsize=8,
                color="darkred" if ok else "grey",
                ha="center",
                va="center",
                zorder=5,
                arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5},
            )
        ax.set_title(f"mean face, {title}", fontsize=12)
        ax.axis("off")
    axes[0].scatter([], [], s=26, c="tab:red", label="33 landmarks (schema.LANDMARK_NAMES)")
    hollow = {"facecolors": "none", "edgecolors": "tab:red"}
    axes[0].scatter([], [], s=26, **hollow, label="behind the surface in this view")
    axes[0].legend(loc="lower left", fontsize=9, framealpha=0.9)
    fig.suptitle(
        "Landmark definitions on the ICT-FaceKit mean face (barycentric points on the "
        "topology); far-side points left out of the profile",
        fontsize=12,
    )
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/landmark_definitions.png")
    args = parser.parse_args()
    fig = landmark_figure(load_face_model())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
