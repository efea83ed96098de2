"""final_test: the headline numbers' own cohort, simulated with a seed nothing was chosen on,
scored scan by scan with the served model, evaluated with paired comparisons."""

from face_health.pipelines.final_test.pipeline import create_pipeline

__all__ = ["create_pipeline"]
