"""requirements.lock (issue 14, part 8): every dependency of pyproject.toml is pinned in the
lock at a version its range allows, and the environment the tests run in is the locked one
(setup.sh, which CI runs, installs with the lock as constraints)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
        assert match, f"requirements.lock: not a pin: {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]
    ]


def test_every_dependency_is_pinned_within_its_range() -> None:
    pins = _lock()
    problems = []
    for requirement in _requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is not in requirements.lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement}: the lock pins {pins[name]}")
    assert not problems, "run scripts/update_lock.sh:\n" + "\n".join(problems)


def test_the_environment_is_the_locked_one() -> None:
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differ = [
        f"{name}: locked {version}, installed {installed.get(name, 'nothing')}"
        for name, version in _lock().items()
        if installed.get(name) != version
    ]
    assert not differ, "the environment is not the lock's (re-run ./setup.sh):\n" + "\n".join(
        differ
    )


def test_the_logged_model_names_its_runtime_dependencies_pinned() -> None:
    from face_health.serving.scorer import model_requirements

    needed = {Requirement(r).name: Requirement(r) for r in model_requirements()}
    assert {"face-health", "torch", "timm", "trimesh", "mlflow"} <= set(needed)
    assert not {"pytest", "ruff"} & set(needed)  # development tools stay out
    assert all(str(r.specifier).startswith("==") for r in needed.values())
