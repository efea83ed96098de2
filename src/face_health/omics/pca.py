"""The facial-omics model: region radiomics -> standardised -> PCA -> local features.

Fitted on the training split only (``fitted_on_`` records which subjects); columns that are
missing for most training subjects are dropped, the rest imputed with the training median.
One PCA of the whole table (``pc_000``, ...), or one per region (``per_region=True``:
``pc_<region>_00``, ...; each score stays where on the face it came from).
"""

from __future__ import annotations

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from face_health.schema import ID_COLUMN  # noqa: E402


class FacialOmics(BaseEstimator, TransformerMixin):
    """Standardise and reduce a ``region_radiomics`` table with PCA.

    Parameters
    ----------
    n_components : a fraction in (0, 1) of explained variance to keep, or a number of
        components
    max_missing : drop a feature column missing for more than this share of training rows
    per_region : one PCA per region (the column prefix before ``__``), ``n_components`` each
    """

    def __init__(
        self, n_components: float | int = 0.9, max_missing: float = 0.2, per_region: bool = False
    ) -> None:
        self.n_components = n_components
        self.max_missing = max_missing
        self.per_region = per_region

    def _pipeline(self, X: np.ndarray) -> Pipeline:
        n = self.n_components
        if isinstance(n, int) or (isinstance(n, float) and n >= 1):
            n = int(min(n, X.shape[1], len(X)))
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median")),
                ("scale", StandardScaler()),
                ("pca", PCA(n_components=n, svd_solver="full", random_state=0)),
            ]
        ).fit(X)

    def fit(self, table: pd.DataFrame, y=None) -> FacialOmics:
        features = table.drop(columns=[ID_COLUMN], errors="ignore").astype(float)
        missing = features.isna().mean()
        self.columns_ = list(missing[missing <= self.max_missing].index)
        # A constant column carries nothing and breaks the standardisation.
        spread = features[self.columns_].std()
        self.columns_ = [c for c in self.columns_ if spread[c] > 0]
        if not self.columns_:
            raise ValueError("no radiomic feature is present and varying in the training rows")
        if self.per_region:
            groups: dict[str, list[str]] = {}
            for c in self.columns_:
                groups.setdefault(str(c).split("__", 1)[0], []).append(c)
            self.region_columns_ = groups
            self.pipelines_ = {
                region: self._pipeline(features[columns].to_numpy())
                for region, columns in groups.items()
            }
        else:
            self.pipeline_ = self._pipeline(features[self.columns_].to_numpy())
        self.fitted_on_ = list(table[ID_COLUMN]) if ID_COLUMN in table else []
        return self

    def transform(self, table: pd.DataFrame) -> pd.DataFrame:
        if getattr(self, "per_region", False):
            blocks = []
            for region, columns in self.region_columns_.items():
                scores = self.pipelines_[region].transform(
                    table.reindex(columns=columns).astype(float).to_numpy()
                )
                names = [f"pc_{region}_{i:02d}" for i in range(scores.shape[1])]
                blocks.append(pd.DataFrame(scores, columns=names))
            out = pd.concat(blocks, axis=1)
        else:
            features = table.reindex(columns=self.columns_).astype(float).to_numpy()
            scores = self.pipeline_.transform(features)
            out = pd.DataFrame(scores, columns=[f"pc_{i:03d}" for i in range(scores.shape[1])])
        if ID_COLUMN in table:
            out.insert(0, ID_COLUMN, table[ID_COLUMN].to_numpy())
        return out

    def fitted_pipelines(self) -> dict[str, Pipeline]:
        """The fitted impute -> scale -> PCA pipelines: ``{'all': ...}`` or one per region."""
        if getattr(self, "per_region", False):
            return dict(self.pipelines_)
        return {"all": self.pipeline_}

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        """Each component's share of the variance of all the standardised features (per
        region, a region's shares weighted by its number of features)."""
        if not getattr(self, "per_region", False):
            return self.pipeline_.named_steps["pca"].explained_variance_ratio_
        total = len(self.columns_)
        return np.concatenate(
            [
                self.pipelines_[r].named_steps["pca"].explained_variance_ratio_ * len(c) / total
                for r, c in self.region_columns_.items()
            ]
        )


def explained_variance_figure(model: FacialOmics) -> plt.Figure:
    """Explained variance per component and cumulative, with the kept count marked."""
    ratio = model.explained_variance_ratio_
    fig, ax = plt.subplots(figsize=(7, 4))
    k = np.arange(1, len(ratio) + 1)
    ax.bar(k, ratio, color="tab:blue", alpha=0.6, label="per component")
    ax.plot(k, np.cumsum(ratio), color="tab:red", marker=".", label="cumulative")
    ax.set_xlabel("principal component")
    ax.set_ylabel("explained variance ratio")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"Facial omics PCA{' per region' if getattr(model, 'per_region', False) else ''}: "
        f"{len(ratio)} components, {np.sum(ratio):.0%} of the variance of "
        f"{len(model.columns_)} radiomic features"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
