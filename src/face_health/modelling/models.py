"""Per-target estimators: a small masked MLP and the baselines it must beat.

Every estimator follows scikit-learn's contract (``__init__`` stores hyperparameters only,
``fit`` returns ``self``, learned state ends in ``_``), so it clones, pickles and sits in a
``Pipeline``. All take a feature matrix ``X`` (n, d) and a label matrix ``Y`` (n, k) whose
NaN entries are missing labels: a subject without a lab value still teaches the other outputs.
``HealthModels`` wires them to the project's tables: one estimator per group of targets (or
per target) and per model kind, fitted on the training split, early-stopped on validation;
per target it then chooses, on the validation subjects only, which of the MLP, the linear
model and their average it serves (``choice_``, ``predict(..., model="chosen")``).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from face_health.schema import ID_COLUMN, LOG_SCALE_TARGETS, TARGETS, bound_prediction

#: Prefixes of the feature columns: global ResNet-50 embedding and local facial-omics PCA.
#: Feature families by column prefix. ``latent`` is the simulator's face-visible latent
#: parameters: the benchmark's oracle only, never a pipeline input.
INPUT_PREFIXES = {
    "global": ("emb_",),
    "local": ("pc_",),
    "shape": ("shp_",),
    "both": ("emb_", "pc_"),
    "local_shape": ("pc_", "shp_"),
    "all": ("emb_", "pc_", "shp_"),
    "latent": ("latent_",),
}


def model_input_table(
    global_features: pd.DataFrame, local_features: pd.DataFrame, shape_features: pd.DataFrame
) -> pd.DataFrame:
    """Global (``emb_*``), local (``pc_*``) and shape (``shp_*``) features side by side, one
    row per subject (no shape columns with ``landmarks.method: cnn``): the training
    pipeline's ``model_input`` and the scorer's row of a new scan."""
    both = global_features.merge(local_features, on=ID_COLUMN, how="outer")
    shape = shape_features.astype({ID_COLUMN: str})
    return both.astype({ID_COLUMN: str}).merge(shape, on=ID_COLUMN, how="left")


def uses_embedding(inputs: str) -> bool:
    """Whether ``inputs`` (a key of ``INPUT_PREFIXES``) includes the ResNet-50 embedding."""
    return "emb_" in INPUT_PREFIXES.get(inputs, ())


def _as_2d(a: np.ndarray | pd.DataFrame | Sequence, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    return arr


def _binary_mask(kinds: Sequence[str], k: int) -> np.ndarray:
    """Which of ``k`` outputs are binary ('condition' counts as binary)."""
    if len(kinds) != k:
        raise ValueError(f"{len(kinds)} kinds given for {k} outputs")
    unknown = set(kinds) - {"regression", "binary", "condition"}
    if unknown:
        raise ValueError(f"unknown output kinds {sorted(unknown)}")
    return np.array([kind != "regression" for kind in kinds])


def _network(n_in: int, hidden: Sequence[int], n_out: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU(), nn.Dropout(dropout)]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, n_out))


class MaskedMLP(BaseEstimator):
    """A small torch MLP for one or more outputs with missing labels masked out of the loss.

    X is imputed (training median) and standardised internally, as are regression outputs;
    binary outputs are trained with BCE-with-logits. Each output's loss is averaged over its
    labelled rows in the batch, then over outputs, so a sparse label is not drowned out.

    Parameters
    ----------
    kinds : sequence of {'regression', 'binary'}
        One per output column of ``Y``.
    hidden : sequence of int
        Widths of the hidden layers (ReLU, then dropout).
    dropout, lr, weight_decay : float
        Regularisation and AdamW settings; a ~200-subject cohort needs all three.
    max_epochs, patience : int
        Epoch budget; with validation data, stop after ``patience`` epochs without improvement
        of the masked validation loss and restore the best weights.
    batch_size : int
        Mini-batch size.
    seed : int
        Seeds weight initialisation, dropout and shuffling; the same seed gives the same model.
    """

    def __init__(
        self,
        kinds: Sequence[str] = ("regression",),
        hidden: Sequence[int] = (64,),
        dropout: float = 0.2,
        lr: float = 3e-3,
        weight_decay: float = 1e-3,
        max_epochs: int = 400,
        patience: int = 30,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        self.kinds = kinds
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.seed = seed

    def _scale_x(self, X: np.ndarray) -> torch.Tensor:
        X = np.where(np.isnan(X), self.x_median_, X)
        return torch.as_tensor((X - self.x_mean_) / self.x_scale_, dtype=torch.float32)

    def _scale_y(self, Y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mask = ~np.isnan(Y)
        Z = np.where(mask, (Y - self.y_mean_) / self.y_scale_, 0.0)
        return torch.as_tensor(Z, dtype=torch.float32), torch.as_tensor(mask)

    def _loss(self, out: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        binary = torch.as_tensor(self.binary_)
        per = torch.where(
            binary,
            nn.functional.binary_cross_entropy_with_logits(out, z, reduction="none"),
            (out - z) ** 2,
        )
        counts = mask.sum(0)
        per_output = (per * mask).sum(0) / counts.clamp(min=1)
        present = counts > 0
        return per_output[present].mean() if present.any() else out.sum() * 0.0

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        X_val: np.ndarray | None = None,
        Y_val: np.ndarray | None = None,
    ) -> MaskedMLP:
        """Fit on ``X`` (n, d) and ``Y`` (n, k); early-stop on ``(X_val, Y_val)`` if given.

        Returns
        -------
        MaskedMLP
            ``self``, with ``model_``, ``best_epoch_``, ``n_epochs_`` and ``history_``.
        """
        X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
        self.binary_ = _binary_mask(self.kinds, Y.shape[1])
        if (self.binary_ & (~np.isin(Y, (0.0, 1.0)) & ~np.isnan(Y)).any(0)).any():
            raise ValueError("binary outputs must be 0, 1 or NaN")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice" / "Mean of empty"
            # An all-NaN feature becomes 0; an output without labels gets mean 0, scale 1.
            self.x_median_ = np.nan_to_num(np.nanmedian(X, axis=0))
            mean, std = np.nan_to_num(np.nanmean(Y, 0)), np.nan_to_num(np.nanstd(Y, 0), nan=1.0)
        Xi = np.where(np.isnan(X), self.x_median_, X)
        self.x_mean_ = Xi.mean(0)
        self.x_scale_ = np.where(Xi.std(0) > 1e-12, Xi.std(0), 1.0)
        # Binary outputs stay 0/1 for the BCE loss; regression outputs train in z-units.
        self.y_mean_ = np.where(self.binary_, 0.0, mean)
        self.y_scale_ = np.where(self.binary_ | (std < 1e-12), 1.0, std)

        rows = (~np.isnan(Y)).any(1)  # subjects with no label at all add nothing to the loss
        x, (z, mask) = self._scale_x(X[rows]), self._scale_y(Y[rows])
        has_val = X_val is not None and Y_val is not None
        if has_val:
            xv = self._scale_x(_as_2d(X_val, "X_val"))
            zv, mv = self._scale_y(_as_2d(Y_val, "Y_val"))
            has_val = bool(mv.any())

        # fork_rng keeps the caller's global torch RNG untouched while we seed our own.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            generator = torch.Generator().manual_seed(self.seed)
            model = _network(X.shape[1], self.hidden, Y.shape[1], self.dropout)
            optimiser = torch.optim.AdamW(
                model.parameters(), lr=self.lr, weight_decay=self.weight_decay
            )
            history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
            best_loss, best_epoch, best_state = np.inf, 0, None
            for epoch in range(self.max_epochs):
                model.train()
                order = torch.randperm(len(x), generator=generator)
                total = 0.0
                for start in range(0, len(x), self.batch_size):
                    batch = order[start : start + self.batch_size]
                    optimiser.zero_grad()
                    loss = self._loss(model(x[batch]), z[batch], mask[batch])
                    loss.backward()
                    optimiser.step()
                    total += float(loss.detach()) * len(batch)
                history["train_loss"].append(total / max(len(x), 1))
                if not has_val:
                    continue
                model.eval()
                with torch.no_grad():
                    val_loss = float(self._loss(model(xv), zv, mv))
                history["val_loss"].append(val_loss)
                if val_loss < best_loss - 1e-6:
                    best_loss, best_epoch = val_loss, epoch
                    best_state = copy.deepcopy(model.state_dict())
                elif epoch - best_epoch >= self.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        self.model_ = model
        self.history_ = history
        self.n_epochs_ = len(history["train_loss"])
        self.best_epoch_ = best_epoch if best_state is not None else self.n_epochs_ - 1
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Regression outputs in original units, probabilities for binary ones: (n, k)."""
        with torch.no_grad():
            out = self.model_(self._scale_x(_as_2d(X, "X"))).double().numpy()
        out = out * self.y_scale_ + self.y_mean_
        out[:, self.binary_] = 1.0 / (1.0 + np.exp(-out[:, self.binary_]))
        return out


class MLPEnsemble(BaseEstimator):
    """The mean of ``n_members`` :class:`MaskedMLP` that differ only in their seed (``seed``,
    ``seed + 1``, ...): each is fitted and early-stopped as a single MLP is; regression
    outputs are averaged, and so are the probabilities of binary ones. ``modelling.mlp.ensemble``
    sets ``n_members`` (1: a single MLP, not this class)."""

    def __init__(
        self,
        kinds: Sequence[str] = ("regression",),
        n_members: int = 5,
        mlp_params: dict | None = None,
        seed: int = 0,
    ) -> None:
        self.kinds = kinds
        self.n_members = n_members
        self.mlp_params = mlp_params
        self.seed = seed

    def fit(self, X, Y, X_val=None, Y_val=None) -> MLPEnsemble:
        if self.n_members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {self.n_members}")
        self.members_ = [
            MaskedMLP(
                **{**(self.mlp_params or {}), "kinds": self.kinds, "seed": self.seed + i}
            ).fit(X, Y, X_val, Y_val)
            for i in range(self.n_members)
        ]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The members' mean: regression outputs in original units, probabilities: (n, k)."""
        return np.mean([member.predict(X) for member in self.members_], axis=0)


class MeanBaseline(BaseEstimator):
    """Predicts each output's training mean (regression) or prevalence (binary), NaN-aware."""

    def __init__(self, kinds: Sequence[str] = ("regression",)) -> None:
        self.kinds = kinds

    def fit(self, X: np.ndarray, Y: np.ndarray, X_val=None, Y_val=None) -> MeanBaseline:
        """Store the mean of the labelled rows of each column of ``Y``; X is ignored."""
        Y = _as_2d(Y, "Y")
        _binary_mask(self.kinds, Y.shape[1])
        # The prevalence of a 0/1 label is its mean, so one formula serves both kinds.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an unlabelled output -> NaN
            self.means_ = np.nanmean(Y, axis=0)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The stored means, repeated for every row of ``X``: (n, k)."""
        return np.tile(self.means_, (len(_as_2d(X, "X")), 1))


class LinearBaseline(BaseEstimator):
    """Per output a ridge (regression) or L2-logistic (binary) model on imputed, standardised X.

    Each output is fitted on the rows where its label is present. Ridge picks its penalty by
    efficient leave-one-out; logistic regression picks ``C`` by validation log-loss when a
    validation split is given, else by cross-validation on the training rows.
    """

    def __init__(
        self,
        kinds: Sequence[str] = ("regression",),
        alphas: Sequence[float] = tuple(np.logspace(-2, 4, 13)),
        Cs: Sequence[float] = tuple(np.logspace(-3, 2, 11)),
    ) -> None:
        self.kinds = kinds
        self.alphas = alphas
        self.Cs = Cs

    def _pipeline(self, model: BaseEstimator) -> Pipeline:
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), model)

    def _fit_binary(
        self, X: np.ndarray, y: np.ndarray, val: tuple[np.ndarray, np.ndarray] | None
    ) -> Pipeline | float:
        positives = int(y.sum())
        minority = min(positives, len(y) - positives)
        if minority == 0:
            return float(y.mean())  # one class only: nothing to discriminate, predict it
        if val is not None and len(val[1]) > 0:
            X_val, y_val = val
            best, best_loss = None, np.inf
            for C in self.Cs:
                pipe = self._pipeline(LogisticRegression(C=C, max_iter=1000)).fit(X, y)
                loss = log_loss(y_val, pipe.predict_proba(X_val)[:, 1], labels=[0, 1])
                if loss < best_loss:
                    best, best_loss = pipe, loss
            return best
        if minority < 2:  # too few of one class to cross-validate: sklearn's default C
            return self._pipeline(LogisticRegression(max_iter=1000)).fit(X, y)
        model = LogisticRegressionCV(
            Cs=list(self.Cs),
            cv=min(5, minority),
            scoring="neg_log_loss",
            l1_ratios=(0.0,),
            max_iter=1000,
            use_legacy_attributes=False,
        )
        return self._pipeline(model).fit(X, y)

    def fit(self, X, Y, X_val=None, Y_val=None) -> LinearBaseline:
        """Fit one linear model per column of ``Y`` on its labelled rows."""
        X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
        binary = _binary_mask(self.kinds, Y.shape[1])
        has_val = X_val is not None and Y_val is not None
        if has_val:
            X_val, Y_val = _as_2d(X_val, "X_val"), _as_2d(Y_val, "Y_val")
        self.estimators_: list[Pipeline | float] = []
        for j in range(Y.shape[1]):
            rows = ~np.isnan(Y[:, j])
            y = Y[rows, j]
            if rows.sum() < 3:  # too few labels for any fit: fall back to their mean
                self.estimators_.append(float(y.mean()) if len(y) else np.nan)
            elif binary[j]:
                val = (
                    (X_val[~np.isnan(Y_val[:, j])], Y_val[~np.isnan(Y_val[:, j]), j])
                    if has_val
                    else None
                )
                self.estimators_.append(self._fit_binary(X[rows], y.astype(int), val))
            else:
                pipe = self._pipeline(RidgeCV(alphas=np.asarray(self.alphas)))
                self.estimators_.append(pipe.fit(X[rows], y))
        self.binary_ = binary
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Values (regression) and probabilities (binary): (n, k)."""
        X = _as_2d(X, "X")
        out = np.empty((len(X), len(self.estimators_)))
        for j, est in enumerate(self.estimators_):
            if isinstance(est, float):
                out[:, j] = est
            elif self.binary_[j]:
                out[:, j] = est.predict_proba(X)[:, 1]
            else:
                out[:, j] = est.predict(X)
        return out


MODEL_KINDS: dict[str, type[BaseEstimator]] = {
    "mlp": MaskedMLP,
    "mean": MeanBaseline,
    "linear": LinearBaseline,
}


@dataclass
class GroupSpec:
    """A set of targets fitted by one estimator; ``kinds`` are 'regression' or 'binary'."""

    name: str
    targets: list[str]
    kinds: list[str]


def target_groups(per: str = "group") -> list[GroupSpec]:
    """Group the schema's targets: ``'group'`` (age, clinical, conditions) or ``'target'``."""
    if per not in ("group", "target"):
        raise ValueError(f"per must be 'group' or 'target', got {per!r}")
    specs: dict[str, GroupSpec] = {}
    for t in TARGETS:
        key = t.group if per == "group" else t.name
        spec = specs.setdefault(key, GroupSpec(key, [], []))
        spec.targets.append(t.name)
        spec.kinds.append("regression" if t.kind == "regression" else "binary")
    return list(specs.values())


def _to_model_scale(targets: Sequence[str], y: np.ndarray) -> np.ndarray:
    """Labels as the models see them: log for ``LOG_SCALE_TARGETS`` (values are >= 1 U/L by
    the clinical table's plausible range), unchanged otherwise."""
    y = np.array(y, dtype=float, copy=True)
    for j, target in enumerate(targets):
        if target in LOG_SCALE_TARGETS:
            y[:, j] = np.log(y[:, j])
    return y


def _from_model_scale(targets: Sequence[str], y: np.ndarray) -> np.ndarray:
    y = np.array(y, dtype=float, copy=True)
    for j, target in enumerate(targets):
        if target in LOG_SCALE_TARGETS:
            y[:, j] = np.exp(y[:, j])
    return y


#: The candidates a target's served model is chosen among, in the order ties are broken (the
#: MLP first): the MLP, the mean of the MLP's and the linear model's predictions, the linear
#: model.
CANDIDATES = ("mlp", "average", "linear")
#: The validation metric a target's model is chosen on, by the target's kind (lower is
#: better): MAE on the target's own scale for measurements; the Brier score for binary targets
#: and conditions (bounded, so one confident miss among a few dozen validation subjects
#: cannot decide it the way it can decide a log-loss).
CHOICE_METRIC = {"regression": "mae", "binary": "brier"}
#: Relative margin within which two validation metrics count as a tie (won by the MLP).
CHOICE_TOLERANCE = 1e-9


def _choose(
    candidates: dict[str, pd.DataFrame],
    truth: pd.DataFrame,
    groups: Sequence[GroupSpec],
    linear_fitted: bool,
) -> tuple[dict[str, str], dict[str, dict[str, float]], dict[str, str], dict[str, str]]:
    """Per target, the candidate with the best validation metric (``CHOICE_METRIC``).

    ``candidates`` are the predictions (own scale, bounded) of ``CANDIDATES`` on the
    validation subjects, ``truth`` their labels indexed by subject. Returns the choice, the
    metrics (candidate -> value, plus ``n``: subjects with a label), the metric's name and
    why the MLP was kept without a comparison ('' where the metric decided). A candidate
    replaces the best so far only when strictly better beyond ``CHOICE_TOLERANCE``; so a tie
    goes to the MLP, then the average."""
    choice: dict[str, str] = {}
    metrics: dict[str, dict[str, float]] = {}
    metric_of: dict[str, str] = {}
    reasons: dict[str, str] = {}
    ids = candidates["mlp"][ID_COLUMN].astype(str).to_numpy()
    truth = truth.set_axis(truth.index.astype(str))
    for spec in groups:
        for target, kind in zip(spec.targets, spec.kinds, strict=True):
            metric = CHOICE_METRIC["regression" if kind == "regression" else "binary"]
            metric_of[target] = metric
            y = truth.reindex(ids)[target].to_numpy(float) if target in truth else np.array([])
            labelled = ~np.isnan(y) if len(y) else np.zeros(len(ids), bool)
            values: dict[str, float] = {"n": int(labelled.sum())}
            if not linear_fitted:
                choice[target], reasons[target] = "mlp", "the linear model was not fitted"
                metrics[target] = values
                continue
            if not labelled.any():
                choice[target] = "mlp"
                reasons[target] = "no validation subject has this label"
                metrics[target] = values
                continue
            for name in CANDIDATES:
                p = candidates[name][target].to_numpy(float)[labelled]
                err = np.abs(p - y[labelled]) if metric == "mae" else (p - y[labelled]) ** 2
                values[name] = float(err.mean()) if np.isfinite(err).all() else float("nan")
            metrics[target] = values
            if not np.isfinite(values["mlp"]):
                choice[target] = "mlp"
                reasons[target] = "the MLP's validation predictions are not all finite"
                continue
            best = "mlp"
            for name in CANDIDATES[1:]:
                v, b = values[name], values[best]
                if np.isfinite(v) and v < b - CHOICE_TOLERANCE * max(abs(b), 1e-12):
                    best = name
            choice[target], reasons[target] = best, ""
    return choice, metrics, metric_of, reasons


def _assemble(tables: dict[str, pd.DataFrame], choice: dict[str, str]) -> pd.DataFrame:
    """Each target's column from its chosen candidate's table (all tables share the rows)."""
    out = tables["mlp"][[ID_COLUMN]].copy()
    for target in (c for c in tables["mlp"].columns if c != ID_COLUMN):
        out[target] = tables[choice.get(target, "mlp")][target].to_numpy()
    return out


def served_model(models) -> str:
    """The model a fitted ``HealthModels`` / ``CrossFittedHealthModels`` serves: ``'chosen'``
    where it holds a per-target choice, ``'mlp'`` for one fitted (and pickled) before the
    choice existed."""
    return "chosen" if getattr(models, "choice_", None) else "mlp"


class _Choosing:
    """What ``HealthModels`` and ``CrossFittedHealthModels`` share: the names they predict
    beyond their estimators (``'average'`` of the MLP and the linear model, ``'chosen'`` per
    target on validation) and the choice itself, made by :meth:`_make_choice`."""

    def _has(self, kind: str) -> bool:
        return kind in getattr(self, "estimators_", {})

    def _check_model(self, model: str) -> None:
        if model == "average" and self._has("mlp") and self._has("linear"):
            return
        if model == "chosen" and getattr(self, "choice_", None):
            return
        if not self._has(model):
            fitted = sorted(self.estimators_)
            extra = (["average"] if self._has("mlp") and self._has("linear") else []) + (
                ["chosen"] if getattr(self, "choice_", None) else []
            )
            raise ValueError(f"model {model!r} not fitted; have {fitted + extra}")

    def _make_choice(self, val_features: pd.DataFrame, val_truth: pd.DataFrame) -> None:
        """Choose each target's candidate on the validation subjects (``val_features`` and
        their labels ``val_truth``, indexed by subject) through :meth:`predict`, the path
        that serving and evaluation use. Sets ``choice_``, ``validation_metrics_``,
        ``choice_metric_`` and ``choice_reason_``; ``choice_`` stays empty without an MLP."""
        self.choice_: dict[str, str] = {}
        self.validation_metrics_: dict[str, dict[str, float]] = {}
        self.choice_metric_: dict[str, str] = {}
        self.choice_reason_: dict[str, str] = {}
        if not self._has("mlp"):
            return
        linear = self._has("linear")
        if len(val_features) == 0:  # nothing to choose on: the MLP, and why
            for spec in self.groups_:
                for target, kind in zip(spec.targets, spec.kinds, strict=True):
                    self.choice_[target] = "mlp"
                    self.validation_metrics_[target] = {"n": 0}
                    self.choice_metric_[target] = CHOICE_METRIC[
                        "regression" if kind == "regression" else "binary"
                    ]
                    self.choice_reason_[target] = "no validation subjects"
            return
        names = CANDIDATES if linear else ("mlp",)
        candidates = {name: self.predict(val_features, model=name) for name in names}
        choice, metrics, metric_of, reasons = _choose(candidates, val_truth, self.groups_, linear)
        self.choice_, self.validation_metrics_ = choice, metrics
        self.choice_metric_, self.choice_reason_ = metric_of, reasons

    def _chosen(self, features: pd.DataFrame, bounded: bool) -> pd.DataFrame:
        needed = {"mlp", *self.choice_.values()}
        tables = {name: self.predict(features, model=name, bounded=bounded) for name in needed}
        return _assemble(tables, self.choice_)

    def choice_summary(self) -> dict[str, dict]:
        """Per target: the choice, the metric, the validation values (candidate -> value,
        ``n``) and the reason the MLP was kept without comparison ('' if the metric chose);
        empty for models without a choice."""
        return {
            target: {
                "choice": choice,
                "metric": self.choice_metric_.get(target, ""),
                "validation": dict(self.validation_metrics_.get(target, {})),
                "reason": self.choice_reason_.get(target, ""),
            }
            for target, choice in (getattr(self, "choice_", None) or {}).items()
        }

    def predict_all(self, features: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """``predict`` for every fitted model kind, and ``'chosen'`` where the models hold a
        choice: model name -> predictions table."""
        out = {kind: self.predict(features, model=kind) for kind in self.estimators_}
        if getattr(self, "choice_", None):
            out["chosen"] = self.predict(features, model="chosen")
        return out


class HealthModels(_Choosing, BaseEstimator):
    """Every target of the schema: for each group spec, one estimator of each requested kind.

    Parameters
    ----------
    per : {'group', 'target'}
        One estimator per target group (multi-output) or per target.
    inputs : {'global', 'local', 'shape', 'both', 'local_shape', 'all'}
        Feature columns used (``INPUT_PREFIXES``): ``emb_*`` (ResNet-50), ``pc_*`` (facial
        omics), ``shp_*`` (the dense model fit, ``omics.shape``); ``both`` is global + local,
        ``all`` the three.
    kinds : sequence of str
        Keys of ``MODEL_KINDS`` to fit side by side.
    mlp_params : dict, optional
        Keyword arguments of ``MaskedMLP`` (``kinds`` and ``seed`` are set here).
    seed : int
        Seed of every MLP.

    Attributes
    ----------
    choice_ : dict of str to str
        Per target the served candidate, ``'mlp'``, ``'linear'`` or ``'average'``, chosen on
        the validation subjects by ``CHOICE_METRIC`` (ties to the MLP); ``'mlp'`` where no
        choice could be made (``choice_reason_`` says why). Empty without an MLP.
    validation_metrics_ : dict of str to dict
        Per target the validation metric of each candidate and ``n``, the labelled subjects.
    """

    def __init__(
        self,
        per: str = "group",
        inputs: str = "both",
        kinds: Sequence[str] = ("mlp", "mean", "linear"),
        mlp_params: dict | None = None,
        seed: int = 0,
    ) -> None:
        self.per = per
        self.inputs = inputs
        self.kinds = kinds
        self.mlp_params = mlp_params
        self.seed = seed

    def _feature_columns(self, features: pd.DataFrame) -> list[str]:
        if self.inputs not in INPUT_PREFIXES:
            raise ValueError(f"inputs must be one of {sorted(INPUT_PREFIXES)}, got {self.inputs!r}")
        columns = [c for c in features.columns if str(c).startswith(INPUT_PREFIXES[self.inputs])]
        if not columns:
            raise ValueError(f"no feature columns match inputs={self.inputs!r}")
        return columns

    def _make(self, kind: str, spec: GroupSpec) -> BaseEstimator:
        if kind == "mlp":
            params = dict(self.mlp_params or {})
            members = int(params.pop("ensemble", 1))
            if members > 1:
                return MLPEnsemble(spec.kinds, members, params, self.seed)
            return MaskedMLP(**{**params, "kinds": spec.kinds, "seed": self.seed})
        return MODEL_KINDS[kind](kinds=spec.kinds)

    def fit(
        self, features: pd.DataFrame, targets: pd.DataFrame, splits: pd.DataFrame
    ) -> HealthModels:
        """Fit on the training subjects; validation subjects steer early stopping and, with
        both an MLP and a linear model, choose each target's served model (``choice_``: the
        MLP, the linear model or their average, by ``CHOICE_METRIC`` on the validation
        subjects; test subjects are never looked at).

        Parameters
        ----------
        features : pandas.DataFrame
            ``subject_id`` plus feature columns, one row per subject.
        targets : pandas.DataFrame
            ``subject_id`` plus target columns (NaN where missing); absent targets are skipped.
        splits : pandas.DataFrame
            ``subject_id`` and ``split`` in {'train', 'validation', 'test'}.
        """
        unknown = set(self.kinds) - set(MODEL_KINDS)
        if unknown:
            raise ValueError(f"unknown model kinds {sorted(unknown)}")
        self.feature_columns_ = self._feature_columns(features)
        split_of = splits.set_index(ID_COLUMN)["split"]
        feats = features.set_index(ID_COLUMN)
        labels = targets.set_index(ID_COLUMN)

        def rows(split: str) -> tuple[np.ndarray, pd.DataFrame]:
            ids = [s for s in feats.index if split_of.get(s) == split]
            return feats.loc[ids, self.feature_columns_].to_numpy(float), labels.reindex(ids)

        X, Y = rows("train")
        X_val, Y_val = rows("validation")
        if len(X) == 0:
            raise ValueError("no training subjects with features")
        self.fitted_on_ = list(Y.index)
        self.groups_: list[GroupSpec] = []
        self.estimators_: dict[str, dict[str, BaseEstimator]] = {k: {} for k in self.kinds}
        for spec in target_groups(self.per):
            keep = [i for i, t in enumerate(spec.targets) if t in labels.columns]
            if not keep:
                continue
            spec = GroupSpec(
                spec.name, [spec.targets[i] for i in keep], [spec.kinds[i] for i in keep]
            )
            self.groups_.append(spec)
            y, y_val = Y[spec.targets].to_numpy(float), Y_val[spec.targets].to_numpy(float)
            y, y_val = _to_model_scale(spec.targets, y), _to_model_scale(spec.targets, y_val)
            for kind in self.kinds:
                est = self._make(kind, spec)
                has_val = len(X_val) > 0
                est.fit(X, y, X_val if has_val else None, y_val if has_val else None)
                self.estimators_[kind][spec.name] = est
        val_ids = list(Y_val.index)
        val_features = feats.loc[val_ids].reset_index()[[ID_COLUMN, *self.feature_columns_]]
        self._make_choice(val_features, Y_val)
        return self

    def predict(
        self, features: pd.DataFrame, model: str = "mlp", *, bounded: bool = True
    ) -> pd.DataFrame:
        """``subject_id`` plus one column per target: a value or a probability. Log-scale
        targets (``schema.LOG_SCALE_TARGETS``) come back on their own scale; with ``bounded``
        every value is clipped to its target's plausible range (``schema.bound_prediction``).

        ``model`` is a fitted kind, ``'average'`` (the mean of the MLP's and the linear
        model's predictions on the models' scale: probabilities for binary targets, log for
        ``LOG_SCALE_TARGETS``) or ``'chosen'`` (each target from its candidate in
        ``choice_``, chosen on the validation subjects when fitted)."""
        self._check_model(model)
        if model == "chosen":
            return self._chosen(features, bounded)
        X = features[self.feature_columns_].to_numpy(float)
        out = pd.DataFrame({ID_COLUMN: features[ID_COLUMN].to_numpy()})
        for spec in self.groups_:
            if model == "average":
                raw = (
                    self.estimators_["mlp"][spec.name].predict(X)
                    + self.estimators_["linear"][spec.name].predict(X)
                ) / 2.0
            else:
                raw = self.estimators_[model][spec.name].predict(X)
            pred = _from_model_scale(spec.targets, raw)
            for j, target in enumerate(spec.targets):
                out[target] = bound_prediction(target, pred[:, j])[0] if bounded else pred[:, j]
        return out


def fold_features(features: pd.DataFrame, j: int) -> pd.DataFrame:
    """The features model ``j`` of a cross-fit sees: network ``j``'s embedding block
    (``emb_f{j}_*``, renamed ``emb_*``), the local features and nothing of the other
    networks."""
    from face_health.embedding.cross_fit import FOLD_COLUMN, fold_block

    block = fold_block(list(features.columns), j)
    others = [c for c in features.columns if FOLD_COLUMN.match(str(c)) and c not in block]
    return features.drop(columns=others).rename(columns=block)


class CrossFittedHealthModels(_Choosing, BaseEstimator):
    """The health models of a cross-fitted embedding (``embedding.cross_fit``): member ``j``
    is a :class:`HealthModels` on network ``j``'s embedding (plus the local features) fitted
    on the training subjects of fold ``j`` only, whose embeddings network ``j`` never
    trained on; validation subjects steer every member's early stopping. A prediction is the
    mean of the members' (on the models' scale: log for ``LOG_SCALE_TARGETS``), each from
    its own network's embedding of the face.

    Parameters
    ----------
    folds : mapping of str to int
        Each training subject's fold (``CrossFittedEmbedding.folds``).
    in_sample : bool
        The ablation's counterpart: member ``j`` fitted on the training subjects network
        ``j`` *was* trained on (the stacking bias, at the same networks and subject count).
    per, inputs, kinds, mlp_params, seed
        As :class:`HealthModels` (``inputs`` must use the embedding: ``global``, ``both`` or
        ``all``).
    """

    def __init__(
        self,
        folds: dict[str, int] | None = None,
        per: str = "group",
        inputs: str = "both",
        kinds: Sequence[str] = ("mlp", "mean", "linear"),
        mlp_params: dict | None = None,
        seed: int = 0,
        in_sample: bool = False,
    ) -> None:
        self.folds = folds
        self.per = per
        self.inputs = inputs
        self.kinds = kinds
        self.mlp_params = mlp_params
        self.seed = seed
        self.in_sample = in_sample

    def fit(
        self, features: pd.DataFrame, targets: pd.DataFrame, splits: pd.DataFrame
    ) -> CrossFittedHealthModels:
        from face_health.embedding.cross_fit import fold_count

        if not uses_embedding(self.inputs):
            raise ValueError(f"cross-fitting applies to the embedding, not inputs={self.inputs!r}")
        folds = {str(s): int(j) for s, j in (self.folds or {}).items()}
        k = fold_count(list(features.columns))
        if k < 2 or k != len(set(folds.values())):
            raise ValueError(
                f"the features hold {k} embedding block(s) (emb_f<j>_*) and the folds name "
                f"{len(set(folds.values()))}: the features and the cross-fitted embedding "
                "come from different runs"
            )
        ids = splits[ID_COLUMN].astype(str)
        train = splits["split"].eq("train")
        self.members_: list[HealthModels] = []
        for j in range(k):
            in_fold = ids.map(lambda s, j=j: folds.get(s) == j)
            keep = ~train | (in_fold != self.in_sample)  # out-of-fold: fold j's own subjects
            member = HealthModels(
                per=self.per,
                inputs=self.inputs,
                kinds=self.kinds,
                mlp_params=self.mlp_params,
                seed=self.seed,
            )
            self.members_.append(
                member.fit(fold_features(features, j), targets, splits[keep.to_numpy()])
            )
        self.fitted_on_ = sorted({s for m in self.members_ for s in m.fitted_on_})
        self.groups_ = self.members_[0].groups_
        self.estimators_ = {
            kind: [m.estimators_[kind] for m in self.members_] for kind in self.kinds
        }
        val_ids = set(ids[splits["split"].eq("validation")])
        val_features = features[features[ID_COLUMN].astype(str).isin(val_ids)]
        truth = targets.assign(**{ID_COLUMN: targets[ID_COLUMN].astype(str)})
        truth = truth.drop_duplicates(ID_COLUMN).set_index(ID_COLUMN)
        self._make_choice(val_features.reset_index(drop=True), truth)
        return self

    def predict(
        self, features: pd.DataFrame, model: str = "mlp", *, bounded: bool = True
    ) -> pd.DataFrame:
        """``HealthModels.predict`` averaged over the members, each on its own block; for
        ``'chosen'``, each target from the candidate chosen for the cross-fit as a whole
        (``choice_``: on these member-averaged predictions of the validation subjects)."""
        self._check_model(model)
        if model == "chosen":
            return self._chosen(features, bounded)
        tables = [
            m.predict(fold_features(features, j), model=model, bounded=False)
            for j, m in enumerate(self.members_)
        ]
        out = pd.DataFrame({ID_COLUMN: features[ID_COLUMN].to_numpy()})
        targets = [c for c in tables[0].columns if c != ID_COLUMN]
        stacked = np.stack([_to_model_scale(targets, t[targets].to_numpy(float)) for t in tables])
        mean = _from_model_scale(targets, stacked.mean(axis=0))
        for j, target in enumerate(targets):
            out[target] = bound_prediction(target, mean[:, j])[0] if bounded else mean[:, j]
        return out
