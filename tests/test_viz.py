"""kedro viz: the DAG reads as the method (a namespace per stage, acyclic data layers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

STAGES = {
    "data_engineering": {"ingest", "landmarks", "alignment", "views", "reports"},
    "feature": {"global_features", "local_features"},
    "modelling": {"fit", "evaluation", "reports", "model_registry"},
}


def test_kedro_viz_build_groups_nodes_by_stage(project_copy: Path) -> None:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"],
        cwd=project_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    main = json.loads((project_copy / "build" / "api" / "main").read_text())
    # kedro-viz drops all layers when the catalog's layers form a cycle
    expected = {f"{p}.{s}" for p, subs in STAGES.items() for s in subs} | set(STAGES)
    assert expected <= set(main["modular_pipelines"])
    assert main["layers"][0] == "raw" and main["layers"][-1] == "reporting"
    tasks = [n for n in main["nodes"] if n["type"] == "task"]
    assert tasks and all(n["modular_pipelines"] for n in tasks)  # no node outside a stage
