"""How health shows in a simulated face: every effect and its strength, in one place.

The simulator draws a subject's health state (``phenotypes``), turns it into a handful of
*face-visible latent parameters* here, and builds geometry (``anatomy``) and skin colour
(``texture``) from those latents plus an identity drawn independently of health. Each latent
is a noisy function of the health state, so no target can be read off a face exactly; the
noise is what calibrates the ceiling (the "latent oracle") to what published face studies
report (DESIGN.md section 2). Each latent, what drives it (with its per-subject noise), what
it does to the face, and the figure its noise is calibrated to, marked **[sourced]** (the
publication the figure comes from) or **[assumed]** (no published figure; a modelling
choice). Ceilings are the asymptotic oracle of ``benchmarks/oracle_bench.py`` (better of MLP
and ridge, 95 % CI; ``benchmarks/results/oracle_ceilings.csv``):

- ``apparent_age`` = age + N(0, 3.9 y). Sagging, deeper nasolabial folds, lid hooding,
  under-eye bags, thinner lips, wrinkles, age spots, greying hair. Target: age MAE ~3 y
  **[sourced]**: 3D faces, Xia et al. 2020 Nat Metab, 2.8 y (ThermoFace 2024: about 5).
  Ceiling 3.01 y [2.97, 3.06].
- ``adiposity`` = (waist - 84.5 M / 77.5 F cm) / 10 cm + N(0, 0.5). Facial width, cheek and
  submental fullness, softer jawline. The face shows fat, central fat above all (neck and
  submental fat track visceral fat and cardiometabolic risk beyond BMI: Preis SR et al.,
  J Clin Endocrinol Metab 2010;95:3701), so the latent reads the waist, and BMI is seen
  through the waist (r ~0.8, ``phenotypes``). Targets: obesity AUROC ~0.9 and metabolic
  syndrome AUROC ~0.87 **[sourced]**: 3D faces, Sci China Life Sci 2025 (as DESIGN.md cites
  it); ceilings 0.898 [0.890, 0.906] and 0.874 [0.867, 0.882]. BMI r 0.7-0.85
  **[assumed]** (DESIGN.md states the band without a source); ceiling 0.757 [0.748, 0.766]:
  obesity at ~0.9 pins r(BMI) near 0.76 in this simulator, so the former "~0.8" of this
  docstring could not hold beside it and was dropped.
- ``stature`` = 0.3 * height z-score (within sex) + N(0, 0.95). Overall face size.
  Target: height r ~0.3 within sex (face size vs stature) **[assumed]**; sex adds the rest.
- ``smoking_damage`` = current smoker * (0.55 + pack-years / 60) + N(0, 1.1). Perioral
  vertical lines, a sallow (yellow-grey) tone. Target: smoking AUROC ~0.75 **[assumed]**
  (Kadunce et al. 1991 Ann Intern Med report perioral wrinkling in most heavy smokers, not
  an AUROC). Not met, and not meetable through this latent: with 50.5 % of men and 2.1 % of
  women smoking, sex alone gives AUROC ~0.81; ceiling 0.886.
- ``redness`` = regular drinker * (0.45 + g/day / 80) + N(0, 1.0). Erythema of cheeks and
  nose. Target: alcohol AUROC ~0.75 **[assumed]**; ceiling 0.79 (sex again adds).
- ``pallor`` = -0.75 * (Hb - sex mean) / 13 g/L + N(0, 1.5). Paler lips, lower-lid rim and
  skin. Target: anaemia AUROC ~0.8 **[sourced, study unnamed]**: DESIGN.md's figure of Hb
  from face video, AUROC 0.84, whose paper DESIGN.md does not name (nor does this file).
  Ceiling 0.793 [0.778, 0.809].

Sex shows in the face (morphology), so targets that differ by sex (height, haemoglobin,
uric acid, GGT, smoking in a population where half the men smoke and few women do) are
partly visible through sex alone; ``benchmarks/oracle_bench.py`` prints the resulting ceiling.

Everything else a model might learn (uric acid, ALT, GGT, MCV, diabetes, metabolic syndrome,
NAFLD, hyperuricaemia) is visible only through its correlation with the latents above, as in
real faces. Target for the lab values with no facial sign (uric acid, ALT, GGT, MCV): r
about 0.2 to 0.5 **[assumed]** (DESIGN.md gives no source). Ceilings: ALT 0.49, GGT 0.50
[0.49, 0.52] (at the edge), MCV 0.24 (inside); uric acid 0.54 [0.52, 0.55], above the band,
and left there: with the sex gap and spread that reproduce [ZM22] (source list in
``phenotypes``; SUA > 420 umol/L in 24 % of men and 3 % of women), sex alone gives r 0.48,
and adiposity (r(BMI, uric acid) 0.26 within sex, as in surveys) adds the rest; reaching 0.5
would need a narrower sex gap or a wider within-sex spread than the survey's.

Calibration (issue 13; every value chosen on the oracle pool of ``benchmarks/oracle_bench.py``,
19,000 subjects of seed 777, which no pipeline cohort uses; no other cohort was looked at):
the ceilings were off DESIGN.md for metabolic syndrome (0.816 vs ~0.87), uric acid (r 0.599)
and GGT (r 0.565) vs 0.2-0.5, obesity (0.923 vs ~0.9) and, just, age (MAE 3.09 [3.04, 3.13]
vs ~3). Changes, before -> after:

- adiposity reads the waist instead of BMI: ``(bmi - 23.5) / 3.5 + N(0, 0.75)`` ->
  ``(waist - WAIST_REF) / 10 + N(0, 0.5)``; and in ``phenotypes`` part of the waist left after
  BMI and age is insulin resistance (visceral fat): waist residual N(0, 4.5) ->
  4.5 * e_met + N(0, 3.0) cm. Metabolic syndrome could not reach ~0.87 through BMI: even the
  exact BMI, age and sex give 0.87, and obesity ~0.9 needs a noisy view of BMI. Now the face
  sees the central fat that carries part of the insulin resistance (MetS 0.816 -> 0.874),
  and the noise sets obesity (0.923 -> 0.898). Side effects: NAFLD 0.73 -> 0.78, diabetes
  0.73 -> 0.75, BMI r 0.81 -> 0.76, ALT r up (see below).
- ``AGE_NOISE_SD`` 4.0 -> 3.9 (age MAE 3.09 -> 3.01).
- ``phenotypes`` (sources [ZM22] and [WS12] listed there): uric acid men's median 355 ->
  350 umol/L and log noise 0.185 -> 0.22, so the shares above 420 match [ZM22] (24.4 % of
  men, 3.6 % of women; were 22 % / 2 %, a within-sex spread narrower than the survey's):
  r 0.599 -> 0.537.
- GGT women's median 13 -> 15 U/L and log noise 0.36 -> 0.40, as the reference intervals
  [WS12] imply (women's median ~0.72 of men's, a reference subject's log sd ~0.46):
  r 0.565 -> 0.504 (sex alone now gives 0.43, before 0.51).
- ALT log noise 0.33 -> 0.36 ([WS12]'s spread): r 0.466 -> 0.493 (the visible insulin
  resistance alone had raised it to 0.51).

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
- adiposity, per unit (10 cm of waist, about 4 kg/m^2 of BMI): lower-face half width
  +2.6 mm (cheeks) and +1.6 mm (jaw), cheek fullness +1.8 mm, neck radius and submental
  fullness +4 mm (3 mm), temples 1 mm fuller, under-eye bags +0.3 mm, eye fissures 0.4 mm
  narrower.
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

AGE_NOISE_SD = 3.9
#: adiposity reads central fat: waist (cm) against a sex reference, per WAIST_SD cm.
WAIST_REF = {"M": 84.5, "F": 77.5}
WAIST_SD, ADIPOSITY_NOISE_SD = 10.0, 0.5
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
    row : a phenotype record with ``sex, age, waist, height, smoking, pack_years, alcohol,
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
        adiposity=(float(row["waist"]) - WAIST_REF[sex]) / WAIST_SD
        + rng.normal(0.0, ADIPOSITY_NOISE_SD),
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
