"""Simulated adult health phenotypes: the ground truth of every accuracy benchmark.

An adult population (20 to 80 years) modelled on Chinese cohorts, since the face studies the
project compares with are Chinese (e.g. Xia et al. 2020, Nat Metab). Each subject gets a few
independent latent factors (adiposity ``z_bmi``, insulin resistance beyond adiposity
``e_met``, a smoking/drinking liability, iron deficiency, thalassaemia trait) and every
measured value is a structural equation of age, sex, those latents and its own noise, so
the correlations between phenotypes arise the way they do in people, not by a fitted
covariance. Figures marked "assumed" are modelling choices that were tuned so the marginals
and correlations land on the sourced figures (measured values: ``tests/synthetic``).

====================  ===============================================  ========================
variable              distribution / equation                          source
====================  ===============================================  ========================
sex                   Bernoulli(0.5)                                   census [C20]
age                   5-year bins 20-79 weighted by population         [C20]
height                N(171 M / 159.5 F - 0.11 (age-20), 6.2 / 5.6)    [RN20]
bmi                   med(age, sex) * exp(0.145 z_bmi), smokers -2%    [WJ21], [RN20], [PX21]
weight                bmi * height^2 (bmi recomputed after rounding)   identity
waist                 85.5 M / 79 F + 2.3 (bmi-24) + 0.12 (age-45)     [CC18], assumed slope
                      + 4.5 e_met + e (visceral fat)                   assumed
smoking               probit, 50.5% M / 2.1% F, age hump in men        [GATS]
pack_years            cig/day LN(15 M / 8 F) x years since ~20 y       [GATS]
alcohol               probit, ~40% M / ~10% F, liability r 0.4 smoking [CKB], assumed
alcohol_g_per_day     drinkers: LN(median 20 M / 6 F g/d, 0.9)         [CKB], assumed
liver_fat             LN(median ~2.9 %), + z_bmi, e_met, male, alcohol [DHS], [ZF20]
glucose               5.12 + age + z_bmi + e_met + e; diabetics + LN   [LY20]
triglycerides         LN(1.3 M / 1.05 F), + z_bmi, e_met, alcohol      [CC15]
hdl                   LN(1.2 M / 1.38 F), - z_bmi, e_met, smoking      [CC15]
sbp, dbp              121/77 + age (steeper in F) + bmi + alcohol + e  [CHS18]
alt                   LN(18 M / 12.5 F) x liver fat^0.45, alcohol, HBV [WS12], [HBV18]
ggt                   LN(21 M / 15 F), + log1p(alcohol g), liver fat   [WS12], [PU06]
uric_acid             LN(350 M / 262 F), + z_bmi, alcohol, menopause   [ZM22]
hemoglobin            N(151 M / 133.5 F, 9) + 3 smokers - ID - thal    [RN20], [NO90]
hematocrit            100 * Hb / MCHC, MCHC ~ N(340, 10) g/L           standard indices
rbc_volume (MCV)      N(90, 4) - ID - thal + age + alcohol + smoking   [SA00], [LK17]
====================  ===============================================  ========================

Sources: [C20] China 7th National Population Census 2020, tabulation by age.
[RN20] Report on Nutrition and Chronic Disease Status of Chinese Residents 2020 (adult height
169.7 cm men / 158.0 cm women aged 18-44; obesity, BMI >= 28, 16.4%; adult anaemia 8.7%).
[WJ21] Wang L et al., JAMA 2021;326:2498 (CCDRFS 2018: mean adult BMI 24.4).
[PX21] Pan XF et al., Lancet Diabetes Endocrinol 2021;9:373 (obesity in China, by age).
[CC18] China Chronic Disease and Risk Factor Surveillance 2018 (mean waist ~85 M / ~80 F cm).
[GATS] Global Adult Tobacco Survey China 2018 (current smoking 50.5% men, 2.1% women;
~16 cigarettes/day in daily smokers; ~20% quit ratio).
[CKB] China Kadoorie Biobank, Millwood IY et al., Lancet 2019;393:1831 (drinking patterns).
[DHS] Szczepaniak LS et al., Am J Physiol Endocrinol Metab 2005;288:E462 (hepatic fat by
MRS: median ~3.6%, 5.56% = 95th centile of lean healthy, 31% above it).
[ZF20] Zhou F et al., Hepatology 2020;71:1851 (NAFLD prevalence in China 29.2%).
[LY20] Li Y et al., BMJ 2020;369:m997 (diabetes 11.2% in 2017, rising with age and BMI).
[CC15] Chinese adult lipid surveys (CCDRFS 2015; Joint Committee guideline 2016):
TG >= 1.7 mmol/L in roughly a quarter, low HDL-C common; figures approximate.
[CHS18] Wang Z et al., Circulation 2018;137:2344 (China Hypertension Survey 2012-15).
[WS12] Chinese reference intervals WS/T 404.1-2012 (ALT <= 50/40 U/L, GGT <= 60/45 U/L).
[HBV18] Polaris Observatory Collaborators, Lancet Gastroenterol Hepatol 2018 (HBsAg China ~6%).
[PU06] Puukka K et al., Am J Clin Nutr 2006 (additive effects of drinking and BMI on GGT).
[ZM22] Zhang M et al., Front Immunol 2022;12:791983 (hyperuricaemia, SUA > 420 umol/L,
14.0% in 2018-19: 24.4% of men, 3.6% of women).
[NO90] Nordenberg D et al., JAMA 1990;264:1556 (smokers' Hb about 3 g/L higher).
[SA00] Savage DG et al., Am J Med Sci 2000 (alcohol the commonest cause of macrocytosis).
[LK17] Lai K et al., Sci Rep 2017;7:920 (thalassaemia carriers in mainland China).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, ndtri

from face_health.schema import (
    ANEMIA_HB,
    CONDITIONS,
    DIABETES_FPG,
    HYPERURICEMIA_UA,
    OBESITY_BMI,
)

# --- Criteria not in face_health.schema (metabolic syndrome, NAFLD) -------------------------
#: Metabolic syndrome, harmonised definition (Alberti KGMM et al., Circulation
#: 2009;120:1640) with the Chinese/Asian waist cut-offs it names: >= 90 cm men, >= 80 women.
METS_WAIST_CM = {"M": 90.0, "F": 80.0}
METS_TG = 1.7  # mmol/L, >=
METS_HDL = {"M": 1.0, "F": 1.3}  # mmol/L, <
METS_SBP = 130.0  # mmHg, >=
METS_DBP = 85.0  # mmHg, >=
METS_FPG = 5.6  # mmol/L, >=
METS_MIN_COMPONENTS = 3
#: NAFLD: hepatic fat fraction >= 5% (EASL-EASD-EASO guideline, J Hepatol 2016;64:1388) ...
NAFLD_LIVER_FAT = 5.0
#: ... and alcohol below the guideline's limits for "non-alcoholic": < 30 g/d men, < 20 women.
NAFLD_ALCOHOL_G = {"M": 30.0, "F": 20.0}

# --- Calibrated to the latent oracle (issue 13; see synthetic/effects.py) ---------------------
#: Waist: independent residual (cm) and the part carried by insulin resistance e_met (cm per
#: sd). Was 4.5 cm, all independent; the split is assumed (residual now ~5.4 cm; r(BMI,
#: waist) 0.84 -> 0.80).
WAIST_NOISE_CM, WAIST_PER_E_MET_CM = 3.0, 4.5
#: GGT of a lean non-drinking non-smoker (U/L) and its log-scale noise. Women 13 -> 15 and
#: noise 0.36 -> 0.40: the reference limits [WS12] (10-60 men, 7-45 women) put the women's
#: median at ~0.72 of the men's (15/21 = 0.71) and a reference subject's log sd at ~0.46.
GGT_MEDIAN, GGT_NOISE_SD = {"M": 21.0, "F": 15.0}, 0.40
#: Uric acid medians (umol/L) and log-scale noise. Was 355 / 262 and 0.185; now SUA > 420
#: holds in ~24% of men and ~3% of women, as [ZM22] measured (24.4% / 3.6% at > 420 for both
#: sexes in 2018-19).
UA_MEDIAN, UA_NOISE_SD = {"M": 350.0, "F": 262.0}, 0.22
#: ALT log-scale noise, 0.33 -> 0.36: with the liver-fat term a reference subject's log sd is
#: ~0.44, what the reference limits [WS12] (9-50 U/L men, 7-40 women) imply.
ALT_NOISE_SD = 0.36

#: The six conditions, in the schema's order.
CONDITION_COLUMNS: tuple[str, ...] = CONDITIONS
#: Every column :func:`simulate_phenotypes` writes, in order.
# fmt: off
PHENOTYPE_COLUMNS: tuple[str, ...] = (
    "sex", "age", "height", "weight", "bmi", "waist",
    "smoking", "alcohol", "alcohol_g_per_day", "pack_years",
    "glucose", "triglycerides", "hdl", "sbp", "dbp", "liver_fat",
    "alt", "ggt", "uric_acid", "hemoglobin", "hematocrit", "rbc_volume",
    *CONDITION_COLUMNS,
)
_CRITERIA_INPUTS: tuple[str, ...] = (
    "sex", "bmi", "waist", "glucose", "triglycerides", "hdl", "sbp", "dbp",
    "uric_acid", "liver_fat", "alcohol_g_per_day", "hemoglobin",
)
# fmt: on

# Age structure 20-79 from the 2020 census [C20], millions per 5-year bin (rounded). The
# bulge at 30-34 and 45-59 and the thin 1959-61 birth cohort (60-64) are real features.
_AGE_BIN_STARTS = np.arange(20, 80, 5)
_AGE_BIN_MILLIONS = np.array([75, 92, 124, 99, 93, 114, 121, 101, 73, 74, 50, 31], dtype=float)


def _sample_age(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw adult ages from the census bins, uniform within a bin."""
    p = _AGE_BIN_MILLIONS / _AGE_BIN_MILLIONS.sum()
    start = rng.choice(_AGE_BIN_STARTS, size=n, p=p)
    return start + 5.0 * rng.random(n)


def _probit(p: np.ndarray, liability: np.ndarray) -> np.ndarray:
    """1 where a standard-normal liability falls below the probit of ``p`` (so P = p)."""
    return (liability < ndtri(p)).astype(int)


def simulate_phenotypes(
    n: int, rng: np.random.Generator, *, obesity_criterion: str = "chinese"
) -> pd.DataFrame:
    """Simulate ``n`` adults' phenotypes and the six conditions derived from them.

    Parameters
    ----------
    n
        Number of subjects (rows).
    rng
        Source of randomness; the frame is a deterministic function of its state.
    obesity_criterion
        Key of :data:`face_health.schema.OBESITY_BMI` ("chinese": BMI >= 28, "who": >= 30).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PHENOTYPE_COLUMNS`, a default ``RangeIndex``; no subject id.
    """
    _check_criterion(obesity_criterion)
    male = rng.random(n) < 0.5
    sex = np.where(male, "M", "F")
    age = _sample_age(n, rng)
    a = (age - 45.0) / 15.0  # standardised age for small linear effects

    # Smoking and drinking share a liability (tetrachoric r ~ 0.4): smokers drink more.
    life = rng.standard_normal(n)
    lia_s = 0.63 * life + 0.77 * rng.standard_normal(n)
    lia_d = 0.63 * life + 0.77 * rng.standard_normal(n)
    # [GATS] men 50.5%, peaking in middle age; women ~2%, more in older women.
    p_smoke = np.where(male, 0.535 - 0.00015 * (age - 50) ** 2, 0.008 + 0.0006 * (age - 20))
    smoking = _probit(p_smoke, lia_s)
    # Former smokers: a ~20% quit ratio [GATS] -> about a quarter of male non-smokers.
    former = (smoking == 0) & (rng.random(n) < np.where(male, 0.25, 0.01))
    start_age = np.clip(rng.normal(20.0, 4.0, n), 12.0, age)
    years = (age - start_age) * np.where(former, rng.uniform(0.2, 0.9, n), 1.0)
    cig_day = np.where(male, 15.0, 8.0) * np.exp(0.5 * rng.standard_normal(n))
    pack_years = np.where((smoking == 1) | former, cig_day / 20.0 * years, 0.0)
    # Regular drinking ~40% of men / ~10% of women (assumed: CKB weekly drinking is a bit lower,
    # any drinking in the past year higher [CKB]).
    p_drink = np.where(male, 0.42 - 0.0001 * (age - 48) ** 2, 0.10)
    alcohol = _probit(p_drink, lia_d)
    # Intake of drinkers is log-normal (a heavy tail of >= 60 g/day men), smokers drink more.
    g_med = np.where(male, 20.0, 6.0) * np.exp(0.2 * smoking)
    alc_g = np.where(
        alcohol == 1, np.minimum(g_med * np.exp(0.9 * rng.standard_normal(n)), 250.0), 0.0
    )
    alc_c = np.minimum(alc_g, 120.0)  # effects saturate; stops a few extreme drinkers dominating

    # Anthropometry. Height: secular trend + ageing shrinkage, ~0.11 cm/y across cohorts [RN20].
    height = (
        np.where(male, 171.0, 159.5)
        - 0.11 * (age - 20)
        + rng.normal(0, 1, n) * np.where(male, 6.2, 5.6)
    )
    # BMI median rises ~2.5 kg/m2 from 20 to ~60 then is flat [PX21]; right-skewed (log-normal),
    # smokers ~0.5 kg/m2 leaner. z_bmi is the adiposity latent that drives the metabolic labs.
    rise = 1.0 - np.exp(-(age - 20.0) / 13.0)
    z_bmi = rng.standard_normal(n)
    bmi_raw = np.where(male, 22.7 + 2.5 * rise, 21.8 + 2.8 * rise) * np.exp(
        0.145 * z_bmi - 0.02 * smoking
    )
    # Living adults rarely fall below BMI ~15: a soft floor bends the left tail towards 15.5
    # (no point mass), and the hard bounds keep extreme draws inside the schema's ranges.
    low = bmi_raw < 17.0
    bmi_raw[low] = 17.0 - 1.5 * (1.0 - np.exp(-(17.0 - bmi_raw[low]) / 1.5))
    height = np.round(np.clip(height, 130.0, 205.0), 1)
    weight = np.round(np.clip(bmi_raw * (height / 100.0) ** 2, 30.0, 250.0), 1)
    bmi = weight / (height / 100.0) ** 2
    waist = (
        np.where(male, 85.5, 79.0)
        + np.where(male, 2.4, 2.2) * (bmi - 24.0)
        + 0.12 * (age - 45)
        + rng.normal(0, WAIST_NOISE_CM, n)
    )

    # Insulin resistance not explained by adiposity (genes, fitness, diet): shared by the
    # liver, lipid, glucose and BP equations, so the MetS components cluster as they do.
    e_met = rng.standard_normal(n)
    # Visceral fat at a given BMI is the commonest reason for insulin resistance beyond
    # adiposity, so part of the waist left over after BMI and age is e_met (assumed split of
    # the ~5 cm residual: WAIST_PER_E_MET_CM from e_met, WAIST_NOISE_CM independent).
    waist = waist + WAIST_PER_E_MET_CM * e_met
    log_lf = (
        np.log(2.9)
        + 0.15 * male
        + 0.45 * z_bmi
        + 0.30 * e_met
        + 0.08 * a
        + 0.004 * alc_c
        + rng.normal(0, 0.55, n)
    )
    liver_fat = np.clip(np.exp(log_lf), 0.3, 45.0)
    lf_dev = log_lf - np.log(2.9)  # liver-fat deviation feeding ALT and GGT

    # Diabetes liability: OR ~1.13 per kg/m2 and ~1.7 per decade [LY20]; diabetics' FPG sits
    # ~2.6 mmol/L above their non-diabetic level (treated and untreated mixed), log-normal.
    p_dm = expit(-2.15 + 0.055 * (age - 50) + 0.12 * (bmi - 24) + 0.5 * e_met + 0.15 * male)
    dm = rng.random(n) < p_dm
    glucose = (
        5.12
        + 0.009 * (age - 45)
        + 0.10 * z_bmi
        + 0.10 * e_met
        + 0.08 * male
        + rng.normal(0, 0.42, n)
        + dm * np.exp(np.log(2.6) + 0.55 * rng.standard_normal(n))
    )
    triglycerides = np.exp(
        np.log(np.where(male, 1.3, 1.05))
        + 0.22 * z_bmi
        + 0.20 * e_met
        + 0.003 * alc_c
        + 0.06 * a
        + rng.normal(0, 0.38, n)
    )
    # HDL falls with adiposity, insulin resistance and smoking; alcohol raises it.
    hdl = np.exp(
        np.log(np.where(male, 1.2, 1.38))
        - 0.08 * z_bmi
        - 0.07 * e_met
        - 0.04 * smoking
        + 0.002 * alc_c
        + rng.normal(0, 0.17, n)
    )
    # BP rises with age (steeper in women after menopause) and BMI [CHS18]; alcohol pressor.
    e_bp = rng.standard_normal(n)
    sbp = (
        121.0
        + 4.0 * male
        + np.where(male, 0.45, 0.65) * (age - 45)
        + 1.1 * (bmi - 24)
        + 0.08 * alc_c
        + 2.0 * e_met
        + 12.0 * e_bp
    )
    dbp = (
        77.0
        + 3.0 * male
        + 0.15 * (age - 45)
        - 0.006 * (age - 50) ** 2
        + 0.6 * (bmi - 24)
        + 0.04 * alc_c
        + 6.0 * e_bp
        + rng.normal(0, 4.5, n)
    )

    # Liver enzymes: ALT follows hepatic fat (r ~0.5 in logs), GGT follows alcohol [PU06].
    # Chronic hepatitis B (HBsAg+ ~6% of Chinese adults [HBV18]) adds a long ALT/GGT tail
    # unrelated to adiposity, as in real health-check data.
    hbv = (rng.random(n) < 0.06) * rng.normal(0.3, 0.5, n).clip(0, None)
    alt = np.exp(
        np.log(np.where(male, 18.0, 12.5))
        + 0.45 * lf_dev
        + 0.002 * alc_c
        - 0.04 * a
        + hbv
        + rng.normal(0, ALT_NOISE_SD, n)
    )
    ggt = np.exp(
        np.log(np.where(male, GGT_MEDIAN["M"], GGT_MEDIAN["F"]))
        + 0.18 * np.log1p(alc_g)
        + 0.30 * lf_dev
        + 0.08 * smoking
        + np.where(male, 0.0, 0.08) * a
        + 0.6 * hbv
        + rng.normal(0, GGT_NOISE_SD, n)
    )
    # Uric acid: sex gap, adiposity, alcohol; women's rises after menopause (~50 y) [ZM22].
    meno = expit((age - 50.0) / 3.0) * ~male
    uric_acid = np.exp(
        np.log(np.where(male, UA_MEDIAN["M"], UA_MEDIAN["F"]))
        + 0.065 * z_bmi
        + 0.04 * e_met
        + 0.0015 * alc_c
        + 0.08 * meno
        + rng.normal(0, UA_NOISE_SD, n)
    )

    # Red cells. Iron deficiency: ~11% of menstruating women, few men/older women (assumed,
    # matching adult anaemia 8.7% [RN20]); thalassaemia trait ~3% (higher in the south [LK17]).
    iron_def = rng.random(n) < np.where(male, 0.04, np.where(age < 50, 0.13, 0.05))
    thal = rng.random(n) < 0.03
    hemoglobin = (
        np.where(male, 151.0 - 0.4 * np.clip(age - 60, 0, None), 133.5)
        + 3.0 * smoking
        + 0.4 * (bmi - 24)
        - iron_def * rng.normal(20.0, 6.0, n)
        - 10.0 * thal
        + rng.normal(0, 9.0, n)
    )
    # MCHC is lower in hypochromic states; Hct = Hb / MCHC keeps r(Hb, Hct) ~ 0.95.
    mchc = rng.normal(340.0, 10.0, n) - 15.0 * iron_def - 10.0 * thal
    hematocrit = 100.0 * hemoglobin / mchc
    rbc_volume = (
        90.0
        + 0.05 * (age - 45)
        + 0.05 * alc_c
        + 1.0 * smoking
        - iron_def * rng.normal(12.0, 4.0, n)
        - thal * rng.normal(22.0, 4.0, n)
        + rng.normal(0, 4.0, n)
    )

    table = pd.DataFrame(
        {
            "sex": sex,
            "age": np.round(age, 1),
            "height": height,
            "weight": weight,
            "bmi": np.round(bmi, 2),
            "waist": np.round(waist, 1),
            "smoking": smoking,
            "alcohol": alcohol,
            "alcohol_g_per_day": np.round(alc_g, 1),
            "pack_years": np.round(pack_years, 1),
            "glucose": np.round(np.clip(glucose, 3.0, 30.0), 2),
            "triglycerides": np.round(np.clip(triglycerides, 0.3, 20.0), 2),
            "hdl": np.round(np.clip(hdl, 0.4, 3.5), 2),
            "sbp": np.round(np.clip(sbp, 85.0, 240.0)),
            "dbp": np.round(np.clip(dbp, 45.0, 140.0)),
            "liver_fat": np.round(liver_fat, 1),
            "alt": np.round(np.clip(alt, 3.0, 800.0)),
            "ggt": np.round(np.clip(ggt, 4.0, 1500.0)),
            "uric_acid": np.round(np.clip(uric_acid, 90.0, 900.0)),
            "hemoglobin": np.round(np.clip(hemoglobin, 60.0, 200.0)),
            "hematocrit": np.round(np.clip(hematocrit, 18.0, 60.0), 1),
            "rbc_volume": np.round(np.clip(rbc_volume, 55.0, 125.0), 1),
        }
    )
    # Conditions are read off the rounded values, so a reader recomputing them agrees exactly.
    conditions = conditions_from_phenotypes(table, obesity_criterion=obesity_criterion)
    return pd.concat([table, conditions], axis=1)[list(PHENOTYPE_COLUMNS)]


def _check_criterion(obesity_criterion: str) -> None:
    if obesity_criterion not in OBESITY_BMI:
        valid = ", ".join(repr(k) for k in OBESITY_BMI)
        raise ValueError(f"unknown obesity_criterion {obesity_criterion!r}; valid: {valid}")


def conditions_from_phenotypes(
    table: pd.DataFrame, *, obesity_criterion: str = "chinese"
) -> pd.DataFrame:
    """Apply the clinical criteria to a phenotype table.

    Parameters
    ----------
    table
        Needs ``sex`` ("F"/"M") and the measured columns the criteria read (bmi, waist,
        glucose, triglycerides, hdl, sbp, dbp, uric_acid, liver_fat, alcohol_g_per_day,
        hemoglobin). A missing value (NaN) counts as the criterion not met.
    obesity_criterion
        Key of :data:`face_health.schema.OBESITY_BMI`.

    Returns
    -------
    pandas.DataFrame
        Exactly :data:`CONDITION_COLUMNS` as int 0/1, on ``table``'s index.
    """
    _check_criterion(obesity_criterion)
    missing = [c for c in _CRITERIA_INPUTS if c not in table.columns]
    if missing:
        raise ValueError(f"conditions_from_phenotypes: missing columns {missing}")
    sex = table["sex"].astype(str)
    bad = sorted(set(sex) - {"F", "M"})
    if bad:
        raise ValueError(f"sex must be 'F' or 'M', got {bad}")
    male = (sex == "M").to_numpy()

    def by_sex(thresholds: dict[str, float]) -> np.ndarray:
        return np.where(male, thresholds["M"], thresholds["F"])

    col = {c: table[c].to_numpy(dtype=float) for c in _CRITERIA_INPUTS[1:]}
    mets_count = (
        (col["waist"] >= by_sex(METS_WAIST_CM)).astype(int)
        + (col["triglycerides"] >= METS_TG)
        + (col["hdl"] < by_sex(METS_HDL))
        + ((col["sbp"] >= METS_SBP) | (col["dbp"] >= METS_DBP))
        + (col["glucose"] >= METS_FPG)
    )
    out = {
        "obesity": col["bmi"] >= OBESITY_BMI[obesity_criterion],
        "diabetes": col["glucose"] >= DIABETES_FPG,
        "metabolic_syndrome": mets_count >= METS_MIN_COMPONENTS,
        "hyperuricemia": col["uric_acid"] > by_sex(HYPERURICEMIA_UA),
        "nafld": (col["liver_fat"] >= NAFLD_LIVER_FAT)
        & (col["alcohol_g_per_day"] < by_sex(NAFLD_ALCOHOL_G)),
        "anemia": col["hemoglobin"] < by_sex(ANEMIA_HB),
    }
    return pd.DataFrame({k: v.astype(int) for k, v in out.items()}, index=table.index)
