"""Augmentation, Lightning training and the compact checkpoint of the landmark network."""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch

from face_health.landmarks.network import HeatmapNet, decode_heatmaps
from face_health.landmarks.training import (
    Augmentation,
    LandmarkDataModule,
    LandmarkModule,
    augment_batch,
    fit_landmark_model,
    load_landmark_model,
    save_landmark_model,
)

#: Every augmentation off; tests switch on the one they check.
NOTHING = Augmentation(
    brightness=0.0,
    contrast=0.0,
    noise_std=0.0,
    drop_texture=0.0,
    max_holes=0,
    max_shift=0.0,
    max_rotation_deg=0.0,
    flip=0.0,
    texture_lighting=0.0,
)


@pytest.fixture(autouse=True)
def _quiet_lightning() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def blob_views(n: int, *, size: int = 64, k: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Views with a bright blob under each keypoint: landmark 0 in channel 0, the others in
    channel 2 (so the network can tell them apart), dents in the depth channel."""
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(8, size - 9, (n, k, 2)).astype(np.float32)
    images = np.zeros((n, 3, size, size), np.float32)
    images[:, 1] = 1.0
    grid = np.arange(size)
    for i in range(n):
        for j in range(k):
            col, row = keypoints[i, j]
            blob = np.exp(-((grid[None, :] - col) ** 2 + (grid[:, None] - row) ** 2) / 8.0)
            images[i, 0 if j == 0 else 2] += blob
            images[i, 1] -= 0.5 * blob
    return {"images": images, "keypoints": keypoints, "visible": np.ones((n, k), bool)}


def _batch(views: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value) for key, value in views.items()}


def _blob_centre(image: np.ndarray) -> np.ndarray:
    """Sub-pixel centre (col, row) of the brightest blob of ``image (S, S)``."""
    pixels, _ = decode_heatmaps(image[None, None], stride=1)
    return pixels[0, 0]


def test_flip_mirrors_columns_and_swaps_pairs() -> None:
    views = blob_views(4, k=3)
    flipped = augment_batch(
        _batch(views),
        replace(NOTHING, flip=1.0),
        generator=torch.Generator().manual_seed(0),
        flip_pairs=[(0, 1)],
    )
    torch.testing.assert_close(
        flipped["images"], torch.from_numpy(views["images"]).flip(-1), atol=1e-5, rtol=0
    )
    kp = views["keypoints"]
    expected = np.stack([63 - kp[..., 0], kp[..., 1]], axis=-1)[:, [1, 0, 2]]
    np.testing.assert_allclose(flipped["keypoints"].numpy(), expected, atol=1e-4)
    # Landmark 0's blob (channel 0) now lies under the keypoint of landmark 1.
    image = flipped["images"][0, 0].numpy()
    np.testing.assert_allclose(_blob_centre(image), expected[0, 1], atol=0.05)


def test_no_flip_without_pairs() -> None:
    views = blob_views(2)
    out = augment_batch(
        _batch(views), replace(NOTHING, flip=1.0), generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(out["images"], torch.from_numpy(views["images"]))


@pytest.mark.parametrize("rotation", [0.0, 15.0])
def test_translation_and_rotation_keep_blobs_under_keypoints(rotation: float) -> None:
    views = blob_views(16, size=64)
    augmentation = replace(NOTHING, max_shift=0.1, max_rotation_deg=rotation)
    out = augment_batch(_batch(views), augmentation, generator=torch.Generator().manual_seed(3))
    moved = out["keypoints"].numpy()
    assert np.abs(moved - views["keypoints"]).max() > 3.0  # it did move
    checked = 0
    for i in range(16):
        if out["visible"][i, 0] and (moved[i, 0] > 4).all() and (moved[i, 0] < 59).all():
            centre = _blob_centre(out["images"][i, 0].numpy())
            np.testing.assert_allclose(centre, moved[i, 0], atol=0.1)
            checked += 1
    assert checked >= 8


def test_translation_pads_with_background() -> None:
    views = blob_views(8, size=64)
    views["images"][:, 1] -= 0.5  # depth 0.5 everywhere, so padding (depth 1) shows
    out = augment_batch(
        _batch(views), replace(NOTHING, max_shift=0.1), generator=torch.Generator().manual_seed(1)
    )
    shift = (out["keypoints"] - torch.from_numpy(views["keypoints"]))[:, 0].numpy()
    np.testing.assert_allclose(shift, shift.round(), atol=1e-4)  # whole pixels: no blur
    assert np.abs(shift).max() >= 2
    for i, (dx, dy) in enumerate(shift.round().astype(int)):
        image = out["images"][i].numpy()
        moved = np.roll(views["images"][i], (dy, dx), axis=(1, 2))
        cols = slice(dx, None) if dx >= 0 else slice(None, dx)
        rows = slice(dy, None) if dy >= 0 else slice(None, dy)
        np.testing.assert_allclose(image[:, rows, cols], moved[:, rows, cols], atol=1e-5)
        padding = np.ones((64, 64), bool)
        padding[rows, cols] = False
        assert padding.sum() == 64 * 64 - (64 - abs(dx)) * (64 - abs(dy))
        background = np.broadcast_to([[0.0], [1.0], [0.0]], (3, padding.sum()))
        np.testing.assert_array_equal(image[:, padding], background)


def test_keypoints_leaving_the_image_become_invisible() -> None:
    views = blob_views(8, size=64)
    views["keypoints"][:, 0] = [1.0, 1.0]  # in the corner: any shift left or up loses it
    out = augment_batch(
        _batch(views), replace(NOTHING, max_shift=0.1), generator=torch.Generator().manual_seed(0)
    )
    kp = out["keypoints"].numpy()
    inside = ((kp >= 0) & (kp <= 63)).all(-1)
    np.testing.assert_array_equal(out["visible"].numpy(), inside)
    assert not inside[:, 0].all()


def test_default_augmentation_is_deterministic_and_bounded() -> None:
    batch = _batch(blob_views(8))

    def run() -> dict[str, torch.Tensor]:
        return augment_batch(batch, Augmentation(), generator=torch.Generator().manual_seed(7))

    first, second = run(), run()
    for key in first:
        torch.testing.assert_close(first[key], second[key])
    assert torch.isfinite(first["images"]).all()
    assert not torch.equal(first["images"], batch["images"])


def test_data_module_augments_training_batches_only_and_reproducibly() -> None:
    views = blob_views(8)

    def first_batches(training: bool) -> tuple[dict, dict]:
        data = LandmarkDataModule(views, views, batch_size=4, flip_pairs=[(0, 1)], seed=5)
        data.setup("fit")
        data.trainer = SimpleNamespace(training=training)  # what the hook consults
        batch = next(iter(data.train_dataloader()))
        return batch, data.on_after_batch_transfer(batch, 0)

    raw, augmented = first_batches(True)
    raw_again, augmented_again = first_batches(True)
    torch.testing.assert_close(raw, raw_again)
    torch.testing.assert_close(augmented, augmented_again)
    assert not torch.equal(augmented["images"], raw["images"])
    raw, untouched = first_batches(False)
    torch.testing.assert_close(untouched, raw)


def test_uint8_images_are_scaled() -> None:
    views = blob_views(4)
    views["images"] = (views["images"].clip(0, 1) * 255).astype(np.uint8)
    data = LandmarkDataModule(views, views, batch_size=4)
    images = next(iter(data.val_dataloader()))["images"]
    assert images.dtype == torch.float32
    assert 0.9 < images.max() <= 1.0


def test_fast_dev_run() -> None:
    views = blob_views(8, k=4)
    module = LandmarkModule(4, [f"p{i}" for i in range(4)], input_size=64, decoder_channels=16)
    data = LandmarkDataModule(views, views, batch_size=4, flip_pairs=[(1, 2)])
    trainer = L.Trainer(
        fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False
    )
    trainer.fit(module, datamodule=data)
    metrics = trainer.callback_metrics
    assert {"train_loss", "val_loss", "val_px_error"} <= set(metrics)
    assert all(torch.isfinite(metrics[name]) for name in ("train_loss", "val_loss"))


def test_short_fit_learns_toy_keypoints(tmp_path: Path) -> None:
    train, val = blob_views(48, seed=0), blob_views(16, seed=1)
    options = {"input_size": 64, "decoder_channels": 32}
    torch.manual_seed(0)  # the untrained net's error depends on its random weights
    untrained = LandmarkModule(2, **options)
    evaluator = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    data = LandmarkDataModule(train, val, batch_size=8, augment=False)
    start = evaluator.validate(untrained, datamodule=data, verbose=False)[0]["val_px_error"]

    module, metrics = fit_landmark_model(
        train,
        val,
        module_options={**options, "max_epochs": 5, "lr": 3e-3},
        trainer_options={"accelerator": "cpu", "enable_progress_bar": False},
        data_options={"batch_size": 8, "augment": False},
        checkpoint_dir=str(tmp_path),
    )
    assert start > 10.0
    assert metrics["val_px_error"] < 1.0 < 0.1 * start
    assert metrics["epochs"] == 5
    assert metrics["best_val_loss"] > 0
    assert not module.training
    assert list(tmp_path.glob("*.ckpt"))


def test_save_load_roundtrip(tmp_path: Path) -> None:
    names = [f"p{i}" for i in range(33)]
    module = LandmarkModule(33, names, input_size=128)
    path = tmp_path / "landmarks.pt"
    save_landmark_model(module, path, hparams={"note": "test"})
    assert path.stat().st_size < 8e6
    net, hparams = load_landmark_model(path)
    assert isinstance(net, HeatmapNet) and not net.training
    assert next(net.parameters()).dtype == torch.float32
    assert hparams["landmark_names"] == names
    assert hparams["input_size"] == 128 and hparams["output_stride"] == 2
    assert hparams["sigma"] == 1.5 and hparams["encoder_indices"] == [0, 1, 2, 3]
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        expected, actual = module.net.eval()(x), net(x)
    torch.testing.assert_close(actual, expected, atol=2e-3, rtol=1e-2)


def test_save_bare_net_needs_names_and_checks_architecture(tmp_path: Path) -> None:
    net = HeatmapNet(2, decoder_channels=16)
    with pytest.raises(ValueError, match="landmark_names"):
        save_landmark_model(net, tmp_path / "a.pt", hparams={"input_size": 64, "sigma": 1.5})
    with pytest.raises(ValueError, match="output_stride"):
        save_landmark_model(
            net,
            tmp_path / "a.pt",
            hparams={
                "landmark_names": ["a", "b"],
                "input_size": 64,
                "sigma": 1.5,
                "output_stride": 4,
            },
        )
    save_landmark_model(
        net, tmp_path / "a.pt", hparams={"landmark_names": ["a", "b"], "input_size": 64, "sigma": 1}
    )
    loaded, hparams = load_landmark_model(tmp_path / "a.pt")
    assert hparams["decoder_channels"] == 16 and loaded.n_landmarks == 2


def test_load_rejects_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a"):
        load_landmark_model(other)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a landmark model checkpoint"):
        load_landmark_model(text)


def test_fine_tuning_starts_from_the_given_weights(tmp_path: Path) -> None:
    train, val = blob_views(16, seed=0), blob_views(8, seed=1)
    options = {"input_size": 64, "decoder_channels": 32, "max_epochs": 1, "lr": 1e-12}
    start = LandmarkModule(2, ["a", "b"], **options)
    torch.nn.init.constant_(start.net.head.weight, 0.123)
    path = tmp_path / "start.pt"
    save_landmark_model(start, path, hparams={})
    module, _ = fit_landmark_model(
        train,
        val,
        module_options=options,
        trainer_options={"accelerator": "cpu", "enable_progress_bar": False},
        data_options={"batch_size": 8, "augment": False},
        init_weights=path,
    )
    torch.testing.assert_close(module.net.head.weight, start.net.head.weight, atol=1e-3, rtol=0)

    other = LandmarkModule(3, ["a", "b", "c"], **options)
    save_landmark_model(other, tmp_path / "other.pt", hparams={})
    with pytest.raises(ValueError, match="does not fit this network"):
        fit_landmark_model(
            train,
            val,
            module_options=options,
            trainer_options={"accelerator": "cpu", "enable_progress_bar": False},
            data_options={"batch_size": 8, "augment": False},
            init_weights=tmp_path / "other.pt",
        )


def test_retraining_on_annotated_scans_can_start_from_the_shipped_network(tmp_path: Path) -> None:
    """The pipeline's retrain path (``landmarks.train: true``): render views of annotated
    scans and fine-tune the shipped network, with the real-scan variety switched on."""
    import pandas as pd

    from face_health.ingest.scan import read_scan
    from face_health.landmarks.detector import read_checkpoint
    from face_health.landmarks.fit import train_checkpoint
    from face_health.landmarks.views import REAL_SCAN_VARIETY
    from face_health.synthetic import write_cohort

    cohort = tmp_path / "cohort"
    write_cohort(cohort, 3, 4242, progress=False)
    ids = ["S0001", "S0002", "S0003"]
    from functools import partial

    scans = {s: partial(read_scan, cohort / "scans" / f"{s}.obj") for s in ids}  # picklable
    tables = {s: pd.read_csv(cohort / "landmarks" / f"{s}.csv") for s in ids}
    from face_health.config import LandmarkSettings, project_parameters

    options = project_parameters("base")["landmarks"]
    options["views"] = {"size": 64, "views_per_scan": 2, **REAL_SCAN_VARIETY}
    options["fit"] |= {
        "module": {"max_epochs": 1, "lr": 1e-4},
        "trainer": {
            **options["fit"]["trainer"],
            "accelerator": "cpu",
            "enable_progress_bar": False,
        },
        "data": {"batch_size": 2},
        "init_weights": "shipped",
    }
    checkpoint, metrics = train_checkpoint(
        {s: scans[s] for s in ids[:2]},
        {ids[2]: scans[ids[2]]},
        tables,
        LandmarkSettings.from_parameters(options),
    )
    assert metrics["n_train_views"] == 4 and metrics["n_val_views"] == 2
    provenance = checkpoint["provenance"]  # where the checkpoint came from, inside the file
    assert provenance["train_subjects"] == sorted(ids[:2])
    assert provenance["validation_subjects"] == [ids[2]]
    assert provenance["settings"]["fit"]["init_weights"] == "shipped"
    assert provenance["validation_metrics"]["val_px_error"] == metrics["val_px_error"]
    assert provenance["git_commit"]
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    reloaded = torch.load(buffer, map_location="cpu", weights_only=True)  # plain values only
    assert reloaded["provenance"] == provenance
    shipped = read_checkpoint()
    assert checkpoint["hparams"]["landmark_names"] == shipped["hparams"]["landmark_names"]
    # one small step from the shipped weights, not a fresh start
    name = next(k for k in shipped["state_dict"] if k.endswith("head.weight"))
    start, now = shipped["state_dict"][name].float(), checkpoint["state_dict"][name].float()
    assert torch.allclose(start, now, atol=5e-3) and not torch.equal(start, now)


def test_texture_lighting_ramps_only_the_texture_foreground() -> None:
    views = blob_views(4, k=3)
    lit = augment_batch(
        _batch(views),
        replace(NOTHING, texture_lighting=0.5),
        generator=torch.Generator().manual_seed(0),
    )["images"].numpy()
    before = views["images"]
    np.testing.assert_allclose(lit[:, :2], before[:, :2], atol=1e-5)  # geometry untouched
    changed = ~np.isclose(lit[:, 2], before[:, 2], atol=1e-5)
    assert changed.any()
    foreground = np.abs(before[:, 2]) > 1e-6
    assert not (changed & ~foreground).any()  # nothing lit where nothing was rendered
    ratio = lit[:, 2][foreground] / before[:, 2][foreground]
    assert ratio.min() >= 0.0 and ratio.max() <= 2.0
