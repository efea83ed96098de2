"""The data_engineering pipeline: ingest and QC (landmarks, alignment and views follow)."""

from kedro.pipeline import Node, Pipeline

from face_health.pipelines.data_engineering import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.prepare_cohort,
                inputs="params:cohort",
                outputs="raw_cohort",
                name="prepare_raw_cohort",
            ),
            Node(
                nodes.ingest_scans,
                inputs=["raw_scans", "raw_cohort", "params:ingest"],
                outputs=["clean_meshes", "ingest_qc"],
                name="ingest_scans",
            ),
            Node(
                nodes.validate_clinical_table,
                inputs=["raw_clinical", "raw_cohort"],
                outputs=["clinical", "clinical_issues"],
                name="validate_clinical_table",
            ),
            Node(
                nodes.build_qc_report,
                inputs=["ingest_qc", "clinical", "clinical_issues"],
                outputs="qc_report",
                name="build_qc_report",
            ),
            Node(
                nodes.split_subjects,
                inputs=["clinical", "qc_report", "params:splits"],
                outputs="splits",
                name="split_subjects",
            ),
            Node(
                nodes.cohort_contact_sheet,
                inputs=[
                    "clean_meshes",
                    "raw_landmark_annotations",
                    "clinical",
                    "ingest_qc",
                    "params:contact_sheet",
                ],
                outputs="cohort_contact_sheet",
                name="cohort_contact_sheet",
            ),
        ],
        tags=["data_engineering"],
    )
