"""Headless rendering of face meshes with pyrender (EGL).

The camera looks at the face along -z (the face looks along +z, +y up, millimetres); a view is
named by the head's yaw and pitch relative to that camera. One ``FaceRenderer`` keeps one
OpenGL context and is reused for many meshes and views (context creation costs ~40 ms).

pyrender draws into a 4x multisampled framebuffer; Mesa's software rasteriser (llvmpipe) then
spends most of a view's time resolving samples. ``antialias=False`` gives a context
single-sample framebuffers instead: a 112 px view of an aligned face (30k vertices,
textured) takes 16 ms instead of 38 ms, and the images differ only where a silhouette
crosses a pixel (mean absolute difference 0.8 of 255). The directional views of the method
are rendered that way (``views.antialias``); pictures for people keep antialiasing.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import trimesh

from face_health.colour import has_colour

if TYPE_CHECKING:
    import pyrender

    from face_health.config import ViewSettings


@functools.cache
def _pyrender() -> Any:
    """pyrender, imported on first use rather than on import of this module, after the two
    things it needs here: headless EGL (Mesa needs no display; must be chosen before PyOpenGL
    is first imported, and a caller's own choice is kept) and numpy's ``np.infty`` alias,
    which numpy 2 removed and pyrender 0.1.45 still uses (scene bounds)."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    _load_triton_first()
    if not hasattr(np, "infty"):
        np.infty = np.inf  # noqa: NPY201 - the alias pyrender needs, deliberately
    import pyrender

    return pyrender


def _load_triton_first() -> None:
    """Import triton, when installed, before Mesa starts its LLVM.

    triton (torch's kernel compiler, which ``torchvision.ops`` pulls in through
    ``torch._dynamo``) carries its own LLVM. Loaded into a process after llvmpipe has drawn
    (the scorer renders, then the embedding imports timm / torchvision), it segfaults the
    process; loaded first, both work. It costs about 0.1 s once torch is imported.
    """
    if importlib.util.find_spec("triton") is None:
        return
    with contextlib.suppress(ImportError):
        import triton  # noqa: F401


_CONTEXTS: dict[tuple[int, bool, int], pyrender.OffscreenRenderer] = {}
_CREATING = threading.Lock()
#: Contexts kept at most: a few image sizes (views, landmark views, pictures) times the threads
#: that render (the main thread, a service's scoring thread); more means a leak of threads.
MAX_CONTEXTS = 16


def offscreen(size: int, *, antialias: bool = True) -> pyrender.OffscreenRenderer:
    """This thread's OpenGL context for ``size`` x ``size`` images, created once and kept;
    with ``antialias=False`` one that draws single-sample (see the module's docstring).

    pyrender's ``OffscreenRenderer.delete()`` terminates the EGL display that every context
    of the process shares, so deleting one renderer breaks any other still in use; contexts
    here live as long as the process instead (a few MB each). An EGL context can be current
    in one thread only, so each thread (a service's scoring thread, the main thread) has
    its own.
    """
    key = (size, bool(antialias), threading.get_ident())
    if key not in _CONTEXTS:
        if len(_CONTEXTS) >= MAX_CONTEXTS:
            raise RuntimeError(
                f"{len(_CONTEXTS)} OpenGL contexts are open (one per image size and thread, at "
                f"most {MAX_CONTEXTS}): render from a fixed pool of threads, or call "
                "release_contexts() when no renderer is in use"
            )
        with _CREATING:
            gl = _pyrender().OffscreenRenderer(size, size)
            if not antialias:
                _single_sample(gl)
        _CONTEXTS[key] = gl
    return _CONTEXTS[key]


def _single_sample(gl: pyrender.OffscreenRenderer) -> None:
    """Create ``gl``'s framebuffers now, with 0 samples where pyrender asks for 4.

    pyrender builds its framebuffers on the first render and keeps them while the viewport
    size stays the same (a context here never changes size), so building them once with
    ``glRenderbufferStorageMultisample(..., 0, ...)`` (the GL spelling of single-sample) makes
    every later render single-sample; its blit to the read buffer is then a plain copy. The
    module function is swapped only while this runs, under the lock that creates contexts.
    """
    from pyrender import renderer as module

    multisample = module.glRenderbufferStorageMultisample

    def single(target, samples, internal_format, width, height):
        return multisample(target, 0, internal_format, width, height)

    module.glRenderbufferStorageMultisample = single
    try:
        gl._platform.make_current()
        gl._renderer._configure_main_framebuffer()
    finally:
        module.glRenderbufferStorageMultisample = multisample


def release_contexts() -> int:
    """Delete every kept OpenGL context (none may be in use); returns how many there were."""
    n = len(_CONTEXTS)
    for renderer in _CONTEXTS.values():
        renderer.delete()
    _CONTEXTS.clear()
    return n


def head_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """4x4 rotation turning the head by ``yaw`` (about +y, positive turns the face to its
    left, i.e. towards +x) then ``pitch`` (about +x, positive tilts the face up)."""
    yaw = trimesh.transformations.rotation_matrix(np.radians(yaw_deg), [0, 1, 0])
    pitch = trimesh.transformations.rotation_matrix(-np.radians(pitch_deg), [1, 0, 0])
    return pitch @ yaw


class FaceRenderer:
    """Render colour (and depth) images of a mesh from directional viewpoints.

    Parameters
    ----------
    image_size : width and height in pixels
    fov_deg : vertical field of view of the perspective camera
    distance_mm : camera distance from the look-at point
    background : RGB in [0, 1]
    antialias : 4x multisampling (pyrender's); False: single-sample, 2.4x faster on llvmpipe
    """

    def __init__(
        self,
        image_size: int = 224,
        *,
        fov_deg: float = 30.0,
        distance_mm: float = 500.0,
        background: tuple[float, float, float] = (0.0, 0.0, 0.0),
        ambient: float = 0.35,
        light_intensity: float = 2.5,
        antialias: bool = True,
    ) -> None:
        self.image_size = int(image_size)
        self.antialias = bool(antialias)
        self.fov_deg = fov_deg
        self.distance_mm = distance_mm
        self.background = background
        self.ambient = ambient
        self.light_intensity = light_intensity

    def _gl(self) -> pyrender.OffscreenRenderer:
        return offscreen(self.image_size, antialias=self.antialias)

    def close(self) -> None:
        """Nothing to free: the OpenGL context is shared by the process (see ``offscreen``)."""

    def __enter__(self) -> FaceRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def project(
        self, points: np.ndarray, view: tuple[float, float], centre: np.ndarray
    ) -> np.ndarray:
        """Pixels ``(n, 2)`` (col, row) where ``render`` shows ``points`` ``(n, 3)``."""
        head = head_rotation(*view)[:3, :3]
        q = (np.asarray(points, float) - centre) @ head.T
        depth = self.distance_mm - q[:, 2]
        focal = self.image_size / 2.0 / np.tan(np.radians(self.fov_deg) / 2.0)
        half = self.image_size / 2.0
        return np.stack([half + focal * q[:, 0] / depth, half - focal * q[:, 1] / depth], axis=1)

    def render(
        self,
        mesh: trimesh.Trimesh,
        views: list[tuple[float, float]],
        *,
        centre: np.ndarray | None = None,
        textured: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Render ``mesh`` once per ``(yaw_deg, pitch_deg)`` view.

        Parameters
        ----------
        mesh : face in its frontal frame (mm)
        views : list of (yaw, pitch) in degrees
        centre : (3,) look-at point on the face; defaults to the bounding-box centre
        textured : use the mesh's texture / vertex colours; otherwise grey shaded geometry

        Returns
        -------
        colour : (n_views, size, size, 3) uint8
        depth : (n_views, size, size) float32, mm from the camera, 0 where empty
        """
        centre = mesh.bounds.mean(axis=0) if centre is None else np.asarray(centre, float)
        shown = mesh.copy()
        shown.apply_translation(-centre)
        if not textured:
            shown.visual = trimesh.visual.ColorVisuals(shown, vertex_colors=[180, 180, 180, 255])
        node_mesh = _pyrender().Mesh.from_trimesh(shown, smooth=True)
        scene = _pyrender().Scene(
            ambient_light=np.full(3, self.ambient), bg_color=[*self.background, 1.0]
        )
        head = scene.add(node_mesh)
        camera_pose = np.eye(4)
        camera_pose[2, 3] = self.distance_mm
        scene.add(
            _pyrender().PerspectiveCamera(
                yfov=np.radians(self.fov_deg), znear=10.0, zfar=self.distance_mm * 4
            ),
            pose=camera_pose,
        )
        # A key light from the camera, a little above: a neutral, repeatable studio light.
        light_pose = trimesh.transformations.rotation_matrix(np.radians(-15), [1, 0, 0])
        scene.add(_pyrender().DirectionalLight(intensity=self.light_intensity), pose=light_pose)
        colours, depths = [], []
        gl = self._gl()
        for yaw, pitch in views:
            scene.set_pose(head, head_rotation(yaw, pitch))
            colour, depth = gl.render(scene)
            colours.append(colour[..., :3].copy())
            depths.append(depth.astype(np.float32))
        return np.stack(colours), np.stack(depths)


class OrthoRenderer:
    """Render channels of a mesh through orthographic cameras (landmark detection views).

    Channels: ``shaded`` (grey geometry lit from the camera, no texture needed), ``depth``
    (mm from the camera, ``nan`` where nothing was hit) and ``colour`` (texture or vertex
    colours, RGB). One OpenGL context of ``size`` x ``size`` is reused.
    """

    def __init__(self, size: int = 128, *, antialias: bool = True) -> None:
        self.size = int(size)
        self.antialias = bool(antialias)
        # The scenes of the last mesh rendered: the detector renders one scan twice (coarse,
        # then fine pass), and building them (vertex normals, buffers) is a tenth of a render.
        self._last: tuple[tuple, tuple[dict, dict]] | None = None

    def _scenes(self, mesh: trimesh.Trimesh, colour: bool) -> tuple[dict, dict]:
        """The grey (and coloured) pyrender scenes of ``mesh``, with camera and light nodes;
        reused while the same, unchanged mesh (trimesh's content hash) is rendered again."""
        key = (id(mesh), hash(mesh), colour)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        grey = mesh.copy()
        grey.visual = trimesh.visual.ColorVisuals(grey, vertex_colors=[200, 200, 200, 255])
        geometry = _pyrender().Scene(ambient_light=np.full(3, 0.15), bg_color=[0, 0, 0, 1])
        geometry.add(_pyrender().Mesh.from_trimesh(grey, smooth=True))
        scenes = {"shaded": geometry}
        if colour and has_colour(mesh):
            textured = _pyrender().Scene(ambient_light=np.full(3, 0.6), bg_color=[0, 0, 0, 1])
            textured.add(_pyrender().Mesh.from_trimesh(mesh, smooth=True))
            scenes["colour"] = textured
        nodes = {}
        for name, scene in scenes.items():
            cam = _pyrender().OrthographicCamera(xmag=1.0, ymag=1.0, znear=1.0, zfar=5000.0)
            cam_node = scene.add(cam)
            intensity = 2.5 if name == "shaded" else 1.0
            light_node = scene.add(_pyrender().DirectionalLight(intensity=intensity))
            nodes[name] = (cam, cam_node, light_node)

        self._last = (key, (scenes, nodes))
        return scenes, nodes

    def close(self) -> None:
        """Forget the last mesh's scenes; the OpenGL context is shared by the process (see
        ``offscreen``)."""
        self._last = None

    def __enter__(self) -> OrthoRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def render(
        self,
        mesh: trimesh.Trimesh,
        cameras: list,
        *,
        colour: bool = True,
    ) -> dict[str, np.ndarray]:
        """Render every camera (``face_health.views.cameras.OrthoCamera``) of ``mesh``.

        Returns
        -------
        dict with ``shaded`` (n, size, size) float32 in [0, 1]; ``depth`` (n, size, size)
        float32 mm or nan; ``colour`` (n, size, size, 3) uint8 when ``colour`` and the mesh
        has a texture or vertex colours.
        """
        gl = offscreen(self.size, antialias=self.antialias)
        scenes, nodes = self._scenes(mesh, colour)
        out: dict[str, list] = {"shaded": [], "depth": []}
        if "colour" in scenes:
            out["colour"] = []
        # Scene by scene, not camera by camera: pyrender keeps on the GPU only the meshes of
        # the scene it drew last, so alternating scenes would upload the mesh and its texture
        # again for every image.
        for name, scene in scenes.items():
            for camera in cameras:
                pose = camera.pose()
                cam, cam_node, light_node = nodes[name]
                cam.xmag = cam.ymag = camera.half_extent
                cam.zfar = camera.distance * 4.0
                scene.set_pose(cam_node, pose)
                scene.set_pose(light_node, pose)
                image, depth = gl.render(scene)
                if name == "shaded":
                    out["shaded"].append(image[..., 0].astype(np.float32) / 255.0)
                    out["depth"].append(_orthographic_depth(depth, cam.znear, cam.zfar))
                else:
                    out["colour"].append(image[..., :3].copy())
        return {k: np.stack(v) for k, v in out.items()}


def _orthographic_depth(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """Undo pyrender's perspective depth linearisation, which it applies to every camera.

    pyrender returns ``2nf / (f + n - z_ndc (f - n))``; an orthographic projection has
    ``z_ndc = (2d - f - n) / (f - n)``, so the distance is ``d = f + n - nf / returned``.
    """
    out = np.full(depth.shape, np.nan, dtype=np.float32)
    hit = depth > 0
    out[hit] = far + near - near * far / depth[hit]
    return out


def directional_views(n_per_direction: int = 3, interval_deg: float = 15.0) -> list[tuple]:
    """The views of the method: frontal, then ``n`` each of yaw left / right and pitch up /
    down at a fixed interval. Returns ``(name, yaw_deg, pitch_deg)``; yaw > 0 turns the face
    to its left, pitch > 0 tilts it up."""
    if n_per_direction < 3:
        raise ValueError(f"the method needs at least 3 views per direction, got {n_per_direction}")
    if interval_deg <= 0:
        raise ValueError(f"the view interval must be positive, got {interval_deg}")
    views: list[tuple[str, float, float]] = [("front", 0.0, 0.0)]
    for k in range(1, n_per_direction + 1):
        a = k * interval_deg
        views += [
            (f"yaw_left_{a:g}", a, 0.0),
            (f"yaw_right_{a:g}", -a, 0.0),
            (f"pitch_up_{a:g}", 0.0, a),
            (f"pitch_down_{a:g}", 0.0, -a),
        ]
    return views


#: Where a template-frame face is looked at (origin at the nose tip): its middle.
TEMPLATE_FACE_CENTRE = np.array([0.0, 15.0, -40.0])


def render_directional_views(
    mesh: trimesh.Trimesh, settings: ViewSettings
) -> dict[str, np.ndarray]:
    """The views stage for one aligned face (template frame), as the pipeline's workers and
    the scorer run it: ``name -> (S, S, 3) uint8`` for the ``views`` settings
    (``channel: colour`` falls back to shaded grey geometry for a scan without colour)."""
    views = directional_views(settings.n_per_direction, settings.interval_deg)
    textured = settings.channel == "colour" and has_colour(mesh)
    with FaceRenderer(
        settings.image_size,
        fov_deg=settings.fov_deg,
        distance_mm=settings.distance_mm,
        antialias=settings.antialias,
    ) as renderer:
        colour, _ = renderer.render(
            mesh,
            [(yaw, pitch) for _, yaw, pitch in views],
            centre=TEMPLATE_FACE_CENTRE,
            textured=textured,
        )
    return {name: image for (name, _, _), image in zip(views, colour, strict=True)}
