"""The final_test pipeline: simulate the final test cohort -> score every scan with the served
model -> metrics and paired model comparisons for the README's headline numbers."""

from kedro.pipeline import Node, Pipeline

from face_health.pipelines.final_test import nodes
from face_health.pipelines.stages import stage


def create_pipeline(**kwargs) -> Pipeline:
    return stage(
        "final_test",
        [
            Node(
                nodes.prepare_final_test_cohort,
                ["params:final_test", "params:cohort", "params:inference"],
                "final_test_cohort",
                name="simulate_final_test_cohort",
            ),
            Node(
                nodes.score_final_test_scans,
                ["final_test_scans", "final_test_cohort", "params:final_test", "params:qc"],
                ["final_test_features", "final_test_predictions", "final_test_qc"],
                name="score_final_test_scans",
            ),
            Node(
                nodes.evaluate_final_test,
                [
                    "final_test_predictions",
                    "final_test_clinical",
                    "final_test_qc",
                    "final_test_cohort",
                    "params:final_test",
                    "params:modelling",
                ],
                [
                    "final_test_metrics",
                    "final_test_differences",
                    "final_test_metrics_mlflow",
                    "final_test_summary",
                ],
                name="evaluate_final_test",
            ),
        ],
    )
