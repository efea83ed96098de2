"""Two properties of a cleaned scan's surface that decide whether the method can read it.

- **Orientation.** The method renders the face lit from the front and reads curvature with
  the sign of the normals, so the triangles must wind outward (normals pointing away from
  the head). A scan mirrored by a tool (x -> -x) or exported with reversed winding has every
  normal pointing inward: :func:`orient_outward` detects it (the area-weighted normals point
  towards the surface's centroid rather than away from it) and re-winds the faces. A mirrored
  face is still a face: after re-winding it is read as the face it now is.
- **Surface noise.** :func:`surface_noise_deg` is the median angle between the normals of
  neighbouring triangles. Smooth skin sampled at any resolution a face scanner produces bends
  a few degrees from one triangle to the next (measured: 5.6-7.4 degrees on simulated faces,
  a 10 k-vertex real scan with 5.4 mm edges and a 0.65 mm-edge real scan); noise of
  amplitude comparable to the edge length turns the normals at random (76 degrees at 1 mm
  noise on 1.7 mm edges, 117 degrees at 5 mm). Shading, curvature and the landmarks then
  read the noise, not the face. The thresholds are ``ingest.warn_surface_noise_deg`` and
  ``ingest.max_surface_noise_deg`` (chosen from these angles; how far predictions drift
  with noise below them is not measured yet).
"""

from __future__ import annotations

import numpy as np
import trimesh


def outward_score(mesh: trimesh.Trimesh) -> float:
    """Area-weighted mean of ``normal . (centre - centroid)`` over the faces, in the mesh's
    units: positive when the normals point away from the surface's centroid (a face scan's
    centroid lies behind the skin, inside the head), negative when they point inward."""
    if len(mesh.faces) == 0:
        return 0.0
    centroid = np.average(mesh.triangles_center, axis=0, weights=mesh.area_faces)
    radial = ((mesh.triangles_center - centroid) * mesh.face_normals).sum(axis=1)
    total = float(mesh.area_faces.sum())
    return float((mesh.area_faces * radial).sum() / total) if total > 0 else 0.0


def orient_outward(mesh: trimesh.Trimesh) -> bool:
    """Re-wind ``mesh``'s faces in place when its normals point inward; True if it did.

    Only the order of each face's corners changes (UVs and colours stay with their
    vertices); the source file is not touched."""
    if outward_score(mesh) >= 0:
        return False
    # Not ``mesh.invert()``: in trimesh 5.2, with face normals already cached, it leaves the
    # normals as they were. New faces drop every cached normal instead.
    mesh.faces = np.ascontiguousarray(mesh.faces[:, ::-1])
    mesh._cache.clear()
    return True


def surface_noise_deg(mesh: trimesh.Trimesh) -> float:
    """Median angle (degrees) between the normals of triangles sharing an edge; NaN for a
    mesh without two adjacent faces."""
    angles = mesh.face_adjacency_angles
    if len(angles) == 0:
        return float("nan")
    return float(np.degrees(np.median(angles)))
