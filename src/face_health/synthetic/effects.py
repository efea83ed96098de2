"""How health shows in a simulated face: every effect and its strength, in one place.

The simulator draws a subject's health state (``phenotypes``), turns it into a handful of
*face-visible latent parameters* here, and builds geometry (``anatomy``) and skin colour
(``texture``) from those latents plus an identity drawn independently of health. Each latent
is a noisy function of the health state, so no target can be read off a face exactly; the
noise is what calibrates the ceiling (the "latent oracle") to what published face studies
report (DESIGN.md section 2). Each latent, what drives it (with its per-subject noise), what
it does to the face, and the published figure its noise is calibrated to:

- ``apparent_age`` = age + N(0, 4.0 y). Sagging, deeper nasolabial folds, lid hooding,
  under-eye bags, thinner lips, wrinkles, age spots, greying hair. Target: age MAE ~3 y
  (3D faces, Xia et al. 2020 Nat Metab: 2.8 y).
- ``adiposity`` = (BMI - 23.5) / 3.5 + N(0, 0.75). Facial width, cheek and submental
  fullness, softer jawline. Target: BMI r ~0.8, obesity AUROC ~0.9 (3D faces, Sci China Life
  Sci 2025).
- ``stature`` = 0.3 * height z-score (within sex) + N(0, 0.95). Overall face size.
  Target: height r ~0.3 within sex (face size vs stature); sex adds the rest.
- ``smoking_damage`` = current smoker * (0.55 + pack-years / 60) + N(0, 1.1). Perioral
  vertical lines, a sallow (yellow-grey) tone. Target: smoking AUROC ~0.75 (perioral lines
  in most heavy smokers, Kadunce et al. 1991 Ann Intern Med).
- ``redness`` = regular drinker * (0.45 + g/day / 80) + N(0, 1.0). Erythema of cheeks and
  nose. Target: alcohol AUROC ~0.75.
- ``pallor`` = -0.75 * (Hb - sex mean) / 13 g/L + N(0, 1.5). Paler lips, lower-lid rim and
  skin. Target: anaemia AUROC ~0.8 (Hb from face video, AUROC 0.84).

Sex shows in the face (morphology), so targets that differ by sex (height, haemoglobin,
uric acid, smoking in a population where half the men smoke and few women do) are partly
visible through sex alone; ``benchmarks/oracle_bench.py`` prints the resulting ceiling.

Everything else a model might learn (uric acid, ALT, GGT, MCV, diabetes, metabolic syndrome,
NAFLD, hyperuricaemia) is visible only through its correlation with the latents above, as in
real faces (r about 0.2 to 0.5).

Strength in the face, per unit of latent. Geometry is displacement fields on the
ICT-FaceKit topology (``anatomy.ShapeFields``, anchored to the mean face's landmarks, so they
follow every identity); skin is painted in the ICT UV layout (``texture``):

- ageing, per 60 years of apparent age (``age_factor`` 0 at 20 y, 1 at 80 y): lower-face
  soft tissue down 4 mm (1.8 mm at the chin; the jowls also 1.2 mm outward), nasolabial
  fold 0.6 -> 3.0 mm
  deep with the cheek beside it 0.8 mm proud, upper-lid hooding 1.6 mm, under-eye bags
  1.5 mm, vermilion height and projection -35 %, nose tip down 1.5 mm, temples 1.5 mm
  hollower, lateral brows down 2 mm; forehead lines, crow's feet and under-eye lines darken
  the skin by up to 14 %; 0 -> ~30 age spots; hair greys, and men's hairlines recede (about
  14 mm) and crowns thin (Hamilton-Norwood).
- adiposity, per z-unit (about 3.5 kg/m^2): lower-face half width +2.6 mm (cheeks) and
  +1.6 mm (jaw), cheek fullness +1.8 mm, neck radius and submental fullness +4 mm (3 mm),
  temples 1 mm fuller, under-eye bags +0.3 mm, eye fissures 0.4 mm narrower.
- stature, per unit: the whole face 2.5 % larger.
- sex: men's faces 6 % larger than women's (``SEX_SCALE``; Farkas 1994: n-gn, al-al, ch-ch
  8 %, ex-ex 5 %) and apart along one direction of the identity prior (brow ridge, nose,
  jaw, chin, forehead slope, cheeks, lips; ``anatomy.sex_direction``) by
  ``SEX_SEPARATION`` standard deviations, which puts a classifier on 3D shape at about the
  95 % that 3D face studies report (``benchmarks/face_realism_bench.py`` measures it).
- smoking_damage, per unit: perioral vertical lines 12 % darker (at most 22 %, age adds 5 % per
  60 years), skin saturation -6 %
  and yellow shift +4 %.
- redness, per unit: cheek and nose erythema, red channel +7 %, green -5 %.
- pallor, per unit: lips 12 % of the way from red to pale pink, lower-eyelid rim redness
  -10 %, skin redness -3 %.
- nuisance, independent of health: a mild expression (blink up to 0.45, smile up to 0.3,
  jaw opening up to 0.12 of ICT's blendshapes, brows and squint), skin tone, freckling,
  scalp hair thickness 2-14 mm (standing off the scalp on top and behind, flat at the
  sideburns and temples).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

AGE_NOISE_SD = 4.0
BMI_REF, BMI_SD, ADIPOSITY_NOISE_SD = 23.5, 3.5, 0.75
STATURE_WEIGHT = 0.3
HEIGHT_REF = {"M": 170.0, "F": 158.0}
HEIGHT_SD = 6.5
SMOKING_BASE, SMOKING_PER_PACK_YEAR, SMOKING_NOISE_SD = 0.55, 1 / 60, 1.1
REDNESS_BASE, REDNESS_PER_G_DAY, REDNESS_NOISE_SD = 0.45, 1 / 80, 1.0
HB_REF = {"M": 150.0, "F": 132.0}
HB_SD, PALLOR_WEIGHT, PALLOR_NOISE_SD = 13.0, 0.75, 1.5

# Geometry, per unit of latent (mm unless stated; see the list above).
AGE_SAG_MM = 4.0
FOLD_BASE_MM, AGE_FOLD_MM = 0.6, 2.4
AGE_HOODING_MM, AGE_BAGS_MM = 1.6, 1.5
AGE_VERMILION_LOSS = 0.35  # share of vermilion height and projection lost per 60 years
LIP_PROJECTION_MM = 3.6  # how far the vermilion stands out of the skin around it
AGE_NOSE_TIP_MM, AGE_TEMPLE_MM, AGE_BROW_MM = 1.5, 1.5, 2.0
FAT_CHEEK_WIDTH_MM, FAT_JAW_WIDTH_MM = 2.6, 1.6
FAT_CHEEK_FULLNESS_MM, FAT_NECK_MM = 1.8, 4.0
FAT_TEMPLE_MM, FAT_BAGS_MM, FAT_EYE_OPENING_MM = 1.0, 0.3, 0.4
STATURE_SCALE = 0.025
SEX_SCALE = {"M": 1.03, "F": 0.97}
SEX_SEPARATION = 1.6  # standard deviations of the identity prior between the sexes' means


@dataclass(frozen=True)
class Appearance:
    """The face-visible latent parameters of one subject (the oracle's inputs)."""

    sex: str
    apparent_age: float
    adiposity: float
    stature: float
    smoking_damage: float
    redness: float
    pallor: float

    @property
    def age_factor(self) -> float:
        """0 at 20 years of apparent age, 1 at 80 (unclipped, so 90 gives 1.17)."""
        return (self.apparent_age - 20.0) / 60.0

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def appearance_from_phenotype(row: pd.Series | dict, rng: np.random.Generator) -> Appearance:
    """Draw the face-visible latents of one subject from its health state.

    Parameters
    ----------
    row : a phenotype record with ``sex, age, bmi, height, smoking, pack_years, alcohol,
        alcohol_g_per_day, hemoglobin``.
    rng : the subject's own generator (its draws here are the per-subject noise).
    """
    sex = str(row["sex"])
    smoking_dose = float(row["smoking"]) * (
        SMOKING_BASE + SMOKING_PER_PACK_YEAR * min(float(row["pack_years"]), 60.0)
    )
    drinking_dose = float(row["alcohol"]) * (
        REDNESS_BASE + REDNESS_PER_G_DAY * min(float(row["alcohol_g_per_day"]), 80.0)
    )
    return Appearance(
        sex=sex,
        apparent_age=float(row["age"]) + rng.normal(0.0, AGE_NOISE_SD),
        adiposity=(float(row["bmi"]) - BMI_REF) / BMI_SD + rng.normal(0.0, ADIPOSITY_NOISE_SD),
        stature=STATURE_WEIGHT * (float(row["height"]) - HEIGHT_REF[sex]) / HEIGHT_SD
        + rng.normal(0.0, np.sqrt(1.0 - STATURE_WEIGHT**2)),
        smoking_damage=smoking_dose + rng.normal(0.0, SMOKING_NOISE_SD),
        redness=drinking_dose + rng.normal(0.0, REDNESS_NOISE_SD),
        pallor=-PALLOR_WEIGHT * (float(row["hemoglobin"]) - HB_REF[sex]) / HB_SD
        + rng.normal(0.0, PALLOR_NOISE_SD),
    )


#: The face-visible latent columns of ``truth/latents.csv``, in the order ``visible_latents``
#: writes them (what the latent oracle reads).
VISIBLE_LATENTS: tuple[str, ...] = (
    "look_apparent_age",
    "look_adiposity",
    "look_stature",
    "look_smoking_damage",
    "look_redness",
    "look_pallor",
    "face_scale",
)


def visible_latents(look: Appearance) -> dict[str, float]:
    """The face-visible latent columns of ``truth/latents.csv`` for one subject.

    ``look_<name>`` for every latent of ``look`` but sex, then ``face_scale``, the overall
    size factor of the face (``SEX_SCALE`` times ``1 + STATURE_SCALE * stature``). A pure
    function of ``look``: the simulator writes it and the latent oracle reads it without
    building a face.
    """
    return {
        **{f"look_{k}": v for k, v in look.as_dict().items() if k != "sex"},
        "face_scale": SEX_SCALE[look.sex] * (1.0 + STATURE_SCALE * look.stature),
    }
