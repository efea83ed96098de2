"""Rendering: the directional views of the method, and orthographic views for landmarks."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from face_health.config import base_section
from face_health.views.cameras import orbit_camera
from face_health.views.rendering import (
    TEMPLATE_FACE_CENTRE,
    OrthoRenderer,
    directional_views,
    render_directional_views,
)


def test_directional_views_follow_the_method() -> None:
    views = directional_views(3, 15.0)
    assert len(views) == 13
    assert views[0] == ("front", 0.0, 0.0)
    names = {v[0] for v in views}
    assert {"yaw_left_45", "yaw_right_15", "pitch_up_30", "pitch_down_45"} <= names
    yaws = sorted(y for _, y, p in views if p == 0.0)
    assert yaws == [-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0]
    with pytest.raises(ValueError, match="at least 3"):
        directional_views(2, 15.0)


def _ball_face() -> trimesh.Trimesh:
    """A coloured ball where a template-frame face would be (nose tip at the origin)."""
    ball = trimesh.creation.icosphere(subdivisions=3, radius=70.0)
    ball.apply_translation(TEMPLATE_FACE_CENTRE)
    ball.visual.vertex_colors = np.tile([200, 120, 100, 255], (len(ball.vertices), 1))
    return ball


def test_rendering_gives_the_configured_views_with_the_face_centred() -> None:
    settings = base_section("views", n_per_direction=4, interval_deg=10.0, image_size=64)
    images = render_directional_views(_ball_face(), settings)
    assert len(images) == 17
    for image in images.values():
        assert image.shape == (64, 64, 3)
        face = image.sum(axis=-1) > 0
        rows, cols = np.nonzero(face)
        # Centred: the rendered object's centre of mass is near the image centre.
        assert abs(rows.mean() - 31.5) < 3 and abs(cols.mean() - 31.5) < 3
        assert 0.2 < face.mean() < 0.9


def test_rendering_works_from_the_main_thread_and_from_a_worker_thread() -> None:
    """An EGL context is current in one thread only: a service scores on its own thread
    after the main thread has rendered (EGL_BAD_ACCESS if they shared one)."""
    from concurrent.futures import ThreadPoolExecutor

    options = base_section("views", image_size=48)
    here = render_directional_views(_ball_face(), options)
    with ThreadPoolExecutor(max_workers=1) as worker:
        there = worker.submit(render_directional_views, _ball_face(), options).result()
    assert here.keys() == there.keys()
    for key in here:
        np.testing.assert_array_equal(here[key], there[key])


def test_orthographic_depth_matches_the_camera_model() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=50.0)
    camera = orbit_camera(np.eye(3), np.zeros(3), 30.0, 15.0, half_extent=80.0, size=96)
    with OrthoRenderer(96) as renderer:
        out = renderer.render(sphere, [camera])
    assert set(out) == {"shaded", "depth"}  # no colour on a plain mesh
    point = np.array([[20.0, 25.0, np.sqrt(50**2 - 20**2 - 25**2)]])
    pixel, depth = camera.project(point)
    col, row = np.round(pixel[0]).astype(int)
    assert out["depth"][0][row, col] == pytest.approx(depth[0], abs=0.6)
    assert np.isnan(out["depth"][0][0, 0])  # background


def test_kept_contexts_are_bounded_and_can_be_released() -> None:
    import threading

    from face_health.views import rendering

    render_directional_views(_ball_face(), base_section("views", image_size=32))
    assert 0 < len(rendering._CONTEXTS) <= rendering.MAX_CONTEXTS
    errors = []

    def render_in_a_new_thread() -> None:
        try:
            rendering.offscreen(24)
        except RuntimeError as exc:
            errors.append(str(exc))

    saved = rendering.MAX_CONTEXTS
    rendering.MAX_CONTEXTS = len(rendering._CONTEXTS)
    try:
        thread = threading.Thread(target=render_in_a_new_thread)
        thread.start()
        thread.join()
    finally:
        rendering.MAX_CONTEXTS = saved
    assert errors and "OpenGL contexts are open" in errors[0]


def test_released_contexts_are_recreated_on_the_next_render() -> None:
    """In a clean process (deleting contexts would break other tests' renderers here)."""
    import subprocess
    import sys

    code = (
        "import numpy as np, trimesh\n"
        "from face_health.config import base_section\n"
        "from face_health.views import rendering\n"
        "b = trimesh.creation.icosphere(subdivisions=2, radius=70.0)\n"
        "b.apply_translation(rendering.TEMPLATE_FACE_CENTRE)\n"
        "s = base_section('views', image_size=32)\n"
        "a = rendering.render_directional_views(b, s)\n"
        "assert rendering.release_contexts() == 1 and not rendering._CONTEXTS\n"
        "c = rendering.render_directional_views(b, s)\n"
        "assert all(np.array_equal(a[k], c[k]) for k in a)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_single_sample_views_differ_from_antialiased_ones_only_at_the_silhouette() -> None:
    from scipy.ndimage import binary_dilation, binary_erosion

    from face_health.views.rendering import FaceRenderer

    face = _ball_face()
    with FaceRenderer(64, antialias=True) as smooth, FaceRenderer(64, antialias=False) as sharp:
        a, _ = smooth.render(face, [(0.0, 0.0)], centre=TEMPLATE_FACE_CENTRE)
        b, _ = sharp.render(face, [(0.0, 0.0)], centre=TEMPLATE_FACE_CENTRE)
    inside = b[0].sum(axis=-1) > 0
    edge = binary_dilation(inside, iterations=1) & ~binary_erosion(inside, iterations=1)
    gap = np.abs(a[0].astype(int) - b[0]).max(axis=-1)
    assert gap[edge].max() > 30  # a single-sample context really is one
    assert gap[~edge].max() <= 1  # elsewhere the same, to rounding of the sample average
    # the single-sample silhouette is hard: background or face, no blend of both
    blended = (a[0].sum(axis=-1) > 0) & ~inside
    assert blended.any()


def test_orthographic_scenes_are_reused_for_the_same_mesh_only() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=50.0)
    camera = orbit_camera(np.eye(3), np.zeros(3), 0.0, 0.0, half_extent=80.0, size=48)
    with OrthoRenderer(48) as renderer:
        first = renderer.render(sphere, [camera])
        again = renderer.render(sphere, [camera])
        sphere.apply_translation([15.0, 0.0, 0.0])  # same object, new content
        moved = renderer.render(sphere, [camera])
    np.testing.assert_array_equal(first["shaded"], again["shaded"])
    assert not np.array_equal(np.isnan(first["depth"]), np.isnan(moved["depth"]))


_RENDER_THEN_TORCHVISION = """
import trimesh
from face_health.views.rendering import FaceRenderer
ball = trimesh.creation.icosphere(subdivisions=2, radius=50.0)
assert len(FaceRenderer(image_size=32).render(ball, [(0.0, 0.0)])) == 2
import torchvision.ops  # torch._dynamo -> triton, with its own LLVM, after Mesa's
print("both loaded")
"""


def test_a_process_that_renders_can_then_import_torchvision_ops() -> None:
    """The scorer's order: render first, then the embedding imports timm / torchvision.ops.
    triton's LLVM loaded after llvmpipe's segfaulted the process (exit -11); rendering loads
    triton first. A fresh process, as the order of imports is the point."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton")
    env = os.environ | {"PYOPENGL_PLATFORM": "egl"}
    result = subprocess.run(
        [sys.executable, "-c", _RENDER_THEN_TORCHVISION],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert "both loaded" in result.stdout
