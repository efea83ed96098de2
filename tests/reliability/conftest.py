"""Fixtures of the reliability tests (issue 14): the generated corpus (``corpus.py``), a
byte-for-byte check that inputs are unchanged, ``face-health check-scan`` in process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reliability.corpus import PROJECT_PIXEL_CAP, digest, solid_png


@pytest.fixture
def unchanged() -> Callable[[Path], Callable[[], None]]:
    """``check = unchanged(folder)`` before, ``check()`` after: no byte of the input changed."""

    def snapshot(folder: Path) -> Callable[[], None]:
        before = digest(folder)

        def check() -> None:
            assert digest(folder) == before, "an input file was modified"

        return check

    return snapshot


@pytest.fixture(scope="session")
def over_cap_png() -> bytes:
    """A PNG one row over the project's 64 MP cap (8000 x 8001), a few hundred kB."""
    return solid_png((8000, PROJECT_PIXEL_CAP // 8000 + 1))


@pytest.fixture
def check_scan() -> Callable[..., Result]:
    """``face-health check-scan PATH`` in process, with the project's ingest settings."""
    from face_health.command_line import main

    def run(path: Path, *args: str) -> Result:
        return CliRunner().invoke(main, ["check-scan", str(path), *args])

    return run
