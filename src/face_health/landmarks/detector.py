"""Find named landmarks on a 3D scan: coarse pass to find the face, fine pass to place them.

1. Coarse: render the whole scan from a few directions around its own +z axis (scans arrive
   roughly facing +z with +y up, up to ~30 degrees off), wide enough to hold a bust; the
   network's peaks, triangulated, give rough landmarks and so a face frame. When the views
   do not look like a face to the network, the other 23 axis-aligned orientations (z-up
   exports, scans facing -z) and views sized to the scan itself (units inferred wrongly)
   are tried, and the most face-like is kept.
2. Fine: render close views orbiting that face frame (frontal, left, right, up, down), detect
   again and triangulate each landmark's rays robustly, snapped to the surface.
The fine pass may run again from its own frame (``fine_passes``); on the synthetic test split
a second pass gained 0.02 mm of mean error for 50 % more time, so one is the default.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import trimesh

from face_health.alignment.similarity import landmark_frame
from face_health.errors import NoFaceFoundError, TooFewLandmarksError
from face_health.ingest.decimation import decimate
from face_health.landmarks.consensus import consensus_landmarks
from face_health.landmarks.network import HeatmapNet, decode_heatmaps
from face_health.landmarks.training import load_landmark_model
from face_health.landmarks.views import FACE_CENTRE, network_input
from face_health.parallel import torch_threads
from face_health.views.cameras import OrthoCamera, orbit_camera
from face_health.views.rendering import OrthoRenderer

if TYPE_CHECKING:
    from face_health.config import LandmarkSettings

#: The checkpoint trained by the project on its synthetic cohort, shipped in the package.
SHIPPED_CHECKPOINT = "landmarks_synthetic.pt"


def shipped_checkpoint() -> Path:
    path = Path(str(resources.files("face_health") / "resources" / SHIPPED_CHECKPOINT))
    if not path.is_file():
        raise FileNotFoundError(f"the shipped landmark checkpoint is missing at {path}")
    return path


@dataclass(frozen=True)
class DetectorSettings:
    """Views and thresholds of the two passes."""

    coarse_views: tuple[tuple[float, float], ...] = (
        (0, 0), (-35, 0), (35, 0), (0, -25), (0, 25),
    )  # fmt: skip
    fine_views: tuple[tuple[float, float], ...] = (
        (0, 0), (-25, 0), (25, 0), (-50, 0), (50, 0), (0, -20), (0, 20),
        (-30, -20), (30, -20), (-30, 20), (30, 20),
    )  # fmt: skip
    fine_half_extent: float = 120.0
    coarse_margin: float = 0.55  # coarse half extent as a share of the scan's largest side
    coarse_half_extent_range: tuple[float, float] = (150.0, 320.0)
    fine_passes: int = 1  # a second pass: -0.02 mm mean error for +50 % time (benchmarked)
    render_vertex_budget: int = 6000  # views are rendered from a decimated copy (speed);
    # the points are still snapped to the full mesh
    render_passes: int = 1  # decimation passes for the copy: 1 is "about the budget" (faster)
    min_weight: float = 0.1
    # Fine pass: the closest surface point ('nearest'), or along each landmark's inlier rays
    # ('rays'). On synthetic test scans 'nearest' is better (1.22 vs 1.27 mm; reshaped faces
    # 1.62 vs 1.74), so it is the default.
    snap: str = "nearest"
    inlier_mm: float = 4.0
    coarse_inlier_mm: float = 10.0
    # Below this score (the mean heatmap peak of the coarse views; ~0.8 on faces facing +z,
    # ~0.5 upside down, ~0.35 at a sixth of the expected size) the detector probes the other
    # 23 axis-aligned orientations (z-up exports, scans facing -z) and, when the scan's size
    # disagrees with its units, views sized to the scan, and keeps the most face-like.
    search_below: float = 0.65
    batch_size: int = 16
    # Speed of the views and the network: pyrender's 4x multisampling, and the network in NHWC
    # memory under bfloat16 autocast. On 20 validation subjects of the default cohort
    # (benchmarks/landmark_speed_bench.py) multisampled float32 views with 4 decimation passes
    # gave 0.689 mm mean error in 1.73 s a scan; single-sample, bfloat16, 1 pass 0.724 mm in
    # 1.16 s (bfloat16 alone: 0.686 mm, 1.61 s). The network was trained on multisampled views.
    antialias: bool = False
    bf16: bool = True
    # Where the network runs: "auto" takes a CUDA GPU when torch sees one, else the CPU (the
    # views are rendered on the CPU either way; on a GPU the heatmaps differ from the CPU's
    # in the last bits, so compare landmarks of one device).
    device: str = "auto"


def network_device(name: str) -> torch.device:
    """``"auto"``: CUDA when torch sees a GPU, else the CPU; otherwise the device named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"landmark detector device {name!r}: torch sees no CUDA GPU here")
    return device


@dataclass
class LandmarkDetector:
    """A trained heatmap network and the procedure that turns its views into 3D landmarks."""

    net: HeatmapNet
    landmark_names: list[str]
    input_size: int
    output_stride: int
    settings: DetectorSettings = field(default_factory=DetectorSettings)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path | None = None, settings: DetectorSettings | None = None
    ) -> LandmarkDetector:
        """Load a checkpoint file; ``None`` loads the one shipped with the package."""
        net, hparams = load_landmark_model(path or shipped_checkpoint())
        return cls(
            net=net,
            landmark_names=list(hparams["landmark_names"]),
            input_size=int(hparams["input_size"]),
            output_stride=int(hparams["output_stride"]),
            settings=settings or DetectorSettings(),
        )

    def _predict(self, mesh, cameras: list[OrthoCamera], renderer: OrthoRenderer):
        rendered = renderer.render(mesh, cameras)
        images = network_input(rendered, cameras)
        heatmaps = []
        s = self.settings
        memory = torch.channels_last if s.bf16 else torch.contiguous_format
        device = network_device(s.device)
        net = self.net.to(device=device, memory_format=memory)  # in place; no-op once moved
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.bf16),
        ):
            for start in range(0, len(images), s.batch_size):
                batch = torch.from_numpy(images[start : start + s.batch_size]).to(device)
                out = net(batch.contiguous(memory_format=memory))
                heatmaps.append(out.float().cpu().numpy())
        pixels, peaks = decode_heatmaps(np.concatenate(heatmaps), self.output_stride)
        origins = np.empty(pixels.shape[:2] + (3,))
        directions = np.empty_like(origins)
        for v, cam in enumerate(cameras):
            origins[v], directions[v] = cam.rays(pixels[v])
        return origins, directions, np.clip(peaks, 0.0, None)

    def _table(self, mesh, shown, cameras, renderer, inlier_mm, snap="nearest") -> pd.DataFrame:
        origins, directions, weights = self._predict(shown, cameras, renderer)
        table = consensus_landmarks(
            origins,
            directions,
            weights,
            mesh=mesh,
            snap=snap,
            max_snap_mm=15.0 * inlier_mm / self.settings.inlier_mm,
            min_weight=self.settings.min_weight,
            inlier_mm=inlier_mm,
        )
        table.insert(0, "name", [self.landmark_names[i] for i in table["index"]])
        table = table.drop(columns="index")
        table.attrs["mean_peak"] = float(weights.mean())  # how face-like the views looked
        return table

    def detect(self, mesh: trimesh.Trimesh, renderer: OrthoRenderer | None = None) -> pd.DataFrame:
        """Landmarks of ``mesh`` (mm, any pose within ~30 degrees of facing +z).

        Returns one row per landmark: ``name, x, y, z`` (mm, the mesh's frame), ``confidence``,
        ``n_rays, n_inliers, residual_mm, snap_mm, status``. Raises ``NoFaceFoundError`` (a
        ``DataError`` and ``ValueError``) when the face cannot be found (too few of the frame
        landmarks in the coarse pass).
        """
        own = renderer is None
        renderer = renderer or OrthoRenderer(self.input_size, antialias=self.settings.antialias)
        try:
            s = self.settings
            extent = float(np.max(mesh.extents))
            half = float(np.clip(s.coarse_margin * extent, *s.coarse_half_extent_range))
            # Units may have been inferred wrongly (a scan in arbitrary units): the scan's own
            # size is the other guess of how wide the coarse views should be.
            halves = [half]
            if abs(np.log(s.coarse_margin * extent / half)) > np.log(1.25):
                halves.append(s.coarse_margin * extent)
            centre = mesh.bounds.mean(axis=0)
            # 128 px views of a 30k-vertex scan gain nothing from every triangle, and the
            # software rasteriser's time grows with them.
            shown = mesh
            if len(mesh.vertices) > s.render_vertex_budget:
                shown = decimate(mesh, s.render_vertex_budget, passes=s.render_passes)

            def coarse(axes: np.ndarray, half: float) -> pd.DataFrame:
                cameras = [
                    orbit_camera(axes, centre, yaw, pitch, half_extent=half, size=self.input_size)
                    for yaw, pitch in s.coarse_views
                ]
                inlier_mm = s.coarse_inlier_mm * half / halves[0]
                return self._table(mesh, shown, cameras, renderer, inlier_mm)

            table = coarse(AXIS_ROTATIONS[0], halves[0])
            if _coarse_score(table) < s.search_below:
                # Probe every orientation and size with one frontal view each (one batch),
                # then run the coarse pass where the network saw the most face-like image.
                candidates = [(axes, h) for axes in AXIS_ROTATIONS for h in halves]
                cameras = [
                    orbit_camera(axes, centre, 0.0, 0.0, half_extent=h, size=self.input_size)
                    for axes, h in candidates
                ]
                _, _, peaks = self._predict(shown, cameras, renderer)
                axes, h = candidates[int(np.argmax(peaks.mean(axis=1)))]
                table = max(table, coarse(axes, h), key=_coarse_score)
            for _ in range(s.fine_passes):
                frame = _frame_from(table)
                # Frame the face at the size the network was trained on, whatever the scan's
                # scale (a child, or a scan in arbitrary units).
                size = _face_size(table)
                to_world = np.linalg.inv(frame)
                face_centre = to_world[:3, :3] @ (FACE_CENTRE * size) + to_world[:3, 3]
                cameras = [
                    orbit_camera(
                        frame[:3, :3],
                        face_centre,
                        yaw,
                        pitch,
                        half_extent=s.fine_half_extent * size,
                        size=self.input_size,
                    )
                    for yaw, pitch in s.fine_views
                ]
                table = self._table(mesh, shown, cameras, renderer, s.inlier_mm * size, s.snap)
            return table
        finally:
            if own:
                renderer.close()


def _axis_rotations() -> list[np.ndarray]:
    """The 24 rotations that map the coordinate axes onto themselves, identity first."""
    rotations = [np.eye(3)]
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            r = np.zeros((3, 3))
            r[range(3), perm] = signs
            if np.linalg.det(r) > 0 and not np.allclose(r, np.eye(3)):
                rotations.append(r)
    return rotations


#: Candidate face orientations (rows: the face's x, y, z axes in scan coordinates).
AXIS_ROTATIONS = _axis_rotations()


def _coarse_score(table: pd.DataFrame) -> float:
    """How face-like a coarse pass's views looked to the network: the mean heatmap peak
    over views and landmarks; 0 when its landmarks give no frontal frame."""
    try:
        _frame_from(table)
    except NoFaceFoundError:
        return 0.0
    return float(table.attrs["mean_peak"])


#: Mean outer-canthal width (ex-ex) of adult faces, mm (Farkas 1994): the scale reference.
REFERENCE_BIOCULAR_MM = 90.0


def _face_size(table: pd.DataFrame) -> float:
    """The face's size relative to an average adult's, from its outer eye corners."""
    found = table[table["status"] == "ok"].set_index("name")
    if not {"ex_r", "ex_l"} <= set(found.index):
        return 1.0
    width = np.linalg.norm(
        found.loc["ex_l", ["x", "y", "z"]].to_numpy(float)
        - found.loc["ex_r", ["x", "y", "z"]].to_numpy(float)
    )
    return float(np.clip(width / REFERENCE_BIOCULAR_MM, 0.4, 2.5))


def _frame_from(table: pd.DataFrame) -> np.ndarray:
    found = table[table["status"] == "ok"].set_index("name")
    points = {n: found.loc[n, ["x", "y", "z"]].to_numpy(float) for n in found.index}
    try:
        return landmark_frame(points)
    except TooFewLandmarksError as exc:
        raise NoFaceFoundError(f"face not found: {exc}") from exc


def read_checkpoint(path: str | Path | None = None) -> dict:
    """The raw checkpoint dict (``state_dict``, ``hparams``) of a file, default the shipped one."""
    # weights_only: a checkpoint file is tensors and plain hparams; never run its pickle code
    checkpoint = torch.load(path or shipped_checkpoint(), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or {"state_dict", "hparams"} - set(checkpoint):
        raise ValueError(f"{path} is not a face_health landmark checkpoint")
    return checkpoint


def write_checkpoint(checkpoint: dict, path: str | Path) -> None:
    torch.save(checkpoint, path)


# The loaded network of a worker process, for its checkpoint file: one at a time (a new
# checkpoint replaces it), so that a long session that runs the stage again and again does
# not pile up networks; ``clear_detector_cache`` empties it.
_DETECTORS: dict[str, LandmarkDetector] = {}


def clear_detector_cache() -> None:
    """Forget the network ``detect_one`` loaded in this process."""
    _DETECTORS.clear()


def detect_one(
    source: Callable[[], trimesh.Trimesh] | trimesh.Trimesh,
    detector: str | LandmarkDetector,
    settings: LandmarkSettings,
) -> tuple[pd.DataFrame, dict[str, Any], np.ndarray | None]:
    """The landmark stage on one scan (a mesh or its loader), as the pipeline's workers and
    the scorer run it: ``locate.locate_landmarks`` with ``detector`` (or the network of a
    checkpoint file, loaded once per process) and the ``landmarks`` settings. Returns the
    landmark table, the QC record and the fitted model's vertices (float32, as stored; None
    with ``method: cnn``)."""
    from face_health.landmarks.locate import locate_landmarks

    if isinstance(detector, str):
        if detector not in _DETECTORS:
            _DETECTORS.clear()
            _DETECTORS[detector] = LandmarkDetector.from_checkpoint(detector)
        detector = _DETECTORS[detector]
    mesh = source() if callable(source) else source
    # One torch thread, as in the pipeline's workers: the network's sums then add up in one
    # order, and a scan gets the same landmarks (to the bit) in a training run, the command
    # line and the service; with two threads they moved by up to 0.05 mm through the fit.
    with torch_threads(1):
        table, qc, vertices = locate_landmarks(
            detector,
            mesh,
            method=settings.method,
            settings=settings.model_fit,
            min_confidence=settings.min_confidence,
            min_mean_confidence=settings.min_mean_confidence,
        )
    return table, qc, None if vertices is None else vertices.astype(np.float32)
