"""Training the landmark heatmap network with Lightning, and its compact checkpoint file.

``LandmarkDataModule`` owns the rendered views (arrays ``images (N, C, S, S)``, ``keypoints
(N, K, 2)`` input pixels ``(col, row)``, ``visible (N, K)`` bool) and augments training
batches on the fly, on the training device, deterministically given its seed (with
:func:`augment_batch` of :mod:`face_health.landmarks.augmentation`).
``LandmarkModule`` trains a :class:`HeatmapNet` towards Gaussian target heatmaps.
``fit_landmark_model`` runs the fit with checkpointing and early stopping on ``val_loss``;
``save_landmark_model`` / ``load_landmark_model`` write and read the few-MB file that the
detector ships.

:func:`run_fit` runs a Lightning fit from inside a Kedro node, on one device or in several
processes that the node starts itself (``ddp_spawn``, ``ddp_fork``; see
:data:`face_health.config.NODE_STRATEGIES`); the embedding's fit uses it too.
"""

from __future__ import annotations

import math
import pickle
import tempfile
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MeanMetric

from face_health.config import SettingsError, check_trainer_options
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
        # Every fit sees the same augmentation stream; each process of a multi-process fit
        # its own (rank 0, the only one on a single device, the seed's).
        rank = getattr(self.trainer, "global_rank", 0) if self.trainer is not None else 0
        self._generator.manual_seed(self.hparams.seed + rank)

    def __getstate__(self) -> dict:
        # torch.multiprocessing cannot send a Generator to a spawned process (ddp_spawn);
        # setup() seeds a fresh one there before any batch is drawn.
        return {**self.__dict__, "_generator": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._generator = torch.Generator().manual_seed(self.hparams.seed)

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
        size = len(batch["images"])
        # sync_dist: the mean over every process of a multi-process fit (no-op on one device)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        return loss

    def _evaluate(self, batch: dict[str, Tensor], stage: str, metric: MeanMetric) -> None:
        loss, heatmaps = self._loss(batch)
        pixels, _ = decode_heatmaps_torch(heatmaps, self.hparams.output_stride)
        distances = (pixels - batch["keypoints"].double()).norm(dim=-1)
        metric.update(distances[batch["visible"]].float())
        size = len(batch["images"])
        self.log(
            f"{stage}_loss", loss, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True
        )
        # a torchmetrics Metric: reduced over the processes by itself
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


#: What ``trainer_options`` of the fits fall back to in a library call: one device (a node
#: passes all three from its parameters, where they are required).
SINGLE_DEVICE = {"accelerator": "auto", "devices": 1, "strategy": "auto"}


class FitOutcome(NamedTuple):
    """What rank 0 knows at the end of a fit: the best checkpoint's path (``""`` when none was
    written, e.g. after ``fast_dev_run``), its monitored score (None without one) and the
    epochs trained."""

    best_model_path: str
    best_model_score: float | None
    epochs: int


class _RankZeroLog(Logger):
    """Stands in for the caller's logger in the processes of a multi-process fit and records
    what rank 0 logs; :func:`run_fit` replays it into the caller's logger after the fit. The
    processes never open the MLflow store: ``ddp_spawn`` would have to pickle the logger (a
    logger class made inside a function does not pickle), and a SQLite connection inherited
    by a forked process is unsafe to use."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple]] = []

    @property
    def name(self) -> str:
        return "rank_zero_log"

    @property
    def version(self) -> int:
        return 0

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("log_hyperparams", (params,)))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append(("log_metrics", (dict(metrics), step)))


class _ReportOutcome(Callback):
    """Rank 0 writes the fit's :class:`FitOutcome` and what :class:`_RankZeroLog` recorded to
    ``path``: of a process that Lightning started, the caller gets back only the last
    weights, the best checkpoint's path and ``callback_metrics``, not the best score nor the
    epochs trained."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        checkpoint = trainer.checkpoint_callback
        score = getattr(checkpoint, "best_model_score", None)
        outcome = FitOutcome(
            str(getattr(checkpoint, "best_model_path", "") or ""),
            None if score is None else float(score),
            int(trainer.current_epoch),
        )
        calls = trainer.logger.calls if isinstance(trainer.logger, _RankZeroLog) else []
        with open(self.path, "wb") as file:
            pickle.dump((outcome, calls), file)


def run_fit(
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    trainer_options: dict[str, Any],
    *,
    logger: Any,
    scratch: str | PathLike,
    steps_per_epoch: int,
) -> tuple[L.Trainer, FitOutcome]:
    """``lightning.Trainer(**trainer_options).fit(module, datamodule)`` as a Kedro node can
    run it, on one device or in several processes.

    ``trainer_options`` must pass :func:`face_health.config.check_trainer_options`. With
    ``strategy: auto`` (one device) the fit runs in this process and logs to ``logger`` as it
    goes. With ``ddp_spawn`` or ``ddp_fork`` Lightning starts ``devices`` processes (gloo on
    CPUs, NCCL on GPUs) and each trains on its share of the batches; rank 0 alone logs, into
    a recorder whose calls are replayed into ``logger`` here after the fit (with Lightning's
    steps); ``module`` gets rank 0's last weights back; checkpoints are rank 0's, written
    where the callbacks say (a local folder every process sees, such as ``scratch``).

    Parameters
    ----------
    logger : a Lightning logger, or None for none
    scratch : an existing folder for rank 0's report
    steps_per_epoch : training batches of an epoch on one device: Lightning's logging
        interval is at most 50 steps and at most one process's epoch (unless set)

    Returns
    -------
    The trainer (``callback_metrics`` are rank 0's) and rank 0's :class:`FitOutcome`.
    """
    check_trainer_options(trainer_options, "trainer_options")
    _check_forkable(trainer_options.get("strategy"))
    report = Path(scratch) / "rank_zero_outcome.pkl"
    callbacks = [*trainer_options.get("callbacks", []), _ReportOutcome(report)]
    trainer = L.Trainer(**{**trainer_options, "callbacks": callbacks, "logger": False})
    launched = trainer.strategy.launcher is not None  # processes of Lightning's own
    if logger:
        trainer.logger = _RankZeroLog() if launched else logger
    if "log_every_n_steps" not in trainer_options:  # avoids Lightning's PossibleUserWarning
        processes = max(1, trainer.num_devices * trainer.num_nodes)
        trainer.log_every_n_steps = max(1, min(50, math.ceil(steps_per_epoch / processes)))
    trainer.fit(module, datamodule=datamodule)
    with open(report, "rb") as file:
        outcome, calls = pickle.load(file)
    if launched and logger:
        for name, args in calls:
            getattr(logger, name)(*args)
        logger.save()
        logger.finalize("success")  # as Lightning does at the end of a fit
    return trainer, outcome


def _check_forkable(strategy: Any) -> None:
    """Refuse a forking strategy in a process that has run a Dask client (a run on
    ``parallel.backend: dask``): its forked ranks hang (measured), so say so instead."""
    from face_health import parallel

    if strategy in ("ddp_fork", "ddp_notebook") and parallel.DASK_USED:
        raise SettingsError(
            f"strategy {strategy}: this process has run a Dask client (parallel.backend: "
            "dask), and processes forked from it hang; use strategy: ddp_spawn"
        )


def _one_device(devices: Any) -> Any:
    """The first of the fit's ``devices``, for work in the calling process."""
    return [devices[0]] if isinstance(devices, (list, tuple)) else 1


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
        ``fast_dev_run``); ``accelerator``, ``devices`` and ``strategy`` default to
        :data:`SINGLE_DEVICE`; several processes with ``strategy`` ``ddp_spawn`` or
        ``ddp_fork`` (:func:`run_fit`)
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
    "val_px_error", "epochs"}`` (``val_px_error`` of the best weights on every validation view,
    measured here on one device, however many trained; ``epochs`` trained).
    """
    images = train["images"]
    module_options = {
        "n_landmarks": int(train["keypoints"].shape[1]),
        "input_size": int(images.shape[-1]),
        "in_channels": int(images.shape[1]),
        **(module_options or {}),
    }
    trainer_options = {**SINGLE_DEVICE, **(trainer_options or {})}
    if "max_epochs" in trainer_options:
        raise ValueError("set max_epochs in module_options: the cosine schedule spans it")
    check_trainer_options(trainer_options, "trainer_options")
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
        _, outcome = run_fit(
            module,
            data,
            {
                "max_epochs": module.hparams.max_epochs,
                "callbacks": [checkpoint, early_stopping],
                "enable_progress_bar": True,
                **trainer_options,
            },
            logger=logger,
            scratch=scratch,
            steps_per_epoch=len(data.train_dataloader()),
        )
        if outcome.best_model_path:  # empty after fast_dev_run, which saves nothing
            module = LandmarkModule.load_from_checkpoint(
                outcome.best_model_path, map_location="cpu"
            )
        # A separate, silent trainer: the final validation is not another logged epoch; on
        # one device of the fit's kind, in this process, over every validation view.
        evaluation_options = {
            k: v
            for k, v in trainer_options.items()
            if k in ("accelerator", "precision", "fast_dev_run", "limit_val_batches")
        }
        evaluator = L.Trainer(
            **{
                "devices": _one_device(trainer_options["devices"]),
                "strategy": "auto",
                "logger": False,
                "enable_progress_bar": False,
                "enable_model_summary": False,
                "enable_checkpointing": False,  # validates only (and no litmodels tip)
                **evaluation_options,
            }
        )
        metrics = evaluator.validate(module, datamodule=data, verbose=False)[0]
    module = module.cpu().eval()
    best = outcome.best_model_score
    return module, {
        "best_val_loss": best if best is not None else float(metrics["val_loss"]),
        "val_px_error": float(metrics["val_px_error"]),
        "epochs": outcome.epochs,
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
