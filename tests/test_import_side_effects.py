"""Importing the package changes nothing process-wide: no environment variable, no numpy
alias; rendering sets up EGL and pyrender's numpy alias when it first renders."""

from __future__ import annotations

import os
import subprocess
import sys


def test_importing_rendering_sets_nothing_until_it_renders() -> None:
    code = (
        "import os, numpy\n"
        "import face_health.views.rendering as r, face_health.landmarks.detector\n"
        "assert 'PYOPENGL_PLATFORM' not in os.environ, 'set on import'\n"
        "assert not hasattr(numpy, 'infty'), 'patched on import'\n"
        "assert 'pyrender' not in __import__('sys').modules, 'pyrender imported on import'\n"
        "r._pyrender()\n"
        "assert os.environ['PYOPENGL_PLATFORM'] == 'egl' and numpy.infty == numpy.inf\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
