"""The prediction service: upload a 3D face scan, get every target back as JSON.

``face-health serve`` runs it; :func:`create_app` builds the FastAPI app around a loaded
scorer (tests do this); :mod:`~face_health.serving.uploads` and
:mod:`~face_health.serving.formats` decide what an upload is and refuse what is unsafe.
See ``docs/serving.md``.
"""

from face_health.serving.app import create_app
from face_health.serving.errors import ApiError
from face_health.serving.server import build_app, serve
from face_health.serving.settings import (
    ServingSettings,
    SettingsError,
    check_startup,
    load_settings,
)

__all__ = [
    "ApiError",
    "ServingSettings",
    "SettingsError",
    "build_app",
    "check_startup",
    "create_app",
    "load_settings",
    "serve",
]
