"""Pictures for people: contact sheets of faces and QC summaries."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless; figures are saved by Kedro datasets, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import trimesh  # noqa: E402

from face_health.alignment import landmark_frame  # noqa: E402
from face_health.rendering import FaceRenderer  # noqa: E402


def pick_diverse_subjects(clinical: pd.DataFrame, n: int, *, seed: int = 0) -> list[str]:
    """Up to ``n`` subject ids spread over sex, age and BMI (for a contact sheet).

    Subjects are ranked by age within each sex and taken at evenly spaced ranks, alternating
    sexes, so the sheet runs from young to old for both; BMI then varies as it does.
    """
    table = clinical.dropna(subset=["age"]).sort_values("age")
    groups = [g for _, g in table.groupby("sex", sort=True)] if "sex" in table else [table]
    per_group = int(np.ceil(n / max(len(groups), 1)))
    chosen: list[str] = []
    for group in groups:
        idx = np.unique(np.linspace(0, len(group) - 1, min(per_group, len(group))).round())
        chosen += list(group.iloc[idx.astype(int)]["subject_id"])
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
