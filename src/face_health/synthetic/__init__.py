"""The synthetic cohort simulator: faces whose shape and texture carry known health signals.

``write_cohort`` / ``ensure_cohort`` write a raw cohort to disk; ``effects`` documents every
health-linked effect and its strength; ``phenotypes`` draws the health states;
``simulate_latents`` draws the states and face-visible latents alone (no faces).
"""

from face_health.synthetic.cohort import (
    CohortSettings,
    ensure_cohort,
    simulate_face,
    simulate_latents,
    subject_ids,
    write_cohort,
)

__all__ = [
    "CohortSettings",
    "ensure_cohort",
    "simulate_face",
    "simulate_latents",
    "subject_ids",
    "write_cohort",
]
