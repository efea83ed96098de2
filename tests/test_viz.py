"""kedro viz: the DAG reads as the method (a namespace per stage, acyclic data layers)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import kedro

STAGES = {
    "data_engineering": {"ingest", "landmarks", "alignment", "views", "reports"},
    "feature": {"global_features", "local_features", "shape_features"},
    "modelling": {"fit", "evaluation", "reports", "model_registry"},
}


def test_kedro_viz_build_groups_nodes_by_stage(project_copy: Path) -> None:
    kedro(project_copy, "viz", "build")
    main = json.loads((project_copy / "build" / "api" / "main").read_text())
    expected = {f"{p}.{s}" for p, subs in STAGES.items() for s in subs} | set(STAGES)
    assert expected <= set(main["modular_pipelines"])
    # kedro-viz drops all layers when the catalog's layers form a cycle
    assert main["layers"][0] == "raw" and main["layers"][-1] == "reporting"
    tasks = [n for n in main["nodes"] if n["type"] == "task"]
    assert tasks and all(n["modular_pipelines"] for n in tasks)  # no node outside a stage
