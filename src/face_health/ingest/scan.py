"""Reading, units, cleaning and quality control of one 3D face scan.

The first stage of the method: a raw file (OBJ + MTL + texture, PLY, STL, OFF, GLB/glTF)
becomes one clean triangle mesh in millimetres with its colour (UV + image, or vertex
colours), and one QC record that says in plain words what was wrong with it.
:func:`ingest_scan` never raises for bad scan data, so one broken file cannot stop a cohort.
The checks of a file's content live in :mod:`face_health.ingest.checks`, the seam-preserving
decimation in :mod:`face_health.ingest.decimation`.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from time import perf_counter
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from face_health.colour import has_vertex_colors, texture_image, visual_kind
from face_health.errors import DataError
from face_health.ingest.checks import (
    FolderResolver,
    ScanError,
    _check_content,
    _check_gltf_uris,
    _check_obj,
    _check_ply,
    _obj_index_error,
    _obj_texture_material,
    obj_for_parser,
)
from face_health.ingest.decimation import _subset, decimate
from face_health.ingest.limits import (
    ScanLimits,
    active_limits,
    check_embedded_images,
    check_file_size,
    check_image_file,
    using_limits,
    working_image,
)
from face_health.ingest.surface import orient_outward, surface_noise_deg

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
COMPANION_SUFFIXES = (
    ".mtl", ".png", ".jpg", ".jpeg", ".bmp", ".tga", ".bin", ".txt", ".csv", ".json",
)  # fmt: skip
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tga")
UNIT_SCALES: dict[str, float] = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
#: Share of faces removed by cleaning above which a scan is flagged for a human look.
HEAVY_CLEANING_FRACTION = 0.2
QC_COLUMNS = (
    "subject_id", "status", "reason", "source_format", "n_vertices_raw", "n_faces_raw",
    "n_vertices", "n_faces", "bbox_x_mm", "bbox_y_mm", "bbox_z_mm", "units_inferred",
    "scale_to_mm", "has_texture", "has_vertex_colors", "surface_noise_deg", "rewound", "seconds",
)  # fmt: skip


def group_scan_files(relative_paths: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Find each subject's mesh file in the listing of a raw cohort folder.

    Parameters
    ----------
    relative_paths : iterable of str
        Paths relative to the cohort folder, e.g. ``"s001.ply"`` or ``"s002/scan.obj"``
        (the keys of a Kedro ``PartitionedDataset``).

    Returns
    -------
    scans : dict of str to str
        ``subject_id -> relative path`` of its one mesh file, sorted by subject.
    rejected : dict of str to str
        ``subject_id`` (or file stem) ``-> reason`` for entries that are not usable scans.
        Companion files (materials, images, tables) are ignored silently.
    """
    found: dict[str, list[str]] = {}
    unsupported: dict[str, list[str]] = {}
    for raw in relative_paths:
        path = PurePosixPath(str(raw).replace("\\", "/"))
        if not path.name or any(part.startswith(".") for part in path.parts):
            continue  # hidden files (.DS_Store, .gitkeep) are not scans
        # a top-level file is named after its subject; a nested file belongs to its folder
        subject = path.stem if len(path.parts) == 1 else path.parts[0]
        suffix = path.suffix.lower()
        if suffix in MESH_SUFFIXES:
            found.setdefault(subject, []).append(str(path))
        elif suffix not in COMPANION_SUFFIXES:
            unsupported.setdefault(subject, []).append(suffix or "(no extension)")
    supported = ", ".join(MESH_SUFFIXES)
    scans: dict[str, str] = {}
    rejected: dict[str, str] = {}
    for subject in sorted(found.keys() | unsupported.keys()):
        meshes = sorted(found.get(subject, []))
        if len(meshes) == 1:
            scans[subject] = meshes[0]
        elif meshes:
            rejected[subject] = f"{len(meshes)} mesh files for one subject: {', '.join(meshes)}"
        else:
            kinds = ", ".join(f"'{s}'" for s in sorted(set(unsupported[subject])))
            rejected[subject] = f"unsupported format {kinds} (supported: {supported})"
    return scans, rejected


_FACE_LINE = re.compile(r"^f[ \t]", re.M)


def read_scan(
    path: str | os.PathLike, *, companion_texture: bool = True, limits: ScanLimits | None = None
) -> trimesh.Trimesh:
    """Read one scan file into one mesh, keeping its texture or vertex colours.

    Scenes (glTF, multi-material OBJ) are flattened into one mesh with node transforms applied;
    vertex order is kept where trimesh allows. A missing texture image is not an error: the
    geometry loads and ``mesh.metadata['warnings']`` says what is missing.

    Parameters
    ----------
    path : str or os.PathLike
        A file with one of :data:`MESH_SUFFIXES`.
    companion_texture : bool
        When the mesh has UV but its file names no image, use an image beside it: the one with
        the mesh's stem, or the only image in a folder that holds only this mesh. It gets the
        same material as a texture named by an MTL (one material resolution for both).
    limits : ScanLimits, optional
        Cost limits (:mod:`face_health.ingest.limits`); default: the ones ``ingest_scan``
        made active, else none (reading the pipeline's own intermediate files).

    Returns
    -------
    mesh : trimesh.Trimesh
        ``vertices (n, 3) float``, ``faces (m, 3) int``; metadata ``source_file``,
        ``source_format`` and ``warnings`` (list of str).

    Raises
    ------
    ScanError
        Anything unusable: not a regular file (a folder, a FIFO, a device), unsupported
        format, empty, truncated, not a mesh, zero faces, a material or texture path that
        leaves the scan's folder; ``limits.ScanTooLargeError`` (a ``ScanError``) above a cost
        limit.
    """
    path = Path(path)
    limits = limits if limits is not None else active_limits()
    _check_regular_file(path)
    fmt = path.suffix.lower()
    if fmt not in MESH_SUFFIXES:
        raise ScanError(f"unsupported format '{fmt}' (supported: {', '.join(MESH_SUFFIXES)})")
    check_file_size(path, limits, "scan file")
    data = path.read_bytes()
    _check_content(data, fmt)
    text = data.decode("utf-8", "replace") if fmt == ".obj" else ""
    problems = _check_obj(text, path.parent, limits) if fmt == ".obj" else []
    if fmt == ".ply":
        problems += _check_ply(data, path.parent, limits)
    if fmt == ".gltf":
        _check_gltf_uris(data, path.parent)
    if fmt in (".glb", ".gltf"):
        check_embedded_images(path, data, limits)
    n_face_lines = len(_FACE_LINE.findall(text)) if fmt == ".obj" else 0
    del data
    stripped = obj_for_parser(text) if fmt == ".obj" else None
    source: Any = str(path) if stripped is None else io.BytesIO(stripped.encode())
    del stripped, text  # the parser reads its own copy: do not hold two during the parse
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # trimesh's NaN warnings on odd UVs say nothing new
            scene = trimesh.load_scene(
                source,
                file_type=fmt[1:],
                resolver=FolderResolver(str(path)),  # companions from the scan's folder only
                process=False,
                maintain_order=True,
            )
            parts = scene.dump()
    except Exception as exc:
        text = path.read_text("utf-8", "replace") if fmt == ".obj" else ""
        reason = _obj_index_error(text) if fmt == ".obj" else None
        raise reason or ScanError(f"could not parse {fmt[1:].upper()} file: {exc}") from exc
    meshes = [p for p in parts if isinstance(p, trimesh.Trimesh) and len(p.faces)]
    if n_face_lines > sum(len(m.faces) for m in meshes):  # each face line gives >= 1 triangle
        raise ScanError(f"truncated OBJ: only some of its {n_face_lines} faces could be read")
    if not meshes:
        n_points = sum(len(getattr(p, "vertices", ())) for p in parts)
        raise ScanError(
            f"zero faces ({n_points} vertices, no faces)" if n_points else "no geometry"
        )
    mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
    if fmt == ".stl":
        mesh.merge_vertices()  # STL stores every triangle corner apart; weld for connectivity
    untextured = visual_kind(mesh) == "texture" and texture_image(mesh) is None
    image_path = _companion_image(path) if companion_texture and untextured else None
    if image_path is not None:
        check_image_file(image_path, limits)
        with Image.open(image_path) as image:
            image = working_image(image, limits, image_path.name)
            image.load()
        mesh.visual.material = _obj_texture_material(image)
        problems.append(f"texture taken from {image_path.name} beside the mesh")
    elif fmt == ".obj" and texture_image(mesh) is not None:
        # an MTL's image gets the very material an image beside the mesh gets: the scan's
        # colour is its image, not the exporter's ambient / specular terms
        mesh.visual.material = _obj_texture_material(texture_image(mesh))
    note = _downsample_texture(mesh, limits)
    if note:
        problems.append(note)
    mesh.metadata = {k: v for k, v in mesh.metadata.items() if _plain_metadata(k, v)}
    mesh.metadata.update(source_file=str(path), source_format=fmt[1:], warnings=problems)
    return mesh


def infer_units(
    mesh: trimesh.Trimesh, plausible_size_mm: tuple[float, float] = (90.0, 700.0)
) -> tuple[str, float]:
    """Guess the length unit of a head or face scan from its size.

    Rule: ``size`` is the longest side of the axis-aligned bounding box (scan axes are not
    standardised, so "width" cannot be picked). A face is about 120-160 mm wide and 200 mm
    tall, a bust up to about 600 mm, so the unit is the one of mm / cm / m that puts ``size``
    inside ``plausible_size_mm``. The three ranges do not overlap (a metres scan measures
    0.09-0.7, centimetres 9-70, millimetres 90-700); a size between them takes the unit whose
    range is nearest on a log scale, and callers should flag it as uncertain.

    Returns
    -------
    units : str
        ``'mm'``, ``'cm'`` or ``'m'``.
    scale : float
        Factor to millimetres (1, 10 or 1000).
    """
    finite = mesh.vertices[np.isfinite(mesh.vertices).all(axis=1)]
    size = float(np.ptp(finite, axis=0).max()) if len(finite) else 0.0
    if not math.isfinite(size) or size <= 0:
        raise ScanError("cannot infer units: the mesh has no extent")
    low, high = plausible_size_mm

    def distance(scale: float) -> float:
        scaled = size * scale
        return max(math.log(low / scaled), math.log(scaled / high), 0.0)

    units = min(UNIT_SCALES, key=lambda u: distance(UNIT_SCALES[u]))
    return units, UNIT_SCALES[units]


def to_millimetres(
    mesh: trimesh.Trimesh,
    units: str = "auto",
    plausible_size_mm: tuple[float, float] = (90.0, 700.0),
) -> tuple[trimesh.Trimesh, str, float]:
    """Scale a copy of ``mesh`` to millimetres.

    Parameters
    ----------
    units : {'auto', 'mm', 'cm', 'm'}
        The file's unit; ``'auto'`` infers it with :func:`infer_units`.

    Returns
    -------
    mesh_mm : trimesh.Trimesh
        Scaled copy; metadata ``units_inferred``, ``scale_to_mm`` and ``units`` set.
    units : str
        The unit used.
    scale : float
        The factor applied.
    """
    _check_units(units)
    if units == "auto":
        units, scale = infer_units(mesh, plausible_size_mm)
    else:
        scale = UNIT_SCALES[units]
    scaled = mesh.copy()
    scaled.vertices = mesh.vertices * scale
    scaled.metadata.update(units_inferred=units, scale_to_mm=scale, units="millimeters")
    return scaled, units, scale


def clean_mesh(
    mesh: trimesh.Trimesh, *, vertex_budget: int = 60000, min_component_fraction: float = 0.05
) -> tuple[trimesh.Trimesh, list[str]]:
    """Remove broken geometry and stray parts, then decimate to ``vertex_budget`` vertices.

    Steps: drop NaN/inf vertices and their faces; drop degenerate faces (a repeated corner
    after welding seams, or an area below ``(1e-6 * bbox diagonal)**2``); keep the largest
    connected component plus any with ``>= min_component_fraction`` of its faces (scanner
    fragments and floating noise go); drop unreferenced vertices, keeping the order of the
    rest; above the budget, decimate with fast-simplification and carry UV / vertex colours
    over from the nearest original vertex (UV seams kept, see :func:`decimate`).

    Returns
    -------
    mesh : trimesh.Trimesh
        The cleaned mesh; ``metadata['cleaning']`` holds the counts behind the notes.
    notes : list of str
        What was done, e.g. ``'kept 1 of 37 components'``.

    Raises
    ------
    ScanError
        When no face survives.
    """
    notes: list[str] = []
    n_faces_in = len(mesh.faces)
    if n_faces_in == 0:
        raise ScanError("zero faces")
    unreferenced = len(mesh.vertices) - len(np.unique(mesh.faces))
    finite = np.isfinite(mesh.vertices).all(axis=1)
    if not finite.all():
        notes.append(f"removed {int((~finite).sum())} vertices with NaN/inf coordinates")
        mesh = _subset(mesh, finite[mesh.faces].all(axis=1))
        if len(mesh.faces) == 0:
            raise ScanError("zero faces after cleaning: every face has a NaN/inf vertex")
    if unreferenced:
        notes.append(f"removed {unreferenced} unreferenced vertices")
    # weld by position so UV seams neither split components nor hide repeated corners
    welded = trimesh.grouping.unique_rows(mesh.vertices)[1][mesh.faces]
    diagonal = float(np.linalg.norm(np.ptp(mesh.vertices, axis=0)))
    # relative area threshold: "zero" must mean the same for a scan in metres and in mm
    tiny = trimesh.triangles.area(mesh.vertices[mesh.faces]) <= (1e-6 * diagonal) ** 2
    repeated = (welded[:, [0, 1, 2]] == welded[:, [1, 2, 0]]).any(axis=1)
    degenerate = repeated | tiny
    if degenerate.any():
        notes.append(f"removed {int(degenerate.sum())} degenerate faces")
    keep = ~degenerate
    if keep.any():
        adjacency = trimesh.graph.face_adjacency(faces=welded[keep])
        labels = trimesh.graph.connected_component_labels(adjacency, node_count=int(keep.sum()))
        sizes = np.bincount(labels)
        kept_labels = sizes >= max(sizes.max() * min_component_fraction, 1)
        if not kept_labels.all():
            notes.append(f"kept {int(kept_labels.sum())} of {len(sizes)} components")
        keep[keep] = kept_labels[labels]
    if not keep.any():
        raise ScanError("zero faces after cleaning")
    mesh = _subset(mesh, keep)
    removed = n_faces_in - len(mesh.faces)
    decimated_from = 0
    if len(mesh.vertices) > vertex_budget:
        decimated_from = len(mesh.vertices)
        mesh = decimate(mesh, vertex_budget)
        notes.append(f"decimated {decimated_from} -> {len(mesh.vertices)} vertices")
    mesh.metadata["cleaning"] = {
        "nonfinite_vertices": int((~finite).sum()),
        "faces_removed": int(removed),
        "faces_removed_fraction": removed / max(n_faces_in, 1),
        "decimated_from": decimated_from,
    }
    mesh.metadata["cleaning_notes"] = list(notes)
    return mesh, notes


#: The reason a colourless scan fails when colour is required (training and scoring alike).
NO_COLOUR_REFUSED = (
    "no colour: the method reads skin colour and texture, and this scan has neither a texture "
    "image nor vertex colours (for an OBJ, keep its MTL and texture beside it)"
)


def ingest_scan(
    source: str | os.PathLike | Callable[[], trimesh.Trimesh],
    subject_id: str,
    *,
    units: str = "auto",
    vertex_budget: int = 60000,
    min_component_fraction: float = 0.05,
    require_colour: bool = False,
    plausible_width_mm: tuple[float, float] = (90.0, 700.0),
    limits: ScanLimits | None = None,
    warn_surface_noise_deg: float = 20.0,
    max_surface_noise_deg: float = 45.0,
) -> tuple[trimesh.Trimesh | None, dict[str, Any]]:
    """Read, clean and scale one scan to millimetres, recording QC; never raises on bad data.

    Parameters
    ----------
    source : path or callable
        A scan file, or a no-argument loader returning a mesh (what a Kedro
        ``PartitionedDataset`` hands a node). Any exception from the loader (or the file's
        parser) becomes a failed row; after reading, only a ``DataError`` does: anything else
        from cleaning or scaling is a bug and propagates (``face_health.errors``).
    subject_id : str
        The partition key.
    units : {'auto', 'mm', 'cm', 'm'}
        The file's unit; ``'auto'`` infers it. The unit used is recorded as
        ``units_inferred``. An invalid value raises ``ValueError`` (a configuration error,
        unlike bad scan data).
    require_colour : bool
        Fail a scan with neither a texture image nor vertex colours (``ingest.require_colour``:
        the method reads skin colour and texture); otherwise it is a warning.
    plausible_width_mm : (2,) float
        Range for the longest bounding-box side after scaling; outside it, units are flagged.
    limits : ScanLimits, optional
        Cost limits (``IngestSettings.limits()``; :mod:`face_health.ingest.limits`), active
        around the loader too: files and textures above them are refused (a failed row),
        textures downsampled, meshes above ``max_vertices`` decimated before cleaning. None
        (a library call) reads without limits.
    warn_surface_noise_deg, max_surface_noise_deg : float
        Surface noise (:func:`face_health.ingest.surface.surface_noise_deg`, the median angle
        between neighbouring triangles' normals, recorded as ``surface_noise_deg``) above
        which the scan is a warning, and above which it fails: shading, curvature and the
        landmarks would read the noise. Faces wound inward (a mirrored or inverted export)
        are re-wound outward (``rewound``, a warning).

    Returns
    -------
    mesh : trimesh.Trimesh or None
        Clean mesh in mm (None when failed); metadata ``subject_id``, ``units_inferred``,
        ``scale_to_mm``, ``warnings`` and ``qc`` (the record).
    record : dict
        One QC row with the keys of :data:`QC_COLUMNS`; ``status`` is ``'ok'``, ``'warning'``
        or ``'failed'``, ``reason`` joins plain-word reasons with ``'; '``.
    """
    _check_units(units)
    start = perf_counter()
    record: dict[str, Any] = dict.fromkeys(QC_COLUMNS, 0)
    record.update(subject_id=subject_id, status="ok", reason="", units_inferred="")
    record.update(
        dict.fromkeys(
            ("bbox_x_mm", "bbox_y_mm", "bbox_z_mm", "scale_to_mm", "surface_noise_deg"), math.nan
        )
    )
    record.update(has_texture=False, has_vertex_colors=False, rewound=False)
    is_loader = callable(source)
    record["source_format"] = "" if is_loader else Path(source).suffix.lower().lstrip(".")
    problems: list[str] = []
    result = None
    try:
        try:
            with using_limits(limits):
                raw = source() if is_loader else read_scan(source, limits=limits)
        except DataError:
            raise
        except Exception as exc:  # a parser fails on bad bytes in many ways: all are the data's
            raise ScanError(_error_message(exc)) from exc
        if not isinstance(raw, trimesh.Trimesh):
            raise ScanError(f"loader returned {type(raw).__name__}, not a triangle mesh")
        record["source_format"] = raw.metadata.get("source_format", record["source_format"])
        record.update(n_vertices_raw=len(raw.vertices), n_faces_raw=len(raw.faces))
        problems += list(raw.metadata.get("warnings", []))
        if limits is not None:
            note = _downsample_texture(raw, limits)  # a loader that bypassed read_scan
            if note:
                problems.append(note)
            raw, note = _predecimate(raw, limits.max_vertices)
            if note:
                problems.append(note)
        clean, notes = clean_mesh(
            raw, vertex_budget=vertex_budget, min_component_fraction=min_component_fraction
        )
        stats = clean.metadata["cleaning"]
        if stats["nonfinite_vertices"]:
            problems.append(f"removed {stats['nonfinite_vertices']} NaN/inf vertices")
        if stats["faces_removed_fraction"] > HEAVY_CLEANING_FRACTION:
            share = 100 * stats["faces_removed_fraction"]
            problems.append(f"heavy cleaning: {share:.0f}% of faces removed")
        if stats["decimated_from"]:
            problems.append(
                f"decimated {stats['decimated_from']} -> {len(clean.vertices)} vertices"
            )
        result, used_units, scale = to_millimetres(clean, units, plausible_width_mm)
        extents = np.ptp(result.vertices, axis=0)
        low, high = plausible_width_mm
        if not low <= extents.max() <= high:
            problems.append(
                f"units uncertain: longest side {extents.max():.0f} mm with units '{used_units}'"
                f" is outside {low:.0f}-{high:.0f} mm"
            )
        record.update(n_vertices=len(result.vertices), n_faces=len(result.faces))
        record.update(bbox_x_mm=float(extents[0]), bbox_y_mm=float(extents[1]))
        record.update(bbox_z_mm=float(extents[2]), units_inferred=used_units)
        record.update(scale_to_mm=float(scale), has_texture=texture_image(result) is not None)
        record["has_vertex_colors"] = has_vertex_colors(result)
        noise = surface_noise_deg(result)
        record["surface_noise_deg"] = round(noise, 2)
        if not noise <= max_surface_noise_deg:  # NaN too: no two faces share an edge
            raise ScanError(_noise_message(noise, max_surface_noise_deg, "above"))
        if noise > warn_surface_noise_deg:
            problems.append(_noise_message(noise, warn_surface_noise_deg, "warning above"))
        record["rewound"] = orient_outward(result)
        if record["rewound"]:
            problems.append("faces wound inward (a mirrored or inverted export): re-wound outward")
        record["status"] = "warning" if problems else "ok"
        if not (record["has_texture"] or record["has_vertex_colors"]):
            if require_colour:  # the model reads skin colour: shape alone would mislead it
                problems.insert(0, NO_COLOUR_REFUSED)
                record["status"], result = "failed", None
            else:
                problems.append("no colour: neither a texture image nor vertex colours")
                record["status"] = "warning"
    except DataError as exc:  # one broken scan must not stop the cohort; the row says why
        problems.insert(0, _error_message(exc))
        record["status"], result = "failed", None
    record["reason"] = "; ".join(problems)
    record["seconds"] = round(perf_counter() - start, 3)
    if result is not None:
        result.metadata.update(subject_id=subject_id, warnings=problems, qc=dict(record))
    return result, record


# ---------------------------------------------------------------------------- helpers
def _check_regular_file(path: Path) -> None:
    """A scan must be a regular file: a FIFO would block the reader, a device never ends."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ScanError(f"file not found: {path}") from None
    except OSError as exc:
        raise ScanError(f"cannot read {path}: {exc.strerror or exc}") from None
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    for test, kind in kinds.items():
        if test(mode):
            raise ScanError(f"not a regular file: {path} is {kind}, not a scan file")
    if not stat.S_ISREG(mode):
        raise ScanError(f"not a regular file: {path}")


def _predecimate(mesh: trimesh.Trimesh, max_vertices: int) -> tuple[trimesh.Trimesh, str]:
    """Above ``max_vertices``, the mesh decimated to it before cleaning (NaN/inf vertices
    dropped first: the simplifier cannot place them), and the note saying so."""
    n_in = len(mesh.vertices)
    if n_in <= max_vertices:
        return mesh, ""
    finite = np.isfinite(mesh.vertices).all(axis=1)
    if not finite.all():
        mesh = _subset(mesh, finite[mesh.faces].all(axis=1))
        if len(mesh.faces) == 0:
            raise ScanError("zero faces: every face has a NaN/inf vertex")
    metadata = dict(mesh.metadata)
    if len(mesh.vertices) > max_vertices:
        mesh = decimate(mesh, max_vertices)
    mesh.metadata = metadata
    return mesh, (
        f"decimated {n_in} -> {len(mesh.vertices)} vertices before cleaning "
        f"(ingest.max_vertices {max_vertices})"
    )


def _downsample_texture(mesh: trimesh.Trimesh, limits: ScanLimits | None) -> str:
    """The mesh's texture image at most ``limits.texture_working_size`` on its longest side
    (checked against the pixel cap first); the note saying so, or ``''``."""
    image = texture_image(mesh)
    if limits is None or image is None:
        return ""
    material = mesh.visual.material
    small = working_image(image, limits, "of the scan")
    if small is image:
        return ""
    if getattr(material, "baseColorTexture", None) is image:
        material.baseColorTexture = small
    else:
        material.image = small
    return (
        f"texture downsampled from {image.width} x {image.height} to {small.width} x "
        f"{small.height} pixels (ingest.texture_working_size)"
    )


def _noise_message(noise: float, limit: float, kind: str) -> str:
    if not math.isfinite(noise):
        return "no surface: no two triangles share an edge"
    return (
        f"surface noise: neighbouring triangles' normals differ by a median {noise:.0f} degrees "
        f"({kind} {limit:.0f}; smooth skin: under 10), so shading, curvature and landmarks "
        "would read the noise, not the face"
    )


def _check_units(units: str) -> None:
    if units != "auto" and units not in UNIT_SCALES:
        valid = ", ".join(repr(u) for u in ("auto", *UNIT_SCALES))
        raise ValueError(f"units must be one of {valid}; got {units!r}")


def _error_message(exc: BaseException) -> str:
    # Kedro wraps a dataset's load error in DatasetError; the cause holds the plain reason.
    inner = exc
    while inner.__cause__ is not None and not isinstance(inner, ScanError):
        inner = inner.__cause__
    if isinstance(inner, ScanError):
        return str(inner)
    return f"{type(inner).__name__}: {inner}" if str(inner) else type(inner).__name__


def _companion_image(path: Path) -> Path | None:
    siblings = sorted(p for p in path.parent.iterdir() if p.is_file())
    images = [p for p in siblings if p.suffix.lower() in IMAGE_SUFFIXES]
    same_stem = [p for p in images if p.stem == path.stem]
    if len(same_stem) == 1:
        return same_stem[0]
    n_meshes = sum(p.suffix.lower() in MESH_SUFFIXES for p in siblings)
    return images[0] if len(images) == 1 and n_meshes == 1 else None


def _plain_metadata(key: str, value: Any) -> bool:
    # drop parser internals (PLY raw arrays, STL header bytes) so metadata stays JSON for GLB
    if key.startswith("_") or key in {"header", "name", "node", "from_gltf_primitive"}:
        return False
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
