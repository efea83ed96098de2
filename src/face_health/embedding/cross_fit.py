"""Cross-fitted global features: k ResNet-50s, each blind to one fold of the training subjects.

Why. The ResNet-50 learns from the training subjects' labels. Its embeddings of those same
subjects are *in-sample*: fitted to their labels, tighter and more predictive than the
embeddings of any new face. An MLP trained on them learns a relation that holds only
in-sample, and then meets out-of-sample embeddings at test time (the stacking bias of
Wolpert 1992; "cross-fitting" in double machine learning, Chernozhukov et al. 2018).

How. The training subjects are split into ``k`` folds (:func:`assign_folds`). Network ``j``
is trained on every training subject *outside* fold ``j`` (validation subjects steer its
early stopping, as for the single network), so its embeddings of fold ``j`` are
out-of-sample. Embedding spaces of separately trained networks are not comparable (each has
its own basis), so the embeddings are not pooled across networks: every network's
embedding is a block of columns of its own, ``emb_f{j}_*``, and the downstream models pair
network ``j`` with the subjects of fold ``j`` (``modelling.models.CrossFittedHealthModels``):
model ``j`` is fitted on fold ``j``'s out-of-sample embeddings and predicts any new face from
network ``j``'s embedding of it; the k predictions are averaged. Every training subject is
used once, every feature a model sees (in training and at test) is out-of-sample, and the
ResNet compute equals one network's on all training subjects (``k`` networks on
``(k-1)/k`` of them: with ``k = 2``, two networks on half each).

The price: each downstream model is fitted on ``1/k`` of the training subjects. The
ablation (``modelling`` pipeline) measures what cross-fitting changed against the same
networks used in-sample (model ``j`` fitted on the subjects network ``j`` was trained on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from face_health.schema import FOLD_COLUMN, ID_COLUMN


def assign_folds(train_ids: Sequence[str], k: int, seed: int = 0) -> dict[str, int]:
    """Each training subject's fold in ``0 .. k-1``: a seeded shuffle dealt round-robin, so
    fold sizes differ by at most one and the assignment does not depend on input order."""
    ids = sorted({str(s) for s in train_ids})
    if k < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {k}")
    if len(ids) < 2 * k:
        raise ValueError(
            f"{len(ids)} training subjects cannot make {k} folds of at least 2 subjects; "
            "set embedding.cross_fit_folds to 0 (no cross-fitting) or fewer folds"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    return {ids[i]: rank % k for rank, i in enumerate(order)}


def fold_splits(splits: pd.DataFrame, folds: Mapping[str, int], j: int) -> pd.DataFrame:
    """The splits table network ``j`` trains on: fold ``j``'s training subjects removed
    (validation and test rows unchanged)."""
    ids = splits[ID_COLUMN].astype(str)
    held_out = splits["split"].eq("train") & ids.map(lambda s: folds.get(s) == j)
    return splits[~held_out].reset_index(drop=True)


class CrossFittedEmbedding(nn.Module):
    """The ``k`` networks of a cross-fitted embedding and the fold of each training subject.

    ``members[j]`` never saw the training subjects with ``folds[s] == j``. A module (its
    ``state_dict`` holds every member's weights) so that it saves, loads and compares like
    a single network."""

    def __init__(self, members: Sequence[nn.Module], folds: Mapping[str, int]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("a cross-fitted embedding needs at least 2 networks")
        unknown = sorted({int(j) for j in folds.values()} - set(range(len(members))))
        if unknown:
            raise ValueError(f"folds {unknown} have no network ({len(members)} networks)")
        self.members = nn.ModuleList(members)
        self.folds = {str(s): int(j) for s, j in folds.items()}

    @property
    def k(self) -> int:
        return len(self.members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Every member's embedding side by side, ``(B, k * N)``: network ``j``'s block is
        ``[j * N, (j + 1) * N)``, as in the ``emb_f{j}_*`` columns."""
        return torch.cat([member(images) for member in self.members], dim=1)


def fold_block(columns: Sequence[str], j: int) -> dict[str, str]:
    """``emb_f{j}_000 -> emb_000`` for network ``j``'s columns (the others are left out)."""
    out = {}
    for column in columns:
        match = FOLD_COLUMN.match(str(column))
        if match and int(match.group(1)) == j:
            out[column] = "emb_" + str(column)[match.end() :]
    return out


def fold_count(columns: Sequence[str]) -> int:
    """How many networks' blocks ``columns`` hold (0: a single, not cross-fitted embedding)."""
    found = {int(m.group(1)) for c in columns if (m := FOLD_COLUMN.match(str(c)))}
    if found and found != set(range(len(found))):
        raise ValueError(f"embedding blocks {sorted(found)} are not 0 .. k-1")
    return len(found)


def embed_views(
    model: nn.Module, views: Mapping, *, image_size: int, aggregate: str = "mean"
) -> pd.DataFrame:
    """The ``global_features`` rows of ``views`` (``subject_id -> {view -> image}``) from a
    trained embedding: ``emb_*`` from a single network, ``emb_f{j}_*`` from each network of a
    :class:`CrossFittedEmbedding`. What the feature node and the scorer both call."""
    from face_health.embedding.model import subject_embeddings

    if not isinstance(model, CrossFittedEmbedding):
        return subject_embeddings(model, views, image_size=image_size, aggregate=aggregate)
    table = None
    blocks = subject_embeddings(
        list(model.members), views, image_size=image_size, aggregate=aggregate
    )
    for j, block in enumerate(blocks):
        names = {c: f"emb_f{j}_{c[4:]}" for c in block.columns if c != ID_COLUMN}
        block = block.rename(columns=names)
        table = block if table is None else table.merge(block, on=ID_COLUMN, sort=False)
    return table
