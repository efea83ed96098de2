"""The global features of the method: a multi-task ResNet-50 embedding of the directional views.

``EmbeddingNet`` is a timm ResNet whose global average pool is followed by a linear projection
to ``N > 100`` dimensions; ``MultiTaskHeads`` predicts every target from that N-vector
(regression targets standardised by a ``TargetScaler`` fitted on the training split, binary
targets and conditions as logits). ``ViewDataModule`` owns the views: each training epoch
draws a few random views per training subject; validation uses a fixed set of views (the data
side lives in :mod:`face_health.embedding.data`, its names are importable from here too).
``EmbeddingModule`` trains both with a masked loss (missing labels are NaN), and
``subject_embeddings`` turns a trained module into one row per subject.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import timm
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import Tensor, nn
from torch.utils.data import DataLoader

from face_health.config import check_trainer_options
from face_health.embedding.data import (
    IMAGE_MEAN,
    IMAGE_STD,
    RandomViewSampler,
    TargetScaler,
    ViewDataModule,
    ViewDataset,
    ViewImage,
    Views,
    as_pil_rgb,
    first_ring_views,
    view_transform,
)
from face_health.landmarks.training import SINGLE_DEVICE, run_fit
from face_health.schema import ID_COLUMN

#: The module's ``precision``: Lightning's names for full float32 and for bfloat16 autocast
#: (twice as fast to train and to embed on this CPU, benchmarks/resnet_speed_bench.py; the
#: parameters and the optimiser stay float32). The trainer and the embedding use the module's.
PRECISIONS = ("32-true", "bf16-mixed")

__all__ = [
    "IMAGE_MEAN",
    "IMAGE_STD",
    "EmbeddingModule",
    "EmbeddingNet",
    "MultiTaskHeads",
    "RandomViewSampler",
    "TargetScaler",
    "ViewDataModule",
    "ViewDataset",
    "ViewImage",
    "Views",
    "as_pil_rgb",
    "first_ring_views",
    "fit_embedding_model",
    "masked_multitask_loss",
    "subject_embeddings",
    "view_transform",
]


class EmbeddingNet(nn.Module):
    """A timm encoder with global average pooling, then a linear projection to the embedding.

    Parameters
    ----------
    embedding_dim : N, the embedding size; the method asks for N > 100
    backbone : timm model name, always created with ``pretrained=False`` (no network here)
    checkpoint_path : optional local weights: an encoder state dict (e.g. timm ImageNet
        weights; classifier keys are dropped), an ``EmbeddingNet`` state dict, or a Lightning
        checkpoint of an ``EmbeddingModule``
    in_chans : input channels
    """

    def __init__(
        self,
        embedding_dim: int = 128,
        *,
        backbone: str = "resnet50",
        checkpoint_path: str | None = None,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if int(embedding_dim) <= 100:
            raise ValueError(f"the embedding needs N > 100 dimensions, got {embedding_dim}")
        self.encoder = timm.create_model(
            backbone, pretrained=False, num_classes=0, global_pool="avg", in_chans=in_chans
        )
        self.projection = nn.Linear(self.encoder.num_features, int(embedding_dim))
        self.backbone = backbone
        if checkpoint_path is not None:
            self.load_weights(checkpoint_path)

    def forward(self, images: Tensor) -> Tensor:
        """``images (B, C, S, S)`` normalised -> embeddings ``(B, N)``."""
        return self.projection(self.encoder(images))

    def load_weights(self, path: str | Path) -> None:
        """Load the encoder (and the projection, if the file has it) from a local state dict."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"encoder checkpoint {path} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"{path} is not a readable state dict: {error}") from error
        state = state.get("state_dict", state) if isinstance(state, Mapping) else state
        if not isinstance(state, Mapping):
            raise ValueError(f"{path} holds no state dict (got {type(state).__name__})")
        if any(k.startswith("net.") for k in state):  # an EmbeddingModule: drop its heads
            state = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        projection = {k[11:]: v for k, v in state.items() if k.startswith("projection.")}
        if any(k.startswith("encoder.") for k in state):
            state = {k[8:]: v for k, v in state.items() if k.startswith("encoder.")}
        else:  # a bare encoder: its classifier is not part of ours (num_classes=0)
            head = self.encoder.pretrained_cfg.get("classifier") or "fc"
            state = {k: v for k, v in state.items() if k.split(".")[0] != head}
        try:
            self.encoder.load_state_dict(state)
            if projection:
                self.projection.load_state_dict(projection)
        except RuntimeError as error:  # torch lists the missing, unexpected and misshapen keys
            raise ValueError(
                f"{path} does not match the {self.backbone} encoder: {error}"
            ) from None


class MultiTaskHeads(nn.Module):
    """One linear output per target from the embedding ``(B, N) -> (B, T)``: standardised
    values for regression targets, logits for binary targets and conditions."""

    def __init__(self, embedding_dim: int, target_kinds: Sequence[str], dropout: float = 0.0):
        super().__init__()
        unknown = sorted(set(target_kinds) - {"regression", "binary", "condition"})
        if unknown:
            raise ValueError(f"unknown target kinds {unknown}")
        self.target_kinds = list(target_kinds)
        self.register_buffer("is_binary", torch.tensor([k != "regression" for k in target_kinds]))
        self.dropout, self.linear = nn.Dropout(dropout), nn.Linear(embedding_dim, len(target_kinds))

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.linear(self.dropout(embeddings))


def masked_multitask_loss(
    outputs: Tensor, targets: Tensor, is_binary: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Sum over targets of each target's loss averaged over the samples that have its label.

    Parameters
    ----------
    outputs : (B, T) standardised predictions / logits
    targets : (B, T) standardised values / 0-1 labels; NaN where missing
    is_binary : (T,) bool, BCE-with-logits where True, squared error otherwise
    mask : (B, T) bool labels present; ``~isnan(targets)`` if None

    Returns
    -------
    loss : () sum over the targets labelled in the batch (0, with a graph, if none is)
    per_target : (T,) mean loss of each target, NaN where it has no label
    counts : (T,) labels present per target
    """
    outputs = outputs.float()
    mask = ~torch.isnan(targets) if mask is None else mask.bool()
    # Missing entries are replaced before the loss: 0 * NaN is NaN and would poison gradients.
    filled = torch.where(mask, targets.float(), torch.zeros_like(outputs))
    safe = torch.where(mask, outputs, outputs.detach() * 0)
    bce = F.binary_cross_entropy_with_logits(safe, filled.clamp(0, 1), reduction="none")
    elementwise = torch.where(is_binary.bool()[None, :], bce, (safe - filled) ** 2) * mask
    counts = mask.sum(dim=0)
    per_target = elementwise.sum(dim=0) / counts.clamp(min=1)
    loss = per_target[counts > 0].sum() + outputs.sum() * 0.0
    return loss, torch.where(counts > 0, per_target, torch.nan), counts


class EmbeddingModule(L.LightningModule):
    """Trains an :class:`EmbeddingNet` with :class:`MultiTaskHeads` on standardised targets.

    Loss: :func:`masked_multitask_loss`. Logged per stage: ``train_loss``, ``val_loss``,
    ``test_loss``; in validation and test also ``<stage>_mae_<target>`` of regression
    targets (in the target's units: standardised errors times ``target_scale``, the training
    standard deviations, which :func:`fit_embedding_model` takes from the scaler) and
    ``<stage>_bce_<target>`` of binary targets and conditions, means over the epoch's
    labelled samples of every process (a target nobody labelled is not logged).
    ``predict_step`` returns ``{"subject_id", "view", "embeddings" (B, N)}``.
    """

    def __init__(
        self,
        target_names: list[str],
        target_kinds: list[str],
        *,
        embedding_dim: int = 128,
        backbone: str = "resnet50",
        checkpoint_path: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        max_epochs: int = 5,
        dropout: float = 0.0,
        target_scale: list[float] | None = None,
        channels_last: bool = False,
        precision: str = "32-true",
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if len(target_names) != len(target_kinds):
            raise ValueError(f"{len(target_kinds)} kinds for {len(target_names)} targets")
        self.save_hyperparameters()
        self.net = EmbeddingNet(embedding_dim, backbone=backbone, checkpoint_path=checkpoint_path)
        self.heads = MultiTaskHeads(embedding_dim, target_kinds, dropout=dropout)
        scale = torch.tensor(target_scale or [1.0] * len(target_names), dtype=torch.float32)
        self.register_buffer("target_scale", scale, persistent=False)
        if channels_last:  # NHWC: ~1.2x faster convolutions on this CPU (resnet_speed_bench)
            self.net.to(memory_format=torch.channels_last)
        # Per stage, the epoch's per-target sums of errors (or losses) and label counts.
        self._target_totals: dict[str, tuple[Tensor, Tensor]] = {}

    def _images(self, images: Tensor) -> Tensor:
        if self.hparams.get("channels_last", False):
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def forward(self, images: Tensor) -> Tensor:
        """``images (B, 3, S, S)`` -> embeddings ``(B, N)``."""
        return self.net(self._images(images))

    def _step(self, batch: dict[str, Any], stage: str) -> Tensor:
        outputs, targets = self.heads(self(batch["images"])), batch["targets"]
        loss, per_target, counts = masked_multitask_loss(outputs, targets, self.heads.is_binary)
        size = len(targets)
        self.log(
            f"{stage}_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=size,
            sync_dist=True,  # the mean over every process of a multi-process fit
        )
        if stage == "train":
            return loss
        errors = (outputs.float() - targets).abs() * self.target_scale
        sums = torch.where(self.heads.is_binary, per_target.nan_to_num() * counts, errors.nansum(0))
        if stage in self._target_totals:
            before, seen = self._target_totals[stage]
            sums, counts = before + sums.detach(), seen + counts
        self._target_totals[stage] = (sums.detach(), counts)
        return loss

    def _log_target_metrics(self, stage: str) -> None:
        """``<stage>_mae_*`` / ``<stage>_bce_*`` of the epoch: totals summed over the processes
        first, so every process logs the same targets (a target logged by some processes only
        would leave the others waiting to synchronise it)."""
        if stage not in self._target_totals:
            return
        sums, counts = self._target_totals.pop(stage)
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        counts = self.trainer.strategy.reduce(counts.float(), reduce_op="sum")
        for j, (name, kind) in enumerate(
            zip(self.hparams.target_names, self.heads.target_kinds, strict=True)
        ):
            if counts[j] > 0:  # a target without labels would log NaN
                metric = "mae" if kind == "regression" else "bce"
                self.log(f"{stage}_{metric}_{name}", sums[j] / counts[j], sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self._target_totals.pop("val", None)

    def on_validation_epoch_end(self) -> None:
        self._log_target_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._target_totals.pop("test", None)

    def on_test_epoch_end(self) -> None:
        self._log_target_metrics("test")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        embeddings = self(batch["images"]).float().cpu()  # kept for all batches: off device
        return {"subject_id": batch["subject_id"], "view": batch["view"], "embeddings": embeddings}

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, hp.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": schedule}  # stepped once per epoch


def fit_embedding_model(
    datamodule: ViewDataModule,
    *,
    module_options: dict,
    trainer_options: dict | None = None,
    logger: Any = None,
    patience: int = 3,
    seed: int = 0,
) -> tuple[EmbeddingModule, dict[str, float]]:
    """Fit an :class:`EmbeddingModule`, early-stopped on ``val_loss``; return its best state.

    Parameters
    ----------
    datamodule : the views; its ``target_names`` must equal ``module_options["target_names"]``
    module_options : :class:`EmbeddingModule` arguments; ``max_epochs`` (not a trainer option,
        the cosine schedule spans it) sets the trainer's; ``target_kinds`` and
        ``target_scale`` default to the data module's
    trainer_options : further ``lightning.Trainer`` arguments (e.g. ``fast_dev_run``);
        ``accelerator``, ``devices`` and ``strategy`` default to one device
        (:data:`~face_health.landmarks.training.SINGLE_DEVICE`); several processes with
        ``strategy`` ``ddp_spawn`` (the data module must pickle) or ``ddp_fork``, see
        :func:`~face_health.landmarks.training.run_fit`
    logger : a Lightning logger, or None for none
    patience : validation epochs without improvement before stopping
    seed : seeds everything (weights, augmentation)

    Returns
    -------
    The best module on the CPU in eval mode, and ``{"best_val_loss", "epochs",
    "train_seconds"}`` (``train_seconds`` include starting the processes of a multi-process
    fit).
    """
    options = {"target_kinds": datamodule.target_kinds, **module_options}
    if list(options.get("target_names", [])) != datamodule.target_names:
        raise ValueError("module_options['target_names'] differ from the data module's")
    options.setdefault("target_scale", [float(s) for s in datamodule.scaler.scale_])
    trainer_options = {**SINGLE_DEVICE, **(trainer_options or {})}
    for name in ("max_epochs", "precision"):
        if name in trainer_options:
            raise ValueError(
                f"set {name} in module_options: the module keeps it (the cosine schedule "
                "spans max_epochs; the embedding of new scans uses the training precision)"
            )
    check_trainer_options(trainer_options, "trainer_options")
    L.seed_everything(seed, workers=True, verbose=False)
    module = EmbeddingModule(**options)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = ModelCheckpoint(scratch, monitor="val_loss", save_weights_only=True)
        callbacks = [checkpoint, EarlyStopping(monitor="val_loss", patience=patience)]
        start = time.perf_counter()
        trainer, outcome = run_fit(
            module,
            datamodule,
            {
                "max_epochs": module.hparams.max_epochs,
                "precision": module.hparams.precision,
                "callbacks": callbacks,
                "enable_progress_bar": True,
                **trainer_options,
            },
            logger=logger,
            scratch=scratch,
            steps_per_epoch=len(datamodule.train_dataloader()),
        )
        seconds = time.perf_counter() - start
        if outcome.best_model_path:  # empty after fast_dev_run, which saves nothing
            # Into the same module: rebuilding it would read ``checkpoint_path`` again.
            saved = torch.load(outcome.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(saved["state_dict"])
    module.trainer = trainer  # also when other processes trained it, as after a fit here
    best = outcome.best_model_score
    if best is None:
        best = float(trainer.callback_metrics.get("val_loss", torch.tensor(float("nan"))))
    metrics = {"best_val_loss": float(best), "epochs": outcome.epochs}
    return module.cpu().eval(), {**metrics, "train_seconds": seconds}


def _device() -> torch.device:
    """Lightning's ``auto`` for one device: the GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.inference_mode()
def _embed(modules: Sequence[EmbeddingModule], loader: DataLoader) -> list[np.ndarray]:
    """Every module's embeddings of every image of ``loader``, decoding each image once."""
    device = _device()
    modules = [m.to(device).eval() for m in modules]
    out: list[list[Tensor]] = [[] for _ in modules]
    for batch in loader:
        images = batch["images"].to(device)
        for j, module in enumerate(modules):
            bf16 = module.hparams.get("precision", "32-true") == "bf16-mixed"
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out[j].append(module(images).float().cpu())
    for module in modules:
        module.cpu()
    return [torch.cat(o).numpy() for o in out]


def subject_embeddings(
    module: EmbeddingModule | Sequence[EmbeddingModule],
    views: Views,
    *,
    image_size: int = 112,
    aggregate: str = "mean",
    batch_size: int = 64,
) -> pd.DataFrame | list[pd.DataFrame]:
    """One embedding per subject from its views' embeddings (on the GPU when there is one;
    in the module's ``precision``).

    Parameters
    ----------
    module : a trained module, or several (each view is then decoded once for all of them)
    views : ``subject_id -> {view name -> image or loader}``
    aggregate : ``mean`` of the views' embeddings (columns ``emb_000`` .. ``emb_{N-1}``), or
        ``concat`` in sorted view order (``emb_<view>_<k>``; every subject needs every view)

    Returns
    -------
    ``subject_id`` and the embedding columns, one row per subject, in ``views`` order (a
    list of such tables, one per module, when given several).
    """
    if aggregate not in ("mean", "concat"):
        raise ValueError(f"aggregate must be 'mean' or 'concat', got {aggregate!r}")
    views = {str(s): names for s, names in views.items()}
    order = sorted({v for names in views.values() for v in names})
    for subject, names in views.items():
        missing = [v for v in order if v not in names]
        if not names or (aggregate == "concat" and missing):
            raise ValueError(f"subject {subject} lacks views {missing} ({aggregate!r})")
    items = [(s, v) for s, names in views.items() for v in sorted(names)]
    dataset = ViewDataset(items, views, view_transform(image_size))
    modules = [module] if isinstance(module, EmbeddingModule) else list(module)
    tables = [
        _subject_table(e, items, list(views), order, aggregate)
        for e in _embed(modules, DataLoader(dataset, batch_size=batch_size))
    ]
    return tables[0] if isinstance(module, EmbeddingModule) else tables


def _subject_table(
    embeddings: np.ndarray, items: list, subjects: list[str], order: list[str], aggregate: str
) -> pd.DataFrame:
    n = embeddings.shape[1]
    width = max(3, len(str(n - 1)))
    if aggregate == "mean":
        frame = pd.DataFrame(embeddings, columns=[f"emb_{k:0{width}d}" for k in range(n)])
        frame.insert(0, ID_COLUMN, [s for s, _ in items])
        return frame.groupby(ID_COLUMN, sort=False).mean().reindex(subjects).reset_index()
    columns = [f"emb_{v}_{k:0{width}d}" for v in order for k in range(n)]
    frame = pd.DataFrame(embeddings.reshape(len(subjects), -1), columns=columns)
    return frame.assign(**{ID_COLUMN: subjects})[[ID_COLUMN, *columns]]
