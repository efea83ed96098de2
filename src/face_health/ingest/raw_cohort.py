"""Where the raw cohort comes from: the synthetic default, or a user's own folder.

``prepare_raw_cohort`` is the first step of every run: for the synthetic default it
simulates the cohort when absent (deterministic, cached by its manifest); for a real cohort
it checks that the folder holds what the catalog will read. Raw files are only ever read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from face_health.config import CohortSourceSettings
from face_health.synthetic import CohortSettings, ensure_cohort


def prepare_raw_cohort(cohort: dict[str, Any]) -> dict[str, Any]:
    """Make sure the raw cohort exists; return its manifest.

    Parameters
    ----------
    cohort : the ``cohort`` parameters (:class:`~face_health.config.CohortSourceSettings`)
    """
    settings = CohortSourceSettings.from_parameters(cohort)
    source = settings.source
    path = Path(settings.path)
    if source == "synthetic":
        options = settings.synthetic
        manifest = ensure_cohort(
            path,
            n=options.n,
            seed=options.seed,
            settings=CohortSettings.from_dict(options.settings),
            n_jobs=options.n_jobs,
        )
        return {"source": source, "path": str(path), "n": manifest["n"], "seed": manifest["seed"]}

    problems = []
    if not (path / "scans").is_dir():
        problems.append(f"no scans folder at {path / 'scans'}")
    clinical = path / settings.clinical
    if not clinical.is_file():
        problems.append(f"no clinical table at {clinical}")
    if problems:
        raise FileNotFoundError(
            "the configured cohort is incomplete: " + "; ".join(problems) + ". Set "
            "cohort.path in conf/local/globals.yml (see conf/local/README.md)."
        )
    n_files = sum(1 for p in (path / "scans").rglob("*") if p.is_file())
    return {"source": source, "path": str(path), "n_files": n_files}
