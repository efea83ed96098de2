"""Benchmark: how real the simulated faces are, how fast and how deterministic the simulator is.

Run by hand (not in CI), about 3 minutes on 2 shared cores:

    .venv/bin/python benchmarks/face_realism_bench.py
    .venv/bin/python benchmarks/face_realism_bench.py --full   # + write_cohort of 300, n_jobs=2

a. Anthropometric distances (en-en, ex-ex, al-al, ch-ch, n-gn, zy-zy) of ~400 simulated
   faces per sex beside the adult norms of Farkas (1994), with z of the simulated mean
   against the norm and the ratio of the standard deviations.
b. Scale-free proportions (depths and heights relative to the biocular width; the ones the
   5 reference points of ``demoface`` allow, relative to en-en) of the simulated population,
   and where the real scans fall in it (z and percentile). demoface: its reference points;
   both real scans also by the landmark detector (labelled *detected*, with the detector's
   own bias on a few simulated scans beside it, so that it can be told from the face's).
c. Sex from 3D shape: 5-fold cross-validated logistic regression on PCA (fitted inside each
   fold) of Procrustes-aligned face vertices, with size kept and with size removed, and on
   the 33 landmarks alone (published figure for 3D faces: about 95 %).
d. Seconds per simulated subject on one process (cold, with the one-off cache build, and
   warm), and ``write_cohort`` of 300 with 2 processes when ``--full`` is given.
e. Determinism: the same cohort written with n_jobs 1 and 2 must give the same files.

The faces are drawn exactly as ``face_health.synthetic.simulate_face`` draws them (same
seeds, same order of random draws), without texture and scanner, so a population of ``n``
with seed ``s`` is the geometry of ``write_cohort(out, n, s)`` (checked in d). The real scans
are for reporting only: nothing in the simulator is tuned on them.

Results go to ``benchmarks/results/face_realism.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_validate  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from face_health import schema  # noqa: E402
from face_health.alignment.similarity import landmark_frame, similarity_transform  # noqa: E402
from face_health.face_model import FaceModel, load_face_model  # noqa: E402
from face_health.synthetic import simulate_face, write_cohort  # noqa: E402
from face_health.synthetic.anatomy import (  # noqa: E402
    ShapeFields,
    face_vertices,
    one_thread,
    shape_fields,
)
from face_health.synthetic.cohort import CohortSettings, draw_face, subject_ids  # noqa: E402
from face_health.synthetic.phenotypes import simulate_phenotypes  # noqa: E402

if TYPE_CHECKING:  # the detector pulls in torch: imported only where it is used
    from face_health.landmarks.detector import LandmarkDetector

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real_scans"
DEMOFACE_POINTS = ("en_r", "en_l", "prn", "ch_r", "ch_l")
NAMES = schema.LANDMARK_NAMES
INDEX = {n: i for i, n in enumerate(NAMES)}

#: The linear distances of part a, as landmark pairs.
DISTANCES: dict[str, tuple[str, str]] = {
    "en-en": ("en_r", "en_l"),  # intercanthal width
    "ex-ex": ("ex_r", "ex_l"),  # biocular width
    "al-al": ("al_r", "al_l"),  # nose width
    "ch-ch": ("ch_r", "ch_l"),  # mouth width
    "n-gn": ("n", "gn"),  # morphological face height
    "zy-zy": ("zy_r", "zy_l"),  # face width
}

#: Adult norms, mm (mean, sd) per sex: Farkas LG, *Anthropometry of the Head and Face*,
#: 2nd ed., Raven Press 1994, appendix of North American Caucasians aged 19-25 years
#: (about 50 per sex per measure), as quoted in later work (e.g. Farkas, Katic & Forrest,
#: J Craniofac Surg 2005;16:615, "NAW" norms). Quoted from memory of those tables, not
#: re-read from the book: en-en, al-al and n-gn are the widely cited figures and should be
#: right to a few tenths of a mm; the ex-ex, ch-ch and zy-zy values (the sds especially)
#: are less certain (within about 1-2 mm). They are young white adults: the simulated
#: population is 20-80 years (older faces are wider and their noses wider) and its phenotypes
#: are modelled on Chinese cohorts (whose en-en and al-al are wider), so a z of 1 is no alarm.
FARKAS_1994: dict[str, dict[str, tuple[float, float]]] = {
    "en-en": {"M": (33.3, 2.7), "F": (31.8, 2.3)},
    "ex-ex": {"M": (91.2, 3.0), "F": (87.8, 3.2)},
    "al-al": {"M": (34.9, 2.1), "F": (31.4, 2.0)},
    "ch-ch": {"M": (53.3, 3.3), "F": (50.2, 3.2)},
    "n-gn": {"M": (121.3, 6.8), "F": (112.8, 5.2)},
    "zy-zy": {"M": (139.1, 5.4), "F": (130.1, 5.3)},
}

#: Proportions of part b: ``needs`` are the landmarks each one reads (so a scan with only
#: its 5 reference points gets the ones those allow).
PROPORTIONS: dict[str, tuple[str, ...]] = {
    "outer eye corner depth behind inner / ex-ex": ("en_r", "en_l", "ex_r", "ex_l"),
    "eye-to-mouth height / ex-ex": ("en_r", "en_l", "ex_r", "ex_l", "ch_r", "ch_l"),
    "nose depth (prn before al) / ex-ex": ("prn", "al_r", "al_l", "ex_r", "ex_l"),
    "nose depth (prn before en line) / ex-ex": ("prn", "en_r", "en_l", "ex_r", "ex_l"),
    "en-en / ex-ex": ("en_r", "en_l", "ex_r", "ex_l"),
    "al-al / ex-ex": ("al_r", "al_l", "ex_r", "ex_l"),
    "ch-ch / ex-ex": ("ch_r", "ch_l", "ex_r", "ex_l"),
    "ch-ch / en-en": DEMOFACE_POINTS,
    "en-line-to-mouth-line height / en-en": DEMOFACE_POINTS,
    "nose tip depth before en midpoint / en-en": DEMOFACE_POINTS,
}


# ------------------------------------------------------------------ the simulated population


@dataclasses.dataclass
class Population:
    """Simulated faces, drawn as the simulator draws them.

    Attributes
    ----------
    phenotypes : (n, ...) the phenotype table (``subject_id`` first)
    sex : (n,) "M" / "F"
    landmarks : (n, 33, 3) mm, model frame, as simulated (expression and hair included)
    neutral : (n, 33, 3) mm, the same faces with no expression and no scalp-hair volume
    face : (n, k, 3) mm, a fixed subsample of the face-part vertices (``vertex_part == 0``)
    """

    phenotypes: pd.DataFrame
    sex: np.ndarray
    landmarks: np.ndarray
    neutral: np.ndarray
    face: np.ndarray

    def subset(self, rows: list[int]) -> Population:
        """The faces at positions ``rows``, in that order."""
        return Population(
            self.phenotypes.iloc[rows].reset_index(drop=True),
            self.sex[rows],
            self.landmarks[rows],
            self.neutral[rows],
            self.face[rows],
        )


def face_subsample(model: FaceModel, k: int, seed: int = 0) -> np.ndarray:
    """``(k,)`` sorted indices of face-part vertices, drawn once with a fixed seed."""
    face = np.flatnonzero(model.vertex_part == 0)
    return np.sort(np.random.default_rng(seed).choice(face, size=min(k, len(face)), replace=False))


@one_thread  # as simulate_face: the same bytes whatever the BLAS thread count
def simulated_and_neutral(
    model: FaceModel, fields: ShapeFields, phenotype: dict, seed: np.random.SeedSequence
) -> tuple[np.ndarray, np.ndarray]:
    """One subject's vertices as simulated and neutral (no expression, no hair volume).

    The random draws are those of ``simulate_face`` up to the vertices, in its order.
    """
    face = draw_face(phenotype, np.random.default_rng(seed), model, fields)
    look, hair, identity, vertices = face.look, face.hair, face.identity, face.vertices
    bare = dataclasses.replace(hair, thickness_mm=0.0)
    neutral = face_vertices(model, fields, identity, {}, look, bare)
    return vertices, neutral


def simulate_population(
    n: int, seed: int, *, keep: np.ndarray | None = None, face_vertices_k: int = 3000
) -> Population:
    """The first ``n`` subjects of ``write_cohort(out, n, seed)``, geometry only.

    ``keep`` (indices into the ``n``) simulates only those subjects.
    """
    model, fields = load_face_model(), shape_fields()
    pheno_seed, *subject_seeds = np.random.SeedSequence(seed).spawn(n + 1)
    pheno = simulate_phenotypes(n, np.random.default_rng(pheno_seed))
    pheno.insert(0, schema.ID_COLUMN, subject_ids(n))
    keep = np.arange(n) if keep is None else np.asarray(keep)
    sub = face_subsample(model, face_vertices_k)
    records = pheno.to_dict("records")
    landmarks, neutral, face = [], [], []
    for i in keep:
        v, v0 = simulated_and_neutral(model, fields, records[i], subject_seeds[i])
        landmarks.append(model.landmarks(v))
        neutral.append(model.landmarks(v0))
        face.append(v[sub])
    chosen = pheno.iloc[keep].reset_index(drop=True)
    return Population(
        chosen, chosen["sex"].to_numpy(str), np.array(landmarks), np.array(neutral), np.array(face)
    )


# ------------------------------------------------------------------------------- a. distances


def distance(landmarks: np.ndarray, pair: tuple[str, str]) -> np.ndarray:
    """``(n,)`` Euclidean distance between two named landmarks of ``(n, 33, 3)``."""
    a, b = INDEX[pair[0]], INDEX[pair[1]]
    return np.linalg.norm(landmarks[:, a] - landmarks[:, b], axis=-1)


def _describe(x: np.ndarray) -> dict[str, float]:
    return {
        "mean": round(float(x.mean()), 2),
        "sd": round(float(x.std(ddof=1)), 2),
        "p2.5": round(float(np.percentile(x, 2.5)), 2),
        "p97.5": round(float(np.percentile(x, 97.5)), 2),
    }


def anthropometry(pop: Population) -> dict:
    """Part a: each distance per sex beside its norm; also the neutral, hair-free face."""
    out: dict = {}
    for name, pair in DISTANCES.items():
        out[name] = {}
        for sex in ("M", "F"):
            chosen = pop.sex == sex
            d = distance(pop.landmarks[chosen], pair)
            d0 = distance(pop.neutral[chosen], pair)
            norm_mean, norm_sd = FARKAS_1994[name][sex]
            stats = _describe(d)
            out[name][sex] = {
                "n": int(chosen.sum()),
                **stats,
                "neutral_no_hair_mean": round(float(d0.mean()), 2),
                "farkas_mean": norm_mean,
                "farkas_sd": norm_sd,
                "z_of_mean": round((stats["mean"] - norm_mean) / norm_sd, 2),
                "sd_ratio": round(stats["sd"] / norm_sd, 2),
            }
    return out


def print_anthropometry(result: dict) -> None:
    print("\na. Anthropometric distances, mm (simulated vs Farkas 1994 NA white adults 19-25 y)")
    head = (
        f"{'':7s}{'sex':>4s}{'n':>5s}{'mean':>8s}{'sd':>6s}{'p2.5':>8s}{'p97.5':>8s}"
        f"{'neutral':>9s}{'Farkas':>13s}{'z(mean)':>9s}{'sd ratio':>9s}"
    )
    print(head)
    for name, per_sex in result.items():
        for sex, r in per_sex.items():
            norm = f"{r['farkas_mean']:.1f}+-{r['farkas_sd']:.1f}"
            print(
                f"{name:7s}{sex:>4s}{r['n']:5d}{r['mean']:8.1f}{r['sd']:6.1f}{r['p2.5']:8.1f}"
                f"{r['p97.5']:8.1f}{r['neutral_no_hair_mean']:9.1f}{norm:>13s}"
                f"{r['z_of_mean']:9.2f}{r['sd_ratio']:9.2f}"
            )
    print("(neutral: the same faces with no expression and no scalp-hair volume)")


# ----------------------------------------------------------------------------- b. proportions


def proportions(points: dict[str, np.ndarray]) -> dict[str, float]:
    """The scale-free proportions of ``PROPORTIONS`` that ``points`` (name -> (3,)) allow.

    Measured in the face's own frontal frame (``alignment.landmark_frame``: x from the
    subject's right to left along the eye and mouth corners, y up, z out of the face), so
    the pose of the scan does not matter; distances are Euclidean.
    """
    p = {n: np.asarray(v, float) for n, v in points.items() if np.isfinite(v).all()}
    frame = landmark_frame(p)
    q = {n: frame[:3, :3] @ v + frame[:3, 3] for n, v in p.items()}

    def mid(*names: str) -> np.ndarray:
        return np.mean([q[n] for n in names], axis=0)

    def width(a: str, b: str) -> float:
        return float(np.linalg.norm(q[a] - q[b]))

    values: dict[str, float] = {}
    for name, needs in PROPORTIONS.items():
        if not all(n in q for n in needs):
            continue
        base = width("ex_r", "ex_l") if name.endswith("/ ex-ex") else width("en_r", "en_l")
        if name.startswith("outer eye corner depth"):
            value = mid("en_r", "en_l")[2] - mid("ex_r", "ex_l")[2]
        elif name.startswith("eye-to-mouth"):
            value = mid("en_r", "en_l", "ex_r", "ex_l")[1] - mid("ch_r", "ch_l")[1]
        elif name.startswith("nose depth (prn before al)"):
            value = q["prn"][2] - mid("al_r", "al_l")[2]
        elif name.startswith("nose depth (prn before en"):
            value = q["prn"][2] - mid("en_r", "en_l")[2]
        elif name.startswith("en-line-to-mouth"):
            value = mid("en_r", "en_l")[1] - mid("ch_r", "ch_l")[1]
        elif name.startswith("nose tip depth"):
            value = q["prn"][2] - mid("en_r", "en_l")[2]
        else:  # a width over the base width
            a = name.split(" ")[0].split("-")[0]
            value = width(f"{a}_r", f"{a}_l")
        values[name] = value / base
    return values


def population_proportions(landmarks: np.ndarray) -> pd.DataFrame:
    """``(n, proportions)`` table of every face of ``(n, 33, 3)``."""
    rows = [proportions(dict(zip(NAMES, face, strict=True))) for face in landmarks]
    return pd.DataFrame(rows)


def read_demoface_reference(folder: Path) -> dict[str, np.ndarray]:
    """demoface's 5 reference points (mm, the scan's frame), ``DEMOFACE_POINTS`` order."""
    points = np.loadtxt(folder / "DemoFaceLandmarks.csv", delimiter=",", ndmin=2)[:, -3:]
    return dict(zip(DEMOFACE_POINTS, points, strict=True))


def detected_landmarks(
    path: Path, subject: str, detector: LandmarkDetector
) -> dict[str, np.ndarray] | None:
    """Landmarks the shipped detector finds on a scan (placed ones only), or None."""
    from face_health.ingest.scan import ingest_scan

    mesh, qc = ingest_scan(path, subject)
    if mesh is None:
        print(f"  {subject}: ingest failed: {qc['reason']}")
        return None
    try:
        table = detector.detect(mesh)
    except ValueError as exc:
        print(f"  {subject}: detection failed: {exc}")
        return None
    placed = table[table["status"] == "ok"]
    return {str(r.name): np.array([r.x, r.y, r.z]) for r in placed.itertuples(index=False)}


def _placement(value: float, column: pd.Series) -> dict[str, float]:
    return {
        "value": round(value, 4),
        "z": round(float((value - column.mean()) / column.std(ddof=1)), 2),
        "percentile": round(float(100.0 * (column < value).mean()), 1),
    }


def real_proportions(
    simulated: pd.DataFrame, detector_check: int, cohort: Path | None
) -> tuple[dict, dict]:
    """Part b for the real scans, and the detector's bias on ``detector_check`` simulated scans.

    Returns the placements of every real landmark set, and the detector check.
    """
    sets: dict[str, dict[str, np.ndarray]] = {}
    demo, lps = REAL / "demoface", REAL / "lee_perry_smith"
    if demo.is_dir():
        sets["demoface (reference points)"] = read_demoface_reference(demo)
    else:
        print(f"  {demo} absent: skipping demoface")
    if not lps.is_dir():
        print(f"  {lps} absent: skipping lee_perry_smith")
    check: dict = {}
    try:
        from face_health.landmarks.detector import LandmarkDetector

        detector = LandmarkDetector.from_checkpoint(None)
    except Exception as exc:  # no checkpoint or torch: the reference points still count
        print(f"  no landmark detector ({type(exc).__name__}: {exc}); detected sets skipped")
        detector = None
    if detector is not None:
        if demo.is_dir():
            found = detected_landmarks(demo / "DemoFace_10K.obj", "demoface", detector)
            if found:
                sets["demoface (detected)"] = found
        if lps.is_dir():
            found = detected_landmarks(lps / "LeePerrySmith.glb", "lee_perry_smith", detector)
            if found:
                sets["lee_perry_smith (detected)"] = found
        if cohort is not None and detector_check > 0:
            check = detector_bias(cohort, detector, detector_check, simulated)
    placements = {
        name: {prop: _placement(value, simulated[prop]) for prop, value in proportions(pts).items()}
        for name, pts in sets.items()
    }
    return placements, check


def detector_bias(
    cohort: Path, detector: LandmarkDetector, n: int, simulated: pd.DataFrame
) -> dict:
    """Proportions from detected minus from true landmarks on ``n`` simulated scans, in
    simulated-population sds (how far a *detected* real value may be off by the detector)."""
    diffs, errors = [], []
    for scan in sorted((cohort / "scans").glob("*.obj"))[:n]:
        found = detected_landmarks(scan, scan.stem, detector)
        truth = pd.read_csv(cohort / "landmarks" / f"{scan.stem}.csv").set_index("name")
        if not found:
            continue
        true_points = {k: truth.loc[k, ["x", "y", "z"]].to_numpy(float) for k in NAMES}
        true, got = proportions(true_points), proportions(found)
        diffs.append({k: (got[k] - true[k]) / simulated[k].std(ddof=1) for k in got if k in true})
        errors.append({k: float(np.linalg.norm(found[k] - true_points[k])) for k in found})
    table, error = pd.DataFrame(diffs), pd.DataFrame(errors)
    return {
        "n_scans": len(table),
        "mean_difference_in_sd": table.mean().round(2).to_dict(),
        "sd_of_difference_in_sd": table.std(ddof=1).round(2).to_dict(),
        "mean_error_mm": error.mean().round(2).to_dict(),
    }


def print_proportions(simulated: pd.DataFrame, placements: dict, check: dict) -> None:
    print("\nb. Scale-free proportions: simulated mean +- sd; real value (z, percentile)")
    if check:
        err = check["mean_error_mm"]
        shown = ", ".join(f"{k} {err[k]:.1f}" for k in ("ex_r", "en_r", "prn", "al_r", "ch_r"))
        print(
            f"  (detector on {check['n_scans']} simulated scans: mean error "
            f"{np.mean(list(err.values())):.1f} mm over all landmarks; {shown} mm)"
        )
    for prop in simulated.columns:
        column = simulated[prop]
        line = f"  {prop:44s} sim {column.mean():.3f} +- {column.std(ddof=1):.3f}"
        print(line)
        for name, values in placements.items():
            if prop in values:
                v = values[prop]
                print(
                    f"      {name:30s} {v['value']:.3f}  (z {v['z']:+.2f}, "
                    f"{v['percentile']:.0f}th pct)"
                )
        if check:
            bias = check["mean_difference_in_sd"].get(prop)
            spread = check["sd_of_difference_in_sd"].get(prop)
            if bias is not None:
                print(
                    f"      {'detector bias on sim. scans':30s} {bias:+.2f} sd "
                    f"(+- {spread:.2f}, n={check['n_scans']})"
                )


# ------------------------------------------------------------------------------ c. sex from 3D


def procrustes_to(shapes: np.ndarray, reference: np.ndarray, *, scale: bool) -> np.ndarray:
    """``(n, k, 3)`` each shape moved onto ``reference`` by its least-squares similarity
    (``scale=False``: rotation and translation only, so size stays in the coordinates)."""
    out = np.empty_like(shapes)
    for i, shape in enumerate(shapes):
        s, r, t = similarity_transform(shape, reference, allow_scale=scale)
        out[i] = s * shape @ r.T + t
    return out


def _cv_scores(features: np.ndarray, y: np.ndarray, n_components: int | None, seed: int) -> dict:
    steps = [StandardScaler(), LogisticRegression(max_iter=5000)]
    if n_components:
        steps = [PCA(n_components=n_components, random_state=seed), *steps]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    scores = cross_validate(
        make_pipeline(*steps), features, y, cv=folds, scoring=("accuracy", "roc_auc")
    )
    return {
        "accuracy": round(float(scores["test_accuracy"].mean()), 3),
        "accuracy_sd": round(float(scores["test_accuracy"].std(ddof=1)), 3),
        "auroc": round(float(scores["test_roc_auc"].mean()), 3),
        "auroc_sd": round(float(scores["test_roc_auc"].std(ddof=1)), 3),
    }


def sex_classifier(pop: Population, n_components: int, seed: int) -> dict:
    """Part c: 5-fold CV accuracy and AUROC of sex from 3D shape, four feature sets."""
    model = load_face_model()
    y = (pop.sex == "M").astype(int)
    reference = model.mean[face_subsample(model, pop.face.shape[1])]
    lm_reference = model.landmarks(model.mean)
    face_size = np.sqrt(((pop.face - pop.face.mean(1, keepdims=True)) ** 2).sum(-1).mean(-1))
    variants = {
        "face vertices, size kept (rigid Procrustes)": (
            procrustes_to(pop.face, reference, scale=False).reshape(len(y), -1),
            n_components,
        ),
        "face vertices, size removed (similarity Procrustes)": (
            procrustes_to(pop.face, reference, scale=True).reshape(len(y), -1),
            n_components,
        ),
        "33 landmarks, size kept": (
            procrustes_to(pop.landmarks, lm_reference, scale=False).reshape(len(y), -1),
            None,
        ),
        "33 landmarks, size removed": (
            procrustes_to(pop.landmarks, lm_reference, scale=True).reshape(len(y), -1),
            None,
        ),
        "face size only (rms radius of the face vertices)": (face_size[:, None], None),
    }
    out = {"n": len(y), "n_male": int(y.sum()), "n_vertices": int(pop.face.shape[1])}
    for name, (features, k) in variants.items():
        out[name] = {"pca_components": k, **_cv_scores(features, y, k, seed)}
    return out


def print_classifier(result: dict) -> None:
    print(
        f"\nc. Sex from 3D shape: {result['n']} faces ({result['n_male']} M), "
        f"{result['n_vertices']} face vertices, logistic regression, 5-fold CV "
        "(published for 3D faces: ~95 %)"
    )
    for name, r in result.items():
        if isinstance(r, dict):
            pca = f"PCA {r['pca_components']}" if r["pca_components"] else "no PCA"
            print(
                f"  {name:52s} {pca:7s} accuracy {100 * r['accuracy']:.1f} % "
                f"(+- {100 * r['accuracy_sd']:.1f}), AUROC {r['auroc']:.3f}"
            )


# ------------------------------------------------------------------ d. timing, e. determinism


def timing(seed: int, out: Path, full: bool, warm_subjects: int = 4) -> dict:
    """Part d; ``out`` keeps the 10-subject cohort (for the checks that follow)."""
    result: dict = {}
    t0 = time.perf_counter()
    write_cohort(out, 10, seed, n_jobs=1, progress=False)
    cold = time.perf_counter() - t0
    result["write_cohort_10_n_jobs_1_s"] = round(cold, 1)
    result["cold_s_per_subject"] = round(cold / 10, 2)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_cohort(Path(tmp) / "again", 10, seed + 1, n_jobs=1, progress=False)
        result["warm_write_cohort_10_s_per_subject"] = round((time.perf_counter() - t0) / 10, 2)

    settings = CohortSettings()
    pheno_seed, *subject_seeds = np.random.SeedSequence(seed + 1).spawn(warm_subjects + 1)
    pheno = simulate_phenotypes(warm_subjects, np.random.default_rng(pheno_seed))
    seconds = []
    for i, record in enumerate(pheno.to_dict("records")):
        t0 = time.perf_counter()
        simulate_face(f"W{i}", record, subject_seeds[i], settings)
        seconds.append(time.perf_counter() - t0)
    result["warm_simulate_face_s"] = round(float(np.mean(seconds)), 2)
    result["warm_simulate_face_n"] = warm_subjects
    if full:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_cohort(Path(tmp) / "c300", 300, seed, n_jobs=2, progress=False)
            result["write_cohort_300_n_jobs_2_s"] = round(time.perf_counter() - t0, 1)
    return result


def geometry_matches_cohort(cohort: Path, seed: int) -> float:
    """Largest difference (mm) of any inter-landmark distance between the bench's own draw
    and the landmarks ``write_cohort`` wrote (pose-free, so the scanner frame doesn't matter)."""
    manifest = json.loads((cohort / "cohort.json").read_text())
    pop = simulate_population(manifest["n"], seed, face_vertices_k=10)
    worst = 0.0
    for sid, mine in zip(manifest["subjects"], pop.landmarks, strict=True):
        written = pd.read_csv(cohort / "landmarks" / f"{sid}.csv").set_index("name")
        theirs = written.loc[list(NAMES), ["x", "y", "z"]].to_numpy(float)
        d_mine = np.linalg.norm(mine[:, None] - mine[None], axis=-1)
        d_theirs = np.linalg.norm(theirs[:, None] - theirs[None], axis=-1)
        worst = max(worst, float(np.abs(d_mine - d_theirs).max()))
    return worst


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def source_digest() -> str:
    """sha256 of the simulator's source (``face_model.py`` and ``synthetic/*.py``).

    Worker processes import the package afresh: if its files change while the bench runs,
    n_jobs 2 runs other code than the main process, and the determinism check says so."""
    import face_health

    package = Path(face_health.__file__).parent
    digest = hashlib.sha256()
    for path in [package / "face_model.py", *sorted((package / "synthetic").glob("*.py"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def determinism(seed: int) -> dict:
    """Part e: the same n=3 cohort with n_jobs 1 and 2; every file's hash compared."""
    with tempfile.TemporaryDirectory() as tmp:
        one, two = Path(tmp) / "jobs1", Path(tmp) / "jobs2"
        write_cohort(one, 3, seed, n_jobs=1, progress=False)
        write_cohort(two, 3, seed, n_jobs=2, progress=False)
        a, b = file_hashes(one), file_hashes(two)
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return {"n_files": len(a), "identical": not differ, "differing_files": differ}


# ------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated population")
    parser.add_argument("--n-anthropometry", type=int, default=400)
    parser.add_argument("--n-classifier", type=int, default=600, help="balanced by sex")
    parser.add_argument("--face-vertices", type=int, default=3000)
    parser.add_argument("--pca", type=int, default=30)
    parser.add_argument("--detector-check", type=int, default=6, help="simulated scans")
    parser.add_argument("--full", action="store_true", help="also write_cohort 300, n_jobs=2")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/face_realism.json")
    args = parser.parse_args()
    result: dict = {"seed": args.seed, "simulator_source_sha256_16": source_digest()}

    with tempfile.TemporaryDirectory() as tmp:
        cohort = Path(tmp) / "c10"
        # First, so that the cold figure includes the one-off cache build of this process.
        print("d. timing the simulator ...", flush=True)
        result["timing"] = timing(args.seed, cohort, args.full)
        result["timing"]["bench_draw_matches_write_cohort_max_mm"] = round(
            geometry_matches_cohort(cohort, args.seed), 6
        )
        print("e. determinism ...", flush=True)
        result["determinism"] = determinism(args.seed)
        changed = source_digest() != result["simulator_source_sha256_16"]
        result["determinism"]["simulator_source_changed_during_run"] = changed

        print("drawing the population ...", flush=True)
        t0 = time.perf_counter()
        half = args.n_classifier // 2
        pool = int(1.3 * max(args.n_anthropometry, args.n_classifier)) + 20
        pheno_seed = np.random.SeedSequence(args.seed).spawn(1)[0]
        sexes = simulate_phenotypes(pool, np.random.default_rng(pheno_seed))["sex"].to_numpy()
        balanced = np.concatenate([np.flatnonzero(sexes == s)[:half] for s in ("M", "F")])
        keep = np.union1d(np.arange(args.n_anthropometry), balanced)
        pop = simulate_population(pool, args.seed, keep=keep, face_vertices_k=args.face_vertices)
        result["population_draw_s"] = round(time.perf_counter() - t0, 1)
        position = {k: i for i, k in enumerate(keep)}
        first = [position[i] for i in range(args.n_anthropometry)]
        anthro = pop.subset(first)
        result["anthropometry"] = anthropometry(anthro)
        simulated = population_proportions(anthro.landmarks)
        print("b. real scans ...", flush=True)
        placements, check = real_proportions(simulated, args.detector_check, cohort)
    result["proportions"] = {
        "simulated": {
            k: {"mean": round(float(c.mean()), 4), "sd": round(float(c.std(ddof=1)), 4)}
            for k, c in simulated.items()
        },
        "real": placements,
        "detector_bias_on_simulated_scans": check,
    }
    print("c. sex classifier ...", flush=True)
    classify = pop.subset([position[i] for i in balanced])
    result["sex_classifier"] = sex_classifier(classify, args.pca, args.seed)

    print_anthropometry(result["anthropometry"])
    print_proportions(simulated, placements, check)
    print_classifier(result["sex_classifier"])
    t = result["timing"]
    print("\nd. Simulator speed (one process unless stated)")
    print(
        f"  write_cohort(10, n_jobs=1): {t['write_cohort_10_n_jobs_1_s']} s, "
        f"{t['cold_s_per_subject']} s per subject (includes the one-off cache build)"
    )
    print(
        f"  after warm-up: simulate_face {t['warm_simulate_face_s']} s per subject; "
        f"write_cohort(10) {t['warm_write_cohort_10_s_per_subject']} s per subject "
        "(with writing the files)"
    )
    if "write_cohort_300_n_jobs_2_s" in t:
        print(f"  write_cohort(300, n_jobs=2): {t['write_cohort_300_n_jobs_2_s']} s")
    print(
        "  the bench's draw vs write_cohort's landmarks: largest inter-landmark difference "
        f"{t['bench_draw_matches_write_cohort_max_mm']} mm"
    )
    d = result["determinism"]
    verdict = "identical" if d["identical"] else f"DIFFER: {d['differing_files']}"
    print(f"\ne. Determinism, n=3 with n_jobs 1 and 2: {d['n_files']} files, {verdict}")
    if d["simulator_source_changed_during_run"]:
        print("  WARNING: the simulator's source files changed while the bench ran; rerun it")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
