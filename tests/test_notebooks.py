"""The bundled notebooks: committed without outputs, and each one runs on a trained tiny project.

Each notebook is copied into ``<project>/notebooks/`` of the session's trained tiny project and
executed there with nbclient, as a user would run it after ``kedro run --pipelines=training``
(``KEDRO_ENV=tiny`` selects the environment), so a notebook cannot silently rot.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT_S = 300


def test_the_four_notebooks_are_there():
    assert NAMES == [
        "01_cohort_and_qc.ipynb",
        "02_features.ipynb",
        "03_model_comparison.ipynb",
        "04_score_a_new_scan.ipynb",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_clean(name: str):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown", "a notebook opens with what it answers"
    assert nb.cells[0].source.startswith("# ")
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: commit notebooks with outputs cleared"
            assert cell.execution_count is None, f"{name}: commit notebooks with outputs cleared"


def _venv_kernel() -> AsyncKernelManager:
    """A ``python3`` kernel on this interpreter, whatever kernelspecs the user has installed.

    With no kernel folders to search, jupyter_client falls back to ipykernel's built-in spec,
    which starts ``sys.executable -m ipykernel_launcher``.
    """
    specs = KernelSpecManager(kernel_dirs=[])
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _execute(source: Path, project: Path) -> nbformat.NotebookNode:
    folder = project / "notebooks"
    folder.mkdir(exist_ok=True)
    path = Path(shutil.copy(source, folder))
    nb = nbformat.read(path, as_version=4)
    env = {
        **os.environ,
        "KEDRO_ENV": "tiny",
        "KEDRO_DISABLE_TELEMETRY": "true",
        "PYOPENGL_PLATFORM": "egl",
        "MPLBACKEND": "Agg",
    }
    client = nbclient.NotebookClient(
        nb, km=_venv_kernel(), timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(folder)}}
    )
    client.execute(env=env)  # raises CellExecutionError, with the traceback, if a cell fails
    return nb


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]


def _stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(
        o.get("text", "") for o in _outputs(nb) if o.output_type == "stream" and o.name == "stdout"
    )


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(nb))


EXPECTED_IMAGES = {
    "01_cohort_and_qc.ipynb": 4,  # distributions, landmarks, views, region map
    "02_features.ipynb": 2,  # embedding projection, region x target heatmap
    "03_model_comparison.ipynb": 3,  # MLP vs baselines, ablation, runs side by side
    "04_score_a_new_scan.ipynb": 1,  # the scored face's regions
}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_on_the_trained_tiny_project(name: str, trained_tiny_project: Path):
    nb = _execute(NOTEBOOKS / name, trained_tiny_project)

    errors = [o for o in _outputs(nb) if o.output_type == "error"]
    assert not errors, errors
    assert _images(nb) >= EXPECTED_IMAGES[name]
    # the notebooks work from the project root: no stray MLflow backend next to them
    assert not (trained_tiny_project / "notebooks" / "mlflow.db").exists()
    if name.startswith("04"):
        assert re.search(r"predicted age: \d+(\.\d+)? years", _stdout(nb)), _stdout(nb)
    if name.startswith("03"):
        assert "runs with test metrics" in _stdout(nb)
