"""How far a scan's features are from the training cohort: an out-of-distribution score.

A model trained on the synthetic cohort answers for any scan it is given, including a real
face from another scanner whose features lie where no training subject's did. The
:class:`DistributionMonitor` measures that distance so every prediction can say so.

Method
------
Feature spaces (:func:`feature_spaces`): ``local`` is the facial-omics PCA (``pc_*``);
``global`` is the ResNet-50 embedding (``emb_*``). With cross-fitted embeddings
(``embedding.cross_fit_folds: k``) the embedding is ``k`` blocks ``emb_f{j}_*``, one per
network, and each block is its own space ``global_f{j}``.

Per space, on the training subjects:

1. standardise each feature (training mean and standard deviation; a feature constant in
   training is scaled by the space's median standard deviation instead of zero);
2. fit a Ledoit-Wolf shrinkage covariance of the standardised features (centred). The
   shrinkage towards a multiple of the identity keeps the covariance invertible when there
   are fewer training subjects than features (a tiny cohort has ~5 subjects and 128
   embedding dimensions);
3. the distance of a scan is its Mahalanobis distance under that covariance.

With cross-fitting, space ``global_f{j}`` is fitted on the training subjects of fold ``j``
only (``folds[s] == j``): network ``j`` never trained on them, so their embeddings are
out-of-sample for it, as a new scan's are.

Calibration, on the validation subjects (never fitted on): the threshold of a space is the
99th percentile (``percentile``) of their distances. With the default cohort's ~45 validation
subjects the 99th percentile lies between the largest two distances (linear interpolation,
56 % of the way to the maximum): it is close to "farther than every validation subject", and
a held-out scan from the same population is flagged at about 1-3 %, not exactly 1 %. The
number of validation subjects is stored (``n_validation_``). Without validation subjects
the threshold is taken from the training distances (in-sample, hence optimistic: more scans
are flagged), with a logged warning.

Why calibrate on validation rather than training: the training subjects are in-sample for
everything fitted on them, the covariance and the feature extractors. Their embeddings are
tighter than a new face's (the ResNet learnt from them; cross-fitting removes that part),
and with fewer subjects than features their Mahalanobis distances are far smaller than an
unseen subject's. The facial-omics PCA goes the other way: a new subject's PC scores shrink
towards zero (the components were fitted to the training subjects' variation), so training
subjects can look *farther* than validation ones (the tiny cohort's do). Validation subjects,
like a new scan, are out-of-sample for both, so their distances are the reference; the
training distances are kept for the report figure only. A training subject scored again may
therefore be flagged in the local space: it is not a new scan.

Per scan: ``ood_<space>`` (the distance in each space), ``ood_score`` = the largest
``distance / threshold`` over the spaces (1.0 = at the 99th validation percentile) and
``ood_flag`` = ``ood_score > 1``. A missing (NaN) feature makes that space's distance NaN
and flags the scan with a reason: the check could not be made.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf

from face_health.schema import FOLD_COLUMN, ID_COLUMN

logger = logging.getLogger(__name__)

LOCAL_PREFIX = "pc_"
GLOBAL_PREFIX = "emb_"
SHAPE_PREFIX = "shp_"

#: Minimum number of training subjects a space needs (one gives no spread to measure).
MIN_TRAINING_ROWS = 2


def feature_spaces(columns: Iterable[str]) -> dict[str, list[str]]:
    """The feature spaces of a model-input table's columns, in column order within each.

    ``pc_*`` -> ``local``; ``shp_*`` -> ``shape``; ``emb_f{j}_*`` (cross-fitted embeddings)
    -> ``global_f{j}``; any other ``emb_*`` -> ``global``. Other columns (``subject_id``,
    ...) are ignored.
    A table with both plain ``emb_*`` and fold blocks is refused: it mixes two embeddings.
    """
    spaces: dict[str, list[str]] = {}
    for column in map(str, columns):
        fold = FOLD_COLUMN.match(column)
        if fold:
            name = f"global_f{int(fold.group(1))}"
        elif column.startswith(GLOBAL_PREFIX):
            name = "global"
        elif column.startswith(LOCAL_PREFIX):
            name = "local"
        elif column.startswith(SHAPE_PREFIX):
            name = "shape"
        else:
            continue
        spaces.setdefault(name, []).append(column)
    if "global" in spaces and any(s.startswith("global_f") for s in spaces):
        raise ValueError(
            "the features mix plain emb_* columns and cross-fitted emb_f{j}_* blocks; "
            "expected one or the other"
        )
    return dict(sorted(spaces.items(), key=lambda item: _space_order(item[0])))


def _space_order(name: str) -> tuple[int, int]:
    if name == "global":
        return (0, 0)
    if name.startswith("global_f"):
        return (0, int(name[len("global_f") :]) + 1)
    return (1, 0) if name == "local" else (2, 0)


class DistributionMonitor(BaseEstimator):
    """Mahalanobis distances of a scan's features from the training cohort, per feature
    space, calibrated on the validation subjects (see the module docstring).

    Parameters
    ----------
    percentile : float
        Percentile of the validation distances that is a space's threshold (``ood_score``
        1.0); a scan beyond it in any space is flagged.
    refuse_score : float
        ``ood_score`` above which a scan is refused rather than flagged (the scorer then
        gives no predictions; ``modelling.ood_refuse_score``).

    Attributes (after ``fit``)
    --------------------------
    spaces_ : dict[str, list[str]]
        Space name -> its feature columns.
    center_, scale_ : dict[str, numpy.ndarray]
        Per space, the training mean and standard deviation of each feature.
    precision_ : dict[str, numpy.ndarray]
        Per space, the inverse of the shrunk covariance of the standardised features.
    shrinkage_ : dict[str, float]
        Per space, the Ledoit-Wolf shrinkage (0 = sample covariance, 1 = scaled identity).
    threshold_ : dict[str, float]
        Per space, the distance at ``percentile``.
    threshold_source_ : str
        ``validation``, or ``training`` when there were no validation subjects.
    n_train_, n_validation_ : dict[str, int]
        Per space, the subjects fitted on and calibrated on (rows with NaN skipped).
    training_distances_, validation_distances_ : dict[str, pandas.Series]
        Per space, the distances of those subjects (by subject id), for reports.
    """

    def __init__(self, percentile: float = 99.0, refuse_score: float = 3.0) -> None:
        self.percentile = percentile
        self.refuse_score = refuse_score

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        features: pd.DataFrame,
        splits: pd.DataFrame,
        folds: Mapping[str, int] | None = None,
    ) -> DistributionMonitor:
        """Fit every space on the training subjects and calibrate it on the validation ones.

        Parameters
        ----------
        features : pandas.DataFrame
            ``subject_id`` plus feature columns (``emb_*`` / ``emb_f{j}_*``, ``pc_*``).
        splits : pandas.DataFrame
            ``subject_id`` and ``split`` in {'train', 'validation', 'test'}; test subjects
            are never used.
        folds : mapping subject id -> fold, optional
            The cross-fitted embedding's folds (training subjects only): space
            ``global_f{j}`` is fitted on the training subjects with ``folds[s] == j``.
            Without it every space is fitted on all training subjects.
        """
        if not 0 < float(self.percentile) <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile!r}")
        for column in (ID_COLUMN,):
            if column not in features.columns:
                raise ValueError(f"the features table has no {column!r} column")
        if not {ID_COLUMN, "split"} <= set(splits.columns):
            raise ValueError("the splits table needs 'subject_id' and 'split' columns")
        spaces = feature_spaces(features.columns)
        if not spaces:
            raise ValueError("no feature columns (emb_*, emb_f{j}_*, pc_*) to monitor")
        fold_spaces = [s for s in spaces if s.startswith("global_f")]
        if fold_spaces and folds is None:
            logger.warning(
                "cross-fitted embedding columns (%s) but no folds given: each block is "
                "fitted on all training subjects, whose embeddings are in-sample for its net",
                ", ".join(fold_spaces),
            )
        if folds is not None and not fold_spaces:
            logger.info("folds given but the embedding is not cross-fitted: folds unused")

        split_of = pd.Series(splits["split"].to_numpy(), index=splits[ID_COLUMN].astype(str))
        split_of = split_of[~split_of.index.duplicated()]
        table = features.assign(**{ID_COLUMN: features[ID_COLUMN].astype(str)})
        table = table.drop_duplicates(ID_COLUMN).set_index(ID_COLUMN)
        in_split = table.index.to_series().map(split_of)
        train_ids = list(table.index[in_split == "train"])
        val_ids = list(table.index[in_split == "validation"])
        if not train_ids:
            raise ValueError(
                "no training subjects in the features table: cannot fit the distribution "
                "monitor (check that the splits and the features share subject ids)"
            )
        fold_of = None if folds is None else {str(k): int(v) for k, v in folds.items()}

        self.spaces_ = spaces
        self.center_, self.scale_, self.precision_ = {}, {}, {}
        self.shrinkage_, self.threshold_ = {}, {}
        self.n_train_, self.n_validation_ = {}, {}
        self.training_distances_, self.validation_distances_ = {}, {}
        for name, columns in spaces.items():
            ids = train_ids
            if fold_of is not None and name.startswith("global_f"):
                j = int(name[len("global_f") :])
                ids = [s for s in train_ids if fold_of.get(s) == j]
                if not ids:
                    raise ValueError(
                        f"no training subjects in fold {j} (folds[s] == {j}) to fit space "
                        f"{name!r}: the folds do not match the training split"
                    )
            X = table.loc[ids, columns].to_numpy(float)
            complete = np.isfinite(X).all(axis=1)
            if (~complete).any():
                logger.warning(
                    "distribution monitor, space %s: %d of %d training subjects skipped "
                    "(missing features)",
                    name,
                    int((~complete).sum()),
                    len(X),
                )
            X = X[complete]
            if len(X) < MIN_TRAINING_ROWS:
                raise ValueError(
                    f"space {name!r} has {len(X)} training subject(s) with complete features; "
                    f"the distribution monitor needs at least {MIN_TRAINING_ROWS}"
                )
            self._fit_space(name, X)
            self.n_train_[name] = len(X)
            self.training_distances_[name] = pd.Series(
                self._distances(name, X), index=np.asarray(ids)[complete], name=name
            )
            V = table.loc[val_ids, columns].to_numpy(float)
            ok = np.isfinite(V).all(axis=1)
            self.validation_distances_[name] = pd.Series(
                self._distances(name, V[ok]), index=np.asarray(val_ids, dtype=object)[ok], name=name
            )
            self.n_validation_[name] = int(ok.sum())

        if all(n > 0 for n in self.n_validation_.values()):
            self.threshold_source_ = "validation"
            reference = self.validation_distances_
        else:
            self.threshold_source_ = "training"
            reference = self.training_distances_
            logger.warning(
                "distribution monitor: a feature space has no validation subjects with complete "
                "features (%s); the thresholds are the %gth percentile of the TRAINING "
                "distances, which are in-sample (usually smaller than a new scan's: expect "
                "more scans flagged)",
                ", ".join(f"{k}: {v}" for k, v in self.n_validation_.items()),
                self.percentile,
            )
        for name in spaces:
            threshold = float(np.percentile(reference[name].to_numpy(float), self.percentile))
            # All reference subjects identical in this space: any other scan is beyond them.
            self.threshold_[name] = threshold if threshold > 0 else np.finfo(float).tiny
        return self

    def _fit_space(self, name: str, X: np.ndarray) -> None:
        center = X.mean(axis=0)
        scale = X.std(axis=0, ddof=1)
        positive = scale[scale > 0]
        floor = float(np.median(positive)) if len(positive) else 1.0
        # A feature constant in training: scaled like a typical feature of the space.
        scale = np.where(scale > 1e-12 * max(floor, 1e-300), scale, floor)
        Z = (X - center) / scale
        lw = LedoitWolf(assume_centered=True, store_precision=False).fit(Z)
        covariance = lw.covariance_
        values, vectors = np.linalg.eigh(covariance)
        # Shrinkage keeps the eigenvalues positive; the floor guards the degenerate cases
        # (every training row identical once standardised).
        top = float(values.max()) if values.size and values.max() > 0 else 1.0
        values = np.maximum(values, 1e-9 * top)
        self.center_[name] = center
        self.scale_[name] = scale
        self.precision_[name] = (vectors / values) @ vectors.T
        self.shrinkage_[name] = float(lw.shrinkage_)

    def _distances(self, name: str, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, float) - self.center_[name]) / self.scale_[name]
        squared = np.einsum("ij,jk,ik->i", Z, self.precision_[name], Z)
        out = np.sqrt(np.maximum(squared, 0.0))
        out[~np.isfinite(Z).all(axis=1)] = np.nan
        return out

    # ------------------------------------------------------------------ score

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise RuntimeError("the DistributionMonitor is not fitted; call fit first")

    def distances(self, features: pd.DataFrame) -> pd.DataFrame:
        """``subject_id`` (when given) plus ``ood_<space>``: each row's distance per space
        (NaN where a feature of the space is missing)."""
        self._check_fitted()
        out = pd.DataFrame(index=features.index)
        if ID_COLUMN in features.columns:
            out[ID_COLUMN] = features[ID_COLUMN].to_numpy()
        for name, columns in self.spaces_.items():
            absent = [c for c in columns if c not in features.columns]
            if absent:
                raise KeyError(
                    f"the features lack {len(absent)} column(s) of space {name!r} that the "
                    f"distribution monitor was fitted on (first: {absent[:3]})"
                )
            out[f"ood_{name}"] = self._distances(name, features[columns].to_numpy(float))
        return out.reset_index(drop=True)

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """Per row: ``ood_<space>`` distances, ``ood_score`` (largest distance / threshold;
        NaN when no space could be measured), ``ood_flag`` and ``ood_reason`` ('' unless
        flagged)."""
        out = self.distances(features)
        names = list(self.spaces_)
        ratios = np.column_stack(
            [out[f"ood_{n}"].to_numpy(float) / self.threshold_[n] for n in names]
        )
        measured = np.isfinite(ratios)
        largest = np.where(measured, ratios, -np.inf).max(axis=1)
        best = np.where(measured.any(axis=1), largest, np.nan)
        out["ood_score"] = best
        out["ood_flag"] = (best > 1.0) | ~measured.all(axis=1)
        out["ood_reason"] = [self._reason(dict(zip(names, row, strict=True))) for row in ratios]
        return out

    def _reason(self, ratios: Mapping[str, float]) -> str:
        missing = [n for n, r in ratios.items() if not math.isfinite(r)]
        beyond = {n: r for n, r in ratios.items() if math.isfinite(r) and r > 1.0}
        parts = []
        if beyond:
            worst = max(beyond.values())
            spaces = ", ".join(sorted(beyond, key=beyond.__getitem__, reverse=True))
            parts.append(
                f"out of distribution: features {worst:.1f}x beyond the {self.percentile:g}th "
                f"percentile of {self.threshold_source_} subjects ({spaces})"
            )
        if missing:
            parts.append(
                "out-of-distribution check incomplete: missing features in " + ", ".join(missing)
            )
        return "; ".join(parts)

    def summary(self) -> dict[str, Any]:
        """Per space: features, subjects fitted and calibrated on, shrinkage, threshold."""
        self._check_fitted()
        return {
            "percentile": self.percentile,
            "threshold_source": self.threshold_source_,
            "spaces": {
                name: {
                    "n_features": len(columns),
                    "n_train": self.n_train_[name],
                    "n_validation": self.n_validation_[name],
                    "shrinkage": round(self.shrinkage_[name], 4),
                    "threshold": self.threshold_[name],
                }
                for name, columns in self.spaces_.items()
            },
        }


def score_distributions(monitor: DistributionMonitor) -> dict[str, pd.Series]:
    """``ood_score`` of the training and validation subjects (per subject: the largest
    distance / threshold over the spaces where it was measured), for reports."""
    monitor._check_fitted()
    out = {}
    for which, distances in (
        ("training", monitor.training_distances_),
        ("validation", monitor.validation_distances_),
    ):
        ratios = pd.concat([d / monitor.threshold_[name] for name, d in distances.items()], axis=1)
        out[which] = ratios.max(axis=1) if len(ratios.columns) else pd.Series(dtype=float)
    return out
