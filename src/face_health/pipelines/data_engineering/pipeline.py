"""data_engineering: raw cohort -> clean meshes -> landmarks -> template alignment -> views."""

from kedro.pipeline import Node, Pipeline

from face_health.pipelines.data_engineering import geometry_nodes as geo
from face_health.pipelines.data_engineering import nodes
from face_health.pipelines.stages import stage


def create_pipeline(**kwargs) -> Pipeline:
    ingest = stage(
        "ingest",
        [
            Node(nodes.prepare_cohort, "params:cohort", "raw_cohort", name="prepare_raw_cohort"),
            Node(
                nodes.ingest_scans,
                ["raw_scans", "raw_cohort", "params:ingest", "params:qc"],
                ["clean_meshes", "ingest_qc"],
                name="ingest_scans",
            ),
            Node(
                nodes.validate_and_report_clinical,
                ["raw_clinical", "raw_cohort"],
                ["clinical_checked", "clinical_issues", "clinical_issue_rows"],
                name="validate_clinical_table",
            ),
            Node(  # after clinical_issues is written: stops on missing or duplicate ids
                nodes.check_clinical_table,
                ["clinical_checked", "clinical_issue_rows"],
                "clinical",
                name="check_clinical_table",
            ),
            Node(
                nodes.split_subjects,
                ["clinical", "ingest_qc", "params:splits"],
                "splits",
                name="split_subjects",
            ),
        ],
    )
    landmarks = stage(
        "landmarks",
        [
            Node(
                geo.provide_landmark_model,
                ["clean_meshes", "raw_landmark_annotations", "splits", "params:landmarks"],
                ["landmark_model", "landmark_model_metrics"],
                name="provide_landmark_model",
            ),
            Node(
                geo.detect_landmarks,
                ["clean_meshes", "landmark_model", "params:landmarks", "params:qc"],
                ["detected_landmarks", "landmark_qc", "fitted_faces"],
                name="detect_landmarks",
            ),
        ],
    )
    alignment = stage(
        "alignment",
        [
            Node(
                geo.make_template,
                ["detected_landmarks", "clean_meshes", "splits", "landmark_qc"],
                ["template_landmarks", "template_mesh", "template_picture"],
                name="build_template",
            ),
            Node(
                geo.align_faces,
                [
                    "clean_meshes",
                    "detected_landmarks",
                    "fitted_faces",
                    "template_landmarks",
                    "params:alignment",
                    "params:qc",
                ],
                ["aligned_meshes", "aligned_landmarks", "alignment_qc", "aligned_fitted_faces"],
                name="align_to_template",
            ),
        ],
    )
    views = stage(
        "views",
        [
            Node(
                geo.render_face_views,
                ["aligned_meshes", "params:views"],
                ["face_views", "views_contact_sheet"],
                name="render_directional_views",
            ),
        ],
    )
    reports = stage(
        "reports",
        [
            Node(
                nodes.build_qc_report,
                ["ingest_qc", "clinical", "clinical_issues", "landmark_qc", "alignment_qc"],
                "qc_report",
                name="build_qc_report",
            ),
            Node(
                nodes.cohort_contact_sheet,
                ["clean_meshes", "detected_landmarks", "clinical", "params:contact_sheet"],
                "cohort_contact_sheet",
                name="cohort_contact_sheet",
            ),
        ],
    )
    return stage("data_engineering", [ingest, landmarks, alignment, views, reports])
