"""Training the landmark heatmap network with Lightning, and its compact checkpoint file.

``LandmarkDataModule`` owns the rendered views (arrays ``images (N, C, S, S)``, ``keypoints
(N, K, 2)`` input pixels ``(col, row)``, ``visible (N, K)`` bool) and augments training
batches on the fly, on the training device, deterministically given its seed (with
:func:`augment_batch` of :mod:`face_health.landmarks.augmentation`).
``LandmarkModule`` trains a :class:`HeatmapNet` towards Gaussian target heatmaps.
``fit_landmark_model`` runs the fit with checkpointing and early stopping on ``val_loss``;
``save_landmark_model`` / ``load_landmark_model`` write and read the few-MB file that the
detector ships.
"""

from __future__ import annotations

import tempfile
from os import PathLike
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MeanMetric

from face_health.landmarks.augmentation import Augmentation, augment_batch
from face_health.landmarks.network import HeatmapNet, decode_heatmaps_torch, gaussian_heatmaps

#: Tag of the compact checkpoint format written by :func:`save_landmark_model`.
CHECKPOINT_FORMAT = "face_health.landmarks.HeatmapNet/1"
_ARCHITECTURE_KEYS = ("n_landmarks", "encoder", "in_channels", "encoder_indices")
_ARCHITECTURE_KEYS += ("decoder_channels", "output_stride")


class ViewDataset(Dataset):
    """Rendered views as ``{"images", "keypoints", "visible"}`` samples (float32 images in the
    network's range: uint8 arrays are scaled by 1/255)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        images, keypoints, visible = arrays["images"], arrays["keypoints"], arrays["visible"]
        n = len(images)
        if images.ndim != 4 or keypoints.shape[0] != n or visible.shape != keypoints.shape[:2]:
            raise ValueError(
                "expected images (N, C, S, S), keypoints (N, K, 2) and visible (N, K); got "
                f"{images.shape}, {keypoints.shape} and {visible.shape}"
            )
        self.images, self.keypoints, self.visible = images, keypoints, visible.astype(bool)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image = torch.from_numpy(np.asarray(self.images[index]))
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        keypoints = torch.from_numpy(np.asarray(self.keypoints[index], dtype=np.float32))
        visible = torch.from_numpy(np.asarray(self.visible[index]))
        return {"images": image, "keypoints": keypoints, "visible": visible}


class LandmarkDataModule(L.LightningDataModule):
    """Training and validation views; augments training batches after they reach the device.

    Parameters
    ----------
    train, val : ``images (N, C, S, S)`` float (or uint8, scaled by 1/255), ``keypoints
        (N, K, 2)`` float input px ``(col, row)``, ``visible (N, K)`` bool
    batch_size, num_workers : of the data loaders
    augment : True for the default :class:`Augmentation`, False for none, or one's own
    flip_pairs : (left, right) landmark index pairs; horizontal flips only when given
    seed : seeds shuffling and augmentation
    background : per-channel value where nothing was rendered
    """

    def __init__(
        self,
        train: dict[str, np.ndarray],
        val: dict[str, np.ndarray],
        *,
        batch_size: int = 32,
        num_workers: int = 0,
        augment: bool | Augmentation = True,
        flip_pairs: list[tuple[int, int]] | None = None,
        seed: int = 0,
        background: tuple[float, ...] = (0.0, 1.0, 0.0),
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["train", "val"])
        self.train_set, self.val_set = ViewDataset(train), ViewDataset(val)
        if (
            train["images"].shape[1:] != val["images"].shape[1:]
            or train["keypoints"].shape[1] != val["keypoints"].shape[1]
        ):
            raise ValueError("training and validation views differ in size or landmarks")
        if augment is True:
            augment = Augmentation()
        self.augmentation: Augmentation | None = augment or None
        self.flip_pairs = [(int(i), int(j)) for i, j in flip_pairs or []]
        self.background = tuple(float(v) for v in background)
        self._generator = torch.Generator().manual_seed(seed)

    def setup(self, stage: str | None = None) -> None:
        # Every fit sees the same augmentation stream.
        self._generator.manual_seed(self.hparams.seed)

    def _loader(self, dataset: ViewDataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            generator=torch.Generator().manual_seed(self.hparams.seed) if shuffle else None,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict:
        # Batched on the training device: cheap, and one generator keeps it reproducible.
        if self.augmentation is not None and self.trainer is not None and self.trainer.training:
            batch = augment_batch(
                batch,
                self.augmentation,
                generator=self._generator,
                background=self.background,
                flip_pairs=self.flip_pairs,
            )
        return batch


class LandmarkModule(L.LightningModule):
    """Trains a :class:`HeatmapNet` on Gaussian target heatmaps.

    The loss is a mean squared error weighted by ``1 + foreground_weight * target``: the
    peaks cover a few pixels of each map, so without the weight predicting zeros everywhere
    is nearly optimal. Maps of invisible landmarks are trained towards zero.
    Logged per stage: ``train_loss``, ``val_loss``, ``val_px_error`` (mean input-pixel
    distance of decoded peaks from visible keypoints), and the same for ``test``.
    """

    def __init__(
        self,
        n_landmarks: int,
        landmark_names: list[str] | None = None,
        *,
        encoder: str = "resnet18",
        in_channels: int = 3,
        input_size: int = 128,
        output_stride: int = 2,
        sigma: float = 1.5,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        max_epochs: int = 30,
        encoder_indices: tuple[int, ...] = (0, 1, 2, 3),
        decoder_channels: int = 64,
        foreground_weight: float = 10.0,
    ) -> None:
        super().__init__()
        if landmark_names is not None and len(landmark_names) != n_landmarks:
            raise ValueError(f"{len(landmark_names)} landmark names for {n_landmarks} landmarks")
        if input_size % output_stride:
            raise ValueError(f"input_size {input_size} is not a multiple of {output_stride}")
        self.save_hyperparameters()
        self.net = HeatmapNet(
            n_landmarks,
            encoder=encoder,
            in_channels=in_channels,
            encoder_indices=tuple(encoder_indices),
            decoder_channels=decoder_channels,
            output_stride=output_stride,
        )
        self.val_px_error = MeanMetric()
        self.test_px_error = MeanMetric()

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        images = batch["images"]
        if images.shape[-1] != self.hparams.input_size:
            raise ValueError(
                f"views of {images.shape[-1]} px, the model expects {self.hparams.input_size}"
            )
        heatmaps = self.net(images).float()
        targets = gaussian_heatmaps(
            batch["keypoints"].float(),
            batch["visible"],
            self.hparams.input_size,
            self.hparams.output_stride,
            self.hparams.sigma,
        )
        weights = 1.0 + self.hparams.foreground_weight * targets
        return (weights * (heatmaps - targets) ** 2).mean(), heatmaps

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["images"]))
        return loss

    def _evaluate(self, batch: dict[str, Tensor], stage: str, metric: MeanMetric) -> None:
        loss, heatmaps = self._loss(batch)
        pixels, _ = decode_heatmaps_torch(heatmaps, self.hparams.output_stride)
        distances = (pixels - batch["keypoints"].double()).norm(dim=-1)
        metric.update(distances[batch["visible"]].float())
        size = len(batch["images"])
        self.log(f"{stage}_loss", loss, on_epoch=True, prog_bar=True, batch_size=size)
        self.log(f"{stage}_px_error", metric, on_epoch=True, prog_bar=True, batch_size=size)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_px_error)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_px_error)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, self.hparams.max_epochs)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "epoch"},
        }


def fit_landmark_model(
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray],
    *,
    module_options: dict | None = None,
    trainer_options: dict | None = None,
    data_options: dict | None = None,
    logger: Any = None,
    checkpoint_dir: str | None = None,
    patience: int = 8,
    seed: int = 0,
    init_weights: str | PathLike | None = None,
) -> tuple[LandmarkModule, dict[str, float]]:
    """Fit a :class:`LandmarkModule`, early-stopped on ``val_loss``, and return its best state.

    Parameters
    ----------
    train, val : view arrays, see :class:`LandmarkDataModule`
    module_options : :class:`LandmarkModule` arguments; ``n_landmarks``, ``input_size`` and
        ``in_channels`` default to the arrays' shapes; ``max_epochs`` is set here (the
        learning-rate schedule needs it), not in ``trainer_options``
    trainer_options : further ``lightning.Trainer`` arguments (e.g. ``precision``,
        ``fast_dev_run``, ``accelerator``)
    data_options : further :class:`LandmarkDataModule` arguments
    logger : a Lightning logger (e.g. MLflow's), or None for no logging
    checkpoint_dir : where to keep the best checkpoint; a temporary folder if None
    patience : validation epochs without improvement before stopping
    seed : seeds everything (``lightning.seed_everything``) and, unless ``data_options`` has
        its own, the data module
    init_weights : a landmark checkpoint file (:func:`save_landmark_model`) to start from
        (fine-tuning), instead of random weights; its architecture must match

    Returns
    -------
    The module with the best weights, on the CPU in eval mode, and ``{"best_val_loss",
    "val_px_error", "epochs"}`` (``val_px_error`` of the best weights; ``epochs`` trained).
    """
    images = train["images"]
    module_options = {
        "n_landmarks": int(train["keypoints"].shape[1]),
        "input_size": int(images.shape[-1]),
        "in_channels": int(images.shape[1]),
        **(module_options or {}),
    }
    trainer_options = dict(trainer_options or {})
    if "max_epochs" in trainer_options:
        raise ValueError("set max_epochs in module_options: the cosine schedule spans it")
    L.seed_everything(seed, workers=True, verbose=False)
    module = LandmarkModule(**module_options)
    if init_weights is not None:
        start, _ = load_landmark_model(init_weights)
        try:
            module.net.load_state_dict(start.state_dict())
        except RuntimeError as exc:
            raise ValueError(f"{init_weights} does not fit this network: {exc}") from exc
    data = LandmarkDataModule(train, val, **{"seed": seed, **(data_options or {})})
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = ModelCheckpoint(
            dirpath=checkpoint_dir or scratch,
            filename="landmarks-{epoch:03d}-{val_loss:.5f}",
            monitor="val_loss",
            mode="min",
            save_top_k=1,
        )
        early_stopping = EarlyStopping(monitor="val_loss", mode="min", patience=patience)
        trainer = L.Trainer(
            **{
                "accelerator": "auto",
                "devices": 1,
                "max_epochs": module.hparams.max_epochs,
                "callbacks": [checkpoint, early_stopping],
                "enable_progress_bar": True,
                "logger": logger or False,
                # Lightning's 50 steps exceed a small run's epoch (its PossibleUserWarning).
                "log_every_n_steps": max(1, min(50, len(data.train_dataloader()))),
                **trainer_options,
            }
        )
        trainer.fit(module, datamodule=data)
        if checkpoint.best_model_path:  # empty after fast_dev_run, which saves nothing
            module = LandmarkModule.load_from_checkpoint(
                checkpoint.best_model_path, map_location="cpu"
            )
        # A separate, silent trainer: the final validation is not another logged epoch.
        evaluation_options = {
            k: v
            for k, v in trainer_options.items()
            if k in ("accelerator", "precision", "fast_dev_run", "limit_val_batches")
        }
        evaluator = L.Trainer(
            **{
                "accelerator": "auto",
                "devices": 1,
                "logger": False,
                "enable_progress_bar": False,
                "enable_model_summary": False,
                "enable_checkpointing": False,  # validates only (and no litmodels tip)
                **evaluation_options,
            }
        )
        metrics = evaluator.validate(module, datamodule=data, verbose=False)[0]
    module = module.cpu().eval()
    best = checkpoint.best_model_score
    return module, {
        "best_val_loss": float(best) if best is not None else float(metrics["val_loss"]),
        "val_px_error": float(metrics["val_px_error"]),
        "epochs": int(trainer.current_epoch),
    }


def _plain(value: Any) -> Any:
    """Hyperparameters as plain Python values, loadable with ``torch.load(weights_only=True)``."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"hyperparameter value {value!r} is not a plain type")


def save_landmark_model(
    module_or_net: LandmarkModule | HeatmapNet, path: str | PathLike, *, hparams: dict
) -> None:
    """Write the network's weights in float16 and what the detector needs to use it.

    Parameters
    ----------
    module_or_net : a trained :class:`LandmarkModule` (its hyperparameters are the defaults
        of ``hparams``) or a bare :class:`HeatmapNet`
    path : file to write (a few MB: ~6 MB for the default net)
    hparams : at least ``landmark_names``, ``input_size`` and ``sigma`` unless the module
        provides them; the architecture is taken from the network itself
    """
    if isinstance(module_or_net, LandmarkModule):
        net, base = module_or_net.net, dict(module_or_net.hparams)
    elif isinstance(module_or_net, HeatmapNet):
        net, base = module_or_net, {}
    else:
        raise TypeError(f"expected a LandmarkModule or HeatmapNet, got {type(module_or_net)}")
    architecture = net.config()
    meta = {**base, **hparams}
    for key in _ARCHITECTURE_KEYS:
        given = meta.get(key)
        if given is not None and _plain(given) != _plain(architecture[key]):
            raise ValueError(
                f"hparams[{key!r}] = {given!r} but the network has {architecture[key]!r}"
            )
    meta.update(architecture)
    missing = [k for k in ("landmark_names", "input_size", "sigma") if meta.get(k) is None]
    if missing:
        raise ValueError(f"hparams lack {', '.join(missing)}")
    if len(meta["landmark_names"]) != net.n_landmarks:
        raise ValueError(f"{len(meta['landmark_names'])} names for {net.n_landmarks} landmarks")
    state = {
        k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
        for k, v in net.state_dict().items()
    }
    torch.save({"format": CHECKPOINT_FORMAT, "state_dict": state, "hparams": _plain(meta)}, path)


def load_landmark_model(
    path: str | PathLike, *, map_location: str | torch.device = "cpu"
) -> tuple[HeatmapNet, dict]:
    """Read a file written by :func:`save_landmark_model`: a float32 net in eval mode and its
    hyperparameters (``landmark_names``, ``input_size``, ``output_stride``, ``sigma``, ...)."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(f"{path} is not a landmark model checkpoint: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        hint = ""
        if isinstance(payload, dict) and "pytorch-lightning_version" in payload:
            hint = (
                " (it is a Lightning training checkpoint: convert it with save_landmark_model("
                "LandmarkModule.load_from_checkpoint(path), ...))"
            )
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint{hint}")
    hparams = payload["hparams"]
    net = HeatmapNet(
        hparams["n_landmarks"],
        encoder=hparams["encoder"],
        in_channels=hparams["in_channels"],
        encoder_indices=tuple(hparams["encoder_indices"]),
        decoder_channels=hparams["decoder_channels"],
        output_stride=hparams["output_stride"],
    )
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    net.load_state_dict(state)
    return net.to(map_location).eval(), hparams
