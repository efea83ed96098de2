"""face_health: 3D facial scans to age, clinical parameters and medical conditions."""

__version__ = "0.1.0"
