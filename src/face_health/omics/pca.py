"""The facial-omics model: region radiomics -> standardised -> PCA -> local features.

Fitted on the training split only (``fitted_on_`` records which subjects); columns that are
missing for most training subjects are dropped, the rest imputed with the training median.
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
    """

    def __init__(self, n_components: float | int = 0.9, max_missing: float = 0.2) -> None:
        self.n_components = n_components
        self.max_missing = max_missing

    def fit(self, table: pd.DataFrame, y=None) -> FacialOmics:
        features = table.drop(columns=[ID_COLUMN], errors="ignore").astype(float)
        missing = features.isna().mean()
        self.columns_ = list(missing[missing <= self.max_missing].index)
        # A constant column carries nothing and breaks the standardisation.
        spread = features[self.columns_].std()
        self.columns_ = [c for c in self.columns_ if spread[c] > 0]
        if not self.columns_:
            raise ValueError("no radiomic feature is present and varying in the training rows")
        n = self.n_components
        if isinstance(n, int) or (isinstance(n, float) and n >= 1):
            n = int(min(n, len(self.columns_), len(features)))
        self.pipeline_ = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median")),
                ("scale", StandardScaler()),
                ("pca", PCA(n_components=n, svd_solver="full", random_state=0)),
            ]
        ).fit(features[self.columns_].to_numpy())
        self.fitted_on_ = list(table[ID_COLUMN]) if ID_COLUMN in table else []
        return self

    def transform(self, table: pd.DataFrame) -> pd.DataFrame:
        features = table.reindex(columns=self.columns_).astype(float).to_numpy()
        scores = self.pipeline_.transform(features)
        out = pd.DataFrame(scores, columns=[f"pc_{i:03d}" for i in range(scores.shape[1])])
        if ID_COLUMN in table:
            out.insert(0, ID_COLUMN, table[ID_COLUMN].to_numpy())
        return out

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        return self.pipeline_.named_steps["pca"].explained_variance_ratio_


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
        f"Facial omics PCA: {len(ratio)} components, {np.sum(ratio):.0%} of the variance of "
        f"{len(model.columns_)} radiomic features"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
