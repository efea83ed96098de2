"""The feature pipeline: global features (ResNet-50) and local features (facial omics)."""

from kedro.pipeline import Node, Pipeline

from face_health.pipelines.feature import nodes
from face_health.pipelines.stages import stage


def create_pipeline(**kwargs) -> Pipeline:
    global_features = stage(
        "global_features",
        [
            Node(
                nodes.train_embedding_model,
                ["face_views", "clinical", "splits", "params:embedding"],
                ["embedding_model", "embedding_metrics"],
                name="train_resnet50_embedding",
            ),
            Node(
                nodes.embed_subjects,
                ["embedding_model", "face_views", "params:embedding"],
                "global_features",
                name="extract_global_features",
            ),
            Node(
                nodes.embedding_folds,
                "embedding_model",
                "embedding_folds",
                name="record_cross_fitting_folds",
            ),
        ],
    )
    local_features = stage(
        "local_features",
        [
            Node(
                nodes.template_region_centroids,
                ["template_mesh", "template_landmarks"],
                "template_region_centroids",
                name="segment_template_regions",
            ),
            Node(
                nodes.extract_region_radiomics,
                [
                    "aligned_meshes",
                    "aligned_landmarks",
                    "aligned_fitted_faces",
                    "template_region_centroids",
                    "params:radiomics",
                    "params:qc",
                ],
                ["region_labels", "region_radiomics", "region_qc", "region_map_picture"],
                name="segment_regions_and_extract_radiomics",
            ),
            Node(
                nodes.fit_facial_omics,
                ["region_radiomics", "splits", "params:facial_omics"],
                ["facial_omics_model", "local_features", "explained_variance_plot"],
                name="fit_facial_omics_pca",
            ),
        ],
    )
    shape_features = stage(
        "shape_features",
        [
            Node(
                nodes.fit_shape_features,
                ["aligned_fitted_faces", "splits", "params:shape_features"],
                ["shape_model", "shape_features"],
                name="fit_shape_features",
            ),
        ],
    )
    return stage("feature", [global_features, local_features, shape_features])
