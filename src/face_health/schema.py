"""The project's data contracts: targets, units, plausible ranges, landmarks and regions.

Everything that names a column, a landmark or a region reads it from here, so a real cohort,
the simulator and the pipelines agree (see ``shared/DESIGN.md`` section 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TargetKind = Literal["regression", "binary", "condition"]


@dataclass(frozen=True)
class Target:
    """One prediction target of the clinical table.

    ``plausible`` is the range a measured value must fall in to be accepted; a value outside
    it is almost certainly a unit or entry error (e.g. haemoglobin in g/dL instead of g/L).
    """

    name: str
    unit: str
    kind: TargetKind
    group: Literal["age", "clinical", "conditions"]
    plausible: tuple[float, float]
    description: str


TARGETS: tuple[Target, ...] = (
    Target("age", "years", "regression", "age", (16, 100), "chronological age"),
    Target("weight", "kg", "regression", "clinical", (30, 250), "body weight"),
    Target("height", "cm", "regression", "clinical", (120, 220), "standing height"),
    Target("bmi", "kg/m^2", "regression", "clinical", (12, 70), "body-mass index"),
    Target("alt", "U/L", "regression", "clinical", (1, 1000), "alanine aminotransferase"),
    Target("ggt", "U/L", "regression", "clinical", (1, 2000), "gamma-glutamyl transferase"),
    Target("uric_acid", "umol/L", "regression", "clinical", (60, 1000), "serum uric acid"),
    Target("hemoglobin", "g/L", "regression", "clinical", (50, 220), "haemoglobin"),
    Target("hematocrit", "%", "regression", "clinical", (15, 65), "haematocrit"),
    Target("rbc_volume", "fL", "regression", "clinical", (50, 130), "mean corpuscular volume"),
    Target("smoking", "yes/no", "binary", "clinical", (0, 1), "current smoker"),
    Target("alcohol", "yes/no", "binary", "clinical", (0, 1), "current regular alcohol use"),
    Target("obesity", "yes/no", "condition", "conditions", (0, 1), "obesity (BMI criterion)"),
    Target("diabetes", "yes/no", "condition", "conditions", (0, 1), "type 2 diabetes"),
    Target("metabolic_syndrome", "yes/no", "condition", "conditions", (0, 1), "metabolic syndrome"),
    Target("hyperuricemia", "yes/no", "condition", "conditions", (0, 1), "hyperuricaemia"),
    Target("nafld", "yes/no", "condition", "conditions", (0, 1), "non-alcoholic fatty liver"),
    Target("anemia", "yes/no", "condition", "conditions", (0, 1), "anaemia"),
)

TARGET_BY_NAME: dict[str, Target] = {t.name: t for t in TARGETS}

#: Targets modelled on a log scale: liver enzymes are right-skewed, close to log-normal in
#: populations (a few people at several times the median), so a model fitted on the raw scale
#: spends itself on the tail and can answer below zero; on the log scale it cannot.
LOG_SCALE_TARGETS: tuple[str, ...] = ("alt", "ggt")


def bound_prediction(name: str, values):
    """``values`` of target ``name`` clipped to its plausible range (a prediction is never an
    impossible value); returns the clipped array and a mask of the values that were outside."""
    import numpy as np

    low, high = TARGET_BY_NAME[name].plausible
    values = np.asarray(values, dtype=float)
    outside = (values < low) | (values > high)
    return np.clip(values, low, high), outside


TARGET_NAMES: tuple[str, ...] = tuple(t.name for t in TARGETS)
BINARY_TARGETS: tuple[str, ...] = tuple(t.name for t in TARGETS if t.kind != "regression")
REGRESSION_TARGETS: tuple[str, ...] = tuple(t.name for t in TARGETS if t.kind == "regression")
CONDITIONS: tuple[str, ...] = tuple(t.name for t in TARGETS if t.kind == "condition")

#: Columns of the clinical table besides the targets. ``sex`` is optional for real cohorts but
#: needed for the sex-specific condition thresholds; the simulator always writes it.
ID_COLUMN = "subject_id"
#: A cross-fitted embedding's column, ``emb_f{j}_{k:03d}``: network ``j``'s feature ``k``.
FOLD_COLUMN = re.compile(r"^emb_f(\d+)_")
SEX_COLUMN = "sex"
SEX_VALUES = ("F", "M")


@dataclass(frozen=True)
class Landmark:
    """A named anthropometric landmark (Farkas 1994 abbreviations; ``_r``/``_l`` are the
    subject's own right and left)."""

    name: str
    description: str


LANDMARKS: tuple[Landmark, ...] = (
    Landmark("tr", "trichion: hairline in the midline"),
    Landmark("ft_r", "frontotemporale, right: most medial point of the temporal crest"),
    Landmark("ft_l", "frontotemporale, left"),
    Landmark("g", "glabella: most prominent midline point between the brows"),
    Landmark("n", "nasion: deepest point of the nasal root"),
    Landmark("ex_r", "exocanthion, right: outer eye corner"),
    Landmark("en_r", "endocanthion, right: inner eye corner"),
    Landmark("en_l", "endocanthion, left"),
    Landmark("ex_l", "exocanthion, left"),
    Landmark("ps_r", "palpebrale superius, right: highest point of the upper eyelid margin"),
    Landmark("pi_r", "palpebrale inferius, right: lowest point of the lower eyelid margin"),
    Landmark("ps_l", "palpebrale superius, left"),
    Landmark("pi_l", "palpebrale inferius, left"),
    Landmark("or_r", "orbitale, right: lowest point of the infraorbital margin"),
    Landmark("or_l", "orbitale, left"),
    Landmark("prn", "pronasale: nose tip"),
    Landmark("sn", "subnasale: junction of the columella and the upper lip"),
    Landmark("al_r", "alare, right: most lateral point of the nasal ala"),
    Landmark("al_l", "alare, left"),
    Landmark("ls", "labiale superius: midpoint of the upper vermilion line"),
    Landmark("sto", "stomion: midpoint of the mouth opening"),
    Landmark("li", "labiale inferius: midpoint of the lower vermilion line"),
    Landmark("ch_r", "cheilion, right: mouth corner"),
    Landmark("ch_l", "cheilion, left"),
    Landmark("sl", "sublabiale: deepest point of the labiomental fold"),
    Landmark("pg", "pogonion: most anterior point of the chin"),
    Landmark("gn", "gnathion: lowest point of the chin in the midline"),
    Landmark("zy_r", "zygion, right: most lateral point of the zygomatic arch"),
    Landmark("zy_l", "zygion, left"),
    Landmark("go_r", "gonion, right: angle of the mandible"),
    Landmark("go_l", "gonion, left"),
    Landmark("t_r", "tragion, right: notch above the tragus of the ear"),
    Landmark("t_l", "tragion, left"),
)

LANDMARK_NAMES: tuple[str, ...] = tuple(lm.name for lm in LANDMARKS)

#: The 20 regions of interest of the facial-omics model (DESIGN.md section 2).
REGIONS: tuple[str, ...] = (
    "corner_of_right_eye",
    "right_side_of_nose",
    "upper_right_eye",
    "right_eye",
    "lower_right_eye",
    "chin",
    "glabella",
    "forehead",
    "right_cheek",
    "philtrum",
    "right_temple",
    "nose",
    "mouth",
    "corner_of_left_eye",
    "left_side_of_nose",
    "upper_left_eye",
    "left_eye",
    "lower_left_eye",
    "left_cheek",
    "left_temple",
)

# Clinical criteria for the conditions (stated once; the simulator and docs use these).
#: Obesity: BMI >= 28 kg/m^2 (Working Group on Obesity in China) or >= 30 (WHO).
OBESITY_BMI = {"chinese": 28.0, "who": 30.0}
#: Anaemia: haemoglobin < 130 g/L in men, < 120 g/L in women (WHO 2011).
ANEMIA_HB = {"M": 130.0, "F": 120.0}
#: Hyperuricaemia: serum uric acid > 420 umol/L in men, > 360 umol/L in women.
HYPERURICEMIA_UA = {"M": 420.0, "F": 360.0}
#: Diabetes: fasting plasma glucose >= 7.0 mmol/L (WHO 2006 / ADA).
DIABETES_FPG = 7.0
