"""Reliability tests (issue 14); a package, so its conftest does not shadow tests/conftest.py."""
