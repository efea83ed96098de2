"""The inference pipeline: new scans -> predictions with a trained, logged model."""

from kedro.pipeline import Node, Pipeline

from face_health.pipelines.inference import nodes
from face_health.pipelines.stages import stage


def create_pipeline(**kwargs) -> Pipeline:
    return stage(
        "inference",
        [
            Node(
                nodes.prepare_new_scans,
                "params:inference",
                "new_scans_manifest",
                name="prepare_new_scans",
            ),
            Node(
                nodes.score_new_scans,
                ["new_scans", "new_scans_manifest", "params:inference"],
                "predictions",
                name="score_new_scans",
            ),
        ],
    )
