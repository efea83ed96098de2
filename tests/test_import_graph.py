"""The package's layering, checked by ``scripts/import_graph.py --check`` (parsed with ast,
nothing imported): every ``face_health`` import names a module (and a name) that exists, and no
stage package imports Kedro or ``face_health.pipelines``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"


def _script():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def test_no_stale_imports_and_stages_do_not_know_kedro() -> None:
    graph = _script().check()
    assert graph.imports, "no face_health imports found: wrong source directory?"
    assert not graph.stale, "stale imports:\n" + "\n".join(graph.stale)
    assert not graph.layer_violations, "stage packages importing Kedro or pipelines:\n" + (
        "\n".join(graph.layer_violations)
    )
