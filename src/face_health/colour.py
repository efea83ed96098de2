"""Does this mesh have colour, and where from: the one answer every stage uses.

A scan's colour comes from a texture image (OBJ + MTL, glTF, or an image beside the mesh that
ingest attached), from per-vertex colours (PLY) or from per-face colours; trimesh reports all
three through ``mesh.visual`` but can claim a texture it has lost (an OBJ cut short keeps the
visual and drops the UV; a material naming no image gets a 2 x 2 one-colour placeholder).
:func:`colour_source` sees through both, and ingest, decimation, rendering and radiomics ask it
(or :func:`texture_image` / :func:`texture_array`) rather than ``mesh.visual`` directly, so a
mesh is coloured or not in the same way everywhere.
"""

from __future__ import annotations

import numpy as np
import trimesh
from PIL import Image

#: Images of at most this many pixels are trimesh's placeholders, not a scan's texture.
_PLACEHOLDER_PIXELS = 4


def visual_kind(mesh: trimesh.Trimesh) -> str | None:
    """``'texture'`` (one UV per vertex), ``'vertex'``, ``'face'`` or None: what the visual is,
    the UV checked (trimesh can say 'texture' for a visual whose UV it dropped)."""
    kind = getattr(mesh.visual, "kind", None)
    if kind == "texture":
        uv = getattr(mesh.visual, "uv", None)
        return "texture" if uv is not None and len(uv) == len(mesh.vertices) else None
    return kind


def texture_image(mesh: trimesh.Trimesh) -> Image.Image | None:
    """The mesh's texture image (a material's ``image`` or glTF ``baseColorTexture``), or
    None without UV or without a real image."""
    if visual_kind(mesh) != "texture":
        return None
    material = mesh.visual.material
    image = getattr(material, "baseColorTexture", None)
    if image is None:
        image = getattr(material, "image", None)
    if image is None or image.width * image.height <= _PLACEHOLDER_PIXELS:
        return None
    return image


def texture_array(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """(H, W, 3) float32 sRGB in [0, 1] of :func:`texture_image`, or None."""
    image = texture_image(mesh)
    return None if image is None else np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def colour_source(mesh: trimesh.Trimesh) -> str | None:
    """Where the mesh's colour comes from: ``'texture'``, ``'vertex'``, ``'face'`` or None."""
    kind = visual_kind(mesh)
    if kind == "texture":
        return "texture" if texture_image(mesh) is not None else None
    return kind if kind in ("vertex", "face") else None


def has_vertex_colors(mesh: trimesh.Trimesh) -> bool:
    """True when the mesh carries per-vertex colours."""
    return visual_kind(mesh) == "vertex"


def has_colour(mesh: trimesh.Trimesh) -> bool:
    """Whether the mesh carries colour a renderer or radiomics can use: a texture image or
    vertex colours (face colours are flat shading from a converter, not a scan's colour)."""
    return colour_source(mesh) in ("texture", "vertex")
