"""The synthetic cohort simulator: faces whose shape and texture carry known health signals.

``write_cohort`` / ``ensure_cohort`` write a raw cohort to disk; ``effects`` documents every
health-linked effect and its strength; ``phenotypes`` draws the health states.
"""

from face_health.synthetic.cohort import (
    CohortSettings,
    ensure_cohort,
    simulate_face,
    subject_ids,
    write_cohort,
)

__all__ = ["CohortSettings", "ensure_cohort", "simulate_face", "subject_ids", "write_cohort"]
