"""Pictures for people: contact sheets of faces and QC summaries."""

from __future__ import annotations

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import trimesh  # noqa: E402

from face_health.alignment.similarity import landmark_frame  # noqa: E402
from face_health.views.rendering import FaceRenderer  # noqa: E402


def pick_diverse_subjects(clinical: pd.DataFrame, n: int) -> list[str]:
    """Up to ``n`` subject ids spread over sex, age and BMI (for a contact sheet).

    Within each sex the subjects are cut into age bins, young to old; from each bin the
    leanest or the heaviest is taken in turn, so the sheet spans age, sex and BMI.
    """
    table = clinical.dropna(subset=["age", "bmi"]).sort_values("age")
    groups = [g for _, g in table.groupby("sex", sort=True)] if "sex" in table else [table]
    per_group = int(np.ceil(n / max(len(groups), 1)))
    chosen: list[str] = []
    for g, group in enumerate(groups):
        bins = np.array_split(np.arange(len(group)), min(per_group, len(group)))
        for b, rows in enumerate(bins):
            members = group.iloc[rows].sort_values("bmi")
            pick = 0 if (b + g) % 2 == 0 else len(members) - 1
            chosen.append(members.iloc[pick]["subject_id"])
    order = table.set_index("subject_id").loc[chosen].sort_values("age").index
    return list(order[:n])


def contact_sheet(
    meshes: dict[str, trimesh.Trimesh],
    landmarks: dict[str, dict[str, np.ndarray]],
    labels: dict[str, str],
    *,
    views: tuple[tuple[float, float], ...] = ((0.0, 0.0), (35.0, 0.0)),
    image_size: int = 320,
    columns: int = 4,
    title: str = "",
) -> plt.Figure:
    """Render each face frontal (from its landmarks) and at an angle, in a labelled grid.

    Parameters
    ----------
    meshes : subject_id -> mesh in mm, any pose
    landmarks : subject_id -> {name: (3,) point in the mesh's frame}, needs the frame landmarks
    labels : subject_id -> caption
    """
    ids = [s for s in labels if s in meshes and s in landmarks]
    rows = int(np.ceil(len(ids) / columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.1 * columns * len(views), 2.6 * rows), squeeze=False
    )
    with FaceRenderer(image_size, distance_mm=430.0, background=(1, 1, 1)) as renderer:
        for ax, sid in zip(axes.ravel(), ids, strict=False):
            frontal = meshes[sid].copy()
            transform = landmark_frame(landmarks[sid])
            frontal.apply_transform(transform)
            # Look at the middle of the face: above and behind the nose tip.
            colour, _ = renderer.render(frontal, list(views), centre=np.array([0, 15.0, -45.0]))
            ax.imshow(np.concatenate(list(colour), axis=1))
            ax.set_title(f"{sid}\n{labels[sid]}", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def template_figure(template) -> plt.Figure:
    """The template face with its landmarks: mesh rendered front and side, points labelled."""
    from face_health.views.rendering import TEMPLATE_FACE_CENTRE

    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
    pts = template.landmarks
    for ax, (i, j), title in zip(
        axes[:2], ((0, 1), (2, 1)), ("front (x, y)", "side (z, y)"), strict=True
    ):
        ax.scatter(pts[:, i], pts[:, j], s=14, c="tab:red")
        for name, p in zip(template.landmark_names, pts, strict=True):
            ax.annotate(name, (p[i], p[j]), fontsize=7, xytext=(2, 2), textcoords="offset points")
        ax.set_aspect("equal")
        ax.set_title(f"template landmarks, {title}, mm")
        ax.grid(alpha=0.3)
    if template.mesh is not None:
        with FaceRenderer(360, distance_mm=420.0, background=(1, 1, 1)) as renderer:
            colour, _ = renderer.render(
                template.mesh, [(0.0, 0.0), (40.0, 0.0)], centre=TEMPLATE_FACE_CENTRE
            )
        axes[2].imshow(np.concatenate(list(colour), axis=1))
        axes[2].set_title(f"template mesh (from {template.source_subject})")
    axes[2].axis("off")
    fig.tight_layout()
    return fig


def views_contact_sheet(views: dict[str, dict[str, np.ndarray]]) -> plt.Figure:
    """One row per subject, its directional views left to right (front first)."""
    subjects = list(views)
    names = list(next(iter(views.values()))) if subjects else []
    fig, axes = plt.subplots(
        max(len(subjects), 1),
        max(len(names), 1),
        figsize=(1.3 * len(names), 1.5 * len(subjects)),
        squeeze=False,
    )
    for r, sid in enumerate(subjects):
        for c, name in enumerate(names):
            axes[r, c].imshow(views[sid][name])
            if r == 0:
                axes[r, c].set_title(name.replace("_", " "), fontsize=6)
        axes[r, 0].set_ylabel(sid, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
