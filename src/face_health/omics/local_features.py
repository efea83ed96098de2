"""The local-features stage for one subject: its 20 regions, their QC and radiomics.

:func:`subject_local_features` is what the feature pipeline's workers and the scorer of new
scans both run on an aligned face, with the same ``radiomics`` settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import trimesh

from face_health import schema
from face_health.alignment.similarity import landmark_table_to_dict
from face_health.errors import RegionError
from face_health.landmarks.fitted import face_regions
from face_health.omics.radiomics import subject_radiomics
from face_health.omics.regions import RegionMap, region_qc

if TYPE_CHECKING:
    from face_health.config import RadiomicsSettings


@dataclass
class SubjectRegions:
    """One aligned face's regions (``region_map``; ``labels`` one int16 per mesh face), its
    ``region_radiomics`` row (``<region>__<feature>``) and its region QC."""

    region_map: RegionMap
    radiomics: dict[str, float]
    qc: dict[str, Any]

    @property
    def labels(self) -> np.ndarray:
        return self.region_map.labels.astype(np.int16)


def subject_regions(
    mesh: trimesh.Trimesh,
    landmark_table: pd.DataFrame,
    fitted_vertices: np.ndarray | None,
    settings: RadiomicsSettings,
) -> RegionMap:
    """The 20 regions of one aligned face: from its fitted face model's topology, or cut on
    the scan's graph by the landmarks placed (``settings.region_topology``)."""
    found = landmark_table
    if "status" in landmark_table:
        found = landmark_table[landmark_table["status"] == "ok"]
    return face_regions(
        mesh, landmark_table_to_dict(found), fitted_vertices, settings.region_topology
    )


def subject_local_features(
    mesh: trimesh.Trimesh,
    landmark_table: pd.DataFrame,
    fitted_vertices: np.ndarray | None,
    template_centroids: dict[str, list[float]],
    settings: RadiomicsSettings,
) -> SubjectRegions:
    """Regions (:func:`subject_regions`), region QC and radiomics of one aligned face (mm)."""
    region_map = subject_regions(mesh, landmark_table, fitted_vertices, settings)
    qc = region_qc(region_map, mesh)
    empty = len(schema.REGIONS) - qc["n_regions_nonempty"]
    if empty > settings.max_empty_regions:
        raise RegionError(
            f"{empty} of {len(schema.REGIONS)} regions empty ({qc['region_reason']}), more than "
            f"radiomics.max_empty_regions {settings.max_empty_regions}: their features would "
            "be the training cohort's, not this face's (a scan that does not cover the face)"
        )
    row = subject_radiomics(
        mesh,
        {r: region_map.faces_of(r) for r in schema.REGIONS},
        template_centroids={r: np.asarray(c) for r, c in template_centroids.items()},
        mm_per_pixel=settings.mm_per_pixel,
        levels=settings.levels,
    )
    return SubjectRegions(region_map, row, qc)
