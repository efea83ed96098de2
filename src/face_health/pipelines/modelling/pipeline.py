"""The modelling pipeline: fit, evaluate on the test split once, report, log the model."""

from kedro.pipeline import Node, Pipeline

from face_health.pipelines.modelling import nodes
from face_health.pipelines.stages import stage


def create_pipeline(**kwargs) -> Pipeline:
    fit = stage(
        "fit",
        [
            Node(
                nodes.assemble_model_input,
                ["global_features", "local_features", "shape_features"],
                "model_input",
                name="assemble_model_input",
            ),
            Node(
                nodes.train_health_models,
                ["model_input", "clinical", "splits", "embedding_folds", "params:modelling"],
                "health_models",
                name="train_mlps_and_baselines",
            ),
            Node(
                nodes.fit_ood_monitor,
                ["model_input", "splits", "embedding_model", "params:modelling"],
                ["ood_monitor", "ood_plot", "ood_metrics_mlflow"],
                name="fit_ood_monitor",
            ),
        ],
    )
    evaluation = stage(
        "evaluation",
        [
            Node(
                nodes.evaluate_on_test,
                ["health_models", "model_input", "clinical", "splits", "params:modelling"],
                ["test_metrics", "test_predictions", "test_metrics_mlflow"],
                name="evaluate_on_test_split",
            ),
            Node(
                nodes.ablation,
                ["model_input", "clinical", "splits", "embedding_folds", "params:modelling"],
                ["ablation_metrics", "ablation_differences", "ablation_validation_metrics"],
                name="ablation_global_local_both",
            ),
        ],
    )
    reports = stage(
        "reports",
        [
            Node(
                nodes.report_figures,
                ["test_predictions", "clinical", "test_metrics"],
                ["age_plot", "condition_plot", "summary_plot"],
                name="report_figures",
            ),
            Node(
                nodes.write_model_card,
                ["test_metrics", "raw_cohort", "splits", "health_models"],
                "model_card",
                name="write_model_card",
            ),
        ],
    )
    registry = stage(
        "model_registry",
        [
            Node(
                nodes.log_inference_model,
                [
                    "landmark_model",
                    "template_landmarks",
                    "embedding_model",
                    "template_region_centroids",
                    "facial_omics_model",
                    "shape_model",
                    "health_models",
                    "parameters",
                    "ood_monitor",
                ],
                "inference_model_info",
                name="log_inference_model",
            ),
        ],
    )
    return stage("modelling", [fit, evaluation, reports, registry])
