"""The data side of the view embedding: target scaling, view images and their loading.

``TargetScaler`` standardises regression targets with statistics of the training subjects
only; ``as_pil_rgb`` and ``view_transform`` turn a view (an array, a PIL image or a loader) into
a normalised tensor; ``ViewDataset`` serves ``(subject_id, view)`` samples,
``RandomViewSampler`` draws a few random views per subject and epoch, ``first_ring_views``
picks the fixed validation views, and ``ViewDataModule`` ties them into Lightning's data
module by subject-level split. The networks and their training live in
:mod:`face_health.embedding.model`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms

from face_health.schema import ID_COLUMN, TARGET_BY_NAME

ViewImage = np.ndarray | Image.Image | Callable[[], Any]
Views = Mapping[str, Mapping[str, ViewImage]]

#: ImageNet channel statistics, the input scaling of timm ResNets and of any ImageNet
#: checkpoint a user may load, so loaded weights see inputs on their own scale.
IMAGE_MEAN, IMAGE_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_DIRECTIONAL_VIEW = re.compile(r"^(yaw_left|yaw_right|pitch_up|pitch_down)_(\d+(?:\.\d+)?)$")


def _kinds(names: Sequence[str], kinds: Sequence[str] | None) -> list[str]:
    unknown = [n for n in names if n not in TARGET_BY_NAME]
    if kinds is None and unknown:
        raise ValueError(f"targets {unknown} are not in the schema: give their kinds")
    kinds = [TARGET_BY_NAME[n].kind for n in names] if kinds is None else list(kinds)
    if len(kinds) != len(names):
        raise ValueError(f"{len(kinds)} kinds for {len(names)} targets")
    return kinds


class TargetScaler:
    """Standardises regression targets with statistics of the training subjects only.

    Binary targets and conditions pass through; NaN (missing) stays NaN. ``fit`` records the
    subject ids it saw in ``fitted_on``, so a test can check that nothing else was used.
    Learned: ``mean_``, ``scale_`` (T,) (0 and 1 for binary targets), ``fitted_on``.
    """

    def __init__(self, target_names: Sequence[str], target_kinds: Sequence[str] | None = None):
        self.target_names = list(target_names)
        self.target_kinds = _kinds(self.target_names, target_kinds)

    def fit(self, targets: pd.DataFrame) -> TargetScaler:
        """Fit on the training subjects' rows: ``subject_id`` and the target columns."""
        values = self._values(targets)
        regression = np.array([k == "regression" for k in self.target_kinds])
        with warnings.catch_warnings():  # "mean of empty slice": a target without labels
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        # No or constant labels: scale 1 keeps values finite instead of dividing by zero.
        self.mean_ = np.where(regression & np.isfinite(mean), mean, 0.0)
        self.scale_ = np.where(regression & np.isfinite(std) & (std > 0), std, 1.0)
        self.fitted_on: list[str] = targets[ID_COLUMN].astype(str).tolist()
        return self

    def transform(self, targets: pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
        """Standardise a frame (other columns kept) or an ``(n, T)`` array."""
        return self._apply(targets, lambda v: (v - self.mean_) / self.scale_)

    def inverse_transform(self, targets: pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
        """Back to the targets' own units."""
        return self._apply(targets, lambda v: v * self.scale_ + self.mean_)

    def _values(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in (ID_COLUMN, *self.target_names) if c not in frame]
        if missing:
            raise ValueError(f"target table lacks columns {missing}")
        values = frame[self.target_names].astype("float64").to_numpy()
        binary = values[:, [k != "regression" for k in self.target_kinds]]
        if not np.isin(binary[~np.isnan(binary)], (0.0, 1.0)).all():
            raise ValueError("binary targets and conditions must be 0, 1 or NaN")
        return values

    def _apply(self, targets: Any, function: Callable[[np.ndarray], np.ndarray]) -> Any:
        if not hasattr(self, "mean_"):
            raise RuntimeError("TargetScaler is not fitted")
        if not isinstance(targets, pd.DataFrame):
            return function(np.asarray(targets, dtype=np.float64))
        out = targets.copy()
        out[self.target_names] = function(self._values(targets))
        return out


def as_pil_rgb(image: ViewImage) -> Image.Image:
    """A view as an RGB PIL image: a PIL image, an ``(S, S[, 3])`` array (uint8, or float in
    [0, 1]), or a loader, called without arguments, that returns either."""
    if callable(image) and not isinstance(image, np.ndarray | Image.Image):
        image = image()
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[..., 0] if array.shape[2] == 1 else array[..., :3]
    if array.ndim not in (2, 3):
        raise ValueError(f"a view must be (S, S) or (S, S, 3), got {array.shape}")
    return Image.fromarray(array).convert("RGB")


def view_transform(
    image_size: int, *, augment: bool = False, horizontal_flip: bool = False
) -> Callable[[Image.Image], Tensor]:
    """PIL view -> normalised ``(3, S, S)`` tensor; ``augment`` adds a small random crop and
    shift and a small colour jitter (and horizontal flips if asked)."""
    steps: list[Any] = [transforms.Resize((image_size, image_size))]
    if augment:
        steps = [
            transforms.RandomResizedCrop(image_size, scale=(0.85, 1.0), ratio=(0.95, 1.05)),
            transforms.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1),
        ]
        # Off by default: a flipped yaw_left view looks like a yaw_right view of another face.
        steps += [transforms.RandomHorizontalFlip()] if horizontal_flip else []
    return transforms.Compose(
        [*steps, transforms.ToTensor(), transforms.Normalize(IMAGE_MEAN, IMAGE_STD)]
    )


class ViewDataset(Dataset):
    """``(subject_id, view)`` items as ``{"images" (3, S, S), "targets" (T,) float32 (NaN:
    missing; all NaN for a subject without a row), "subject_id", "view"}`` samples."""

    def __init__(
        self,
        items: Sequence[tuple[str, str]],
        views: Views,
        transform: Callable[[Image.Image], Tensor],
        targets: Mapping[str, np.ndarray] | None = None,
        n_targets: int = 0,
    ) -> None:
        self.items, self.views, self.transform = list(items), views, transform
        self.targets, self.missing = targets or {}, np.full(n_targets, np.nan, np.float32)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        subject, view = self.items[index]
        image = self.transform(as_pil_rgb(self.views[subject][view]))
        targets = torch.from_numpy(self.targets.get(subject, self.missing))
        return {"images": image, "targets": targets, "subject_id": subject, "view": view}


class RandomViewSampler(Sampler[int]):
    """Each epoch, ``per_subject`` random views (dataset indices) of every subject, shuffled.

    The draw depends only on ``(seed, epoch)``; Lightning calls ``set_epoch`` before each
    epoch, so runs repeat and every epoch sees other views.
    """

    def __init__(self, groups: Sequence[Sequence[int]], per_subject: int, seed: int = 0):
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups]
        self.per_subject, self.seed, self.epoch = int(per_subject), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return sum(min(self.per_subject, len(g)) for g in self.groups)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        drawn = [rng.choice(g, min(self.per_subject, len(g)), replace=False) for g in self.groups]
        return iter(rng.permutation(np.concatenate(drawn)).tolist())


def first_ring_views(view_names: Sequence[str]) -> list[str]:
    """``front`` and, in each direction, the view at the smallest angle (the first interval)."""
    best: dict[str, tuple[float, str]] = {}
    for name in view_names:
        match = _DIRECTIONAL_VIEW.match(name)
        if match and (match[1] not in best or float(match[2]) < best[match[1]][0]):
            best[match[1]] = (float(match[2]), name)
    return (["front"] if "front" in view_names else []) + sorted(n for _, n in best.values())


class ViewDataModule(L.LightningDataModule):
    """The views and standardised targets of a cohort, by subject-level split.

    Parameters
    ----------
    views : ``subject_id -> {view name -> (S, S, 3) array, PIL image or loader}``
    targets : ``subject_id`` and the target columns; NaN where a label is missing
    splits : ``subject_id`` and ``split`` in ``train``, ``validation``, ``test``
    target_names : targets to learn, in order; kinds from the schema unless ``target_kinds``
    image_size : S fed to the network (views are resized to it)
    views_per_subject_per_epoch : views drawn at random per training subject and epoch
    augment, horizontal_flip : training augmentation; flips are off by default
    validation_views : views of validation and test; :func:`first_ring_views` if None

    Batches: ``images (B, 3, S, S)``, ``targets (B, T)`` scaled by ``.scaler`` (fitted on
    the training subjects only), ``subject_id`` and ``view`` lists. Predict: every view of
    every subject, whatever its split.
    """

    def __init__(
        self,
        views: Views,
        targets: pd.DataFrame,
        splits: pd.DataFrame,
        *,
        target_names: list[str],
        image_size: int = 112,
        views_per_subject_per_epoch: int = 4,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = True,
        horizontal_flip: bool = False,
        target_kinds: list[str] | None = None,
        validation_views: list[str] | None = None,
    ) -> None:
        super().__init__()
        # Targets are the module's hyperparameters: logged twice, Lightning wants them equal.
        self.save_hyperparameters(
            ignore=["views", "targets", "splits", "target_names", "target_kinds"]
        )
        self.views = {str(s): dict(v) for s, v in views.items()}
        self.target_names = list(target_names)
        self.target_kinds = _kinds(self.target_names, target_kinds)
        ids, table = splits[ID_COLUMN].astype(str), targets.astype({ID_COLUMN: str})
        for name, column in (("splits", ids), ("targets", table[ID_COLUMN])):
            if column.duplicated().any():
                raise ValueError(
                    f"{name} repeat subjects {column[column.duplicated()][:5].tolist()}"
                )
        bad = sorted(set(splits["split"]) - {"train", "validation", "test"})
        lacking = [s for s in ids if not self.views.get(s)]
        if bad or lacking:
            raise ValueError(f"unknown splits {bad} or subjects without views {lacking[:5]}")
        self.subjects = {
            p: ids[splits["split"].eq(p)].tolist() for p in ("train", "validation", "test")
        }
        if not self.subjects["train"]:
            raise ValueError("no training subjects")
        train_rows = table[table[ID_COLUMN].isin(self.subjects["train"])]
        self.scaler = TargetScaler(self.target_names, self.target_kinds).fit(train_rows)
        scaled = self.scaler.transform(table[table[ID_COLUMN].isin(self.views)])
        matrix = scaled[self.target_names].to_numpy(np.float32)
        self.targets = dict(zip(scaled[ID_COLUMN], matrix, strict=True))
        names = sorted({v for subject_views in self.views.values() for v in subject_views})
        self.validation_views = validation_views or first_ring_views(names)

    def _loader(
        self, items: list, *, train: bool = False, sampler: Sampler | None = None
    ) -> DataLoader:
        hp = self.hparams
        transform = view_transform(
            hp.image_size, augment=train and hp.augment, horizontal_flip=hp.horizontal_flip
        )
        dataset = ViewDataset(items, self.views, transform, self.targets, len(self.target_names))
        return DataLoader(
            dataset,
            batch_size=hp.batch_size,
            sampler=sampler,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        items, groups = [], []
        for subject in self.subjects["train"]:
            groups.append(range(len(items), len(items) + len(self.views[subject])))
            items += [(subject, v) for v in sorted(self.views[subject])]
        per_subject = self.hparams.views_per_subject_per_epoch
        sampler = RandomViewSampler(groups, per_subject, self.hparams.seed)
        return self._loader(items, train=True, sampler=sampler)

    def _fixed_views(self, split: str) -> DataLoader:
        subjects, fixed = self.subjects[split], self.validation_views
        items = [(s, v) for s in subjects for v in fixed if v in self.views[s]]
        if not items:
            raise ValueError(f"no {split} subject has any of the views {fixed}")
        return self._loader(items)

    def val_dataloader(self) -> DataLoader:
        return self._fixed_views("validation")

    def test_dataloader(self) -> DataLoader:
        return self._fixed_views("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader([(s, v) for s, names in self.views.items() for v in sorted(names)])
