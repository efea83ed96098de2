"""The multi-task view embedding: network, loss, scaler, view sampling, fitting, extraction.

Mechanics are tested with timm's tiny ``resnet10t`` on 32 px views; one test builds the real
ResNet-50 net. Everything runs on Lightning's ``auto`` accelerator (the CPU here).
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger

from face_health.embedding.model import (
    EmbeddingModule,
    EmbeddingNet,
    TargetScaler,
    ViewDataModule,
    as_pil_rgb,
    fit_embedding_model,
    masked_multitask_loss,
    subject_embeddings,
    view_transform,
)

TINY = "resnet10t"
SIZE = 32
NAMES = ["age", "bmi", "smoking", "obesity"]
KINDS = ["regression", "regression", "binary", "condition"]
VIEW_NAMES = ["front"] + [
    f"{direction}_{angle}"
    for angle in (15, 30, 45)
    for direction in ("yaw_left", "yaw_right", "pitch_up", "pitch_down")
]
SPLIT_OF = {f"S{i:02d}": s for i, s in enumerate(["train"] * 4 + ["validation"] * 2 + ["test"] * 2)}


def make_views(subjects: list[str], names: list[str] = VIEW_NAMES, seed: int = 0) -> dict:
    """Random 32 px views: arrays for even subjects, loaders for odd ones (both are accepted)."""
    rng = np.random.default_rng(seed)
    views: dict = {}
    for i, subject in enumerate(subjects):
        images = {v: rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for v in names}
        views[subject] = (
            images if i % 2 == 0 else {v: (lambda a=a: as_pil_rgb(a)) for v, a in images.items()}
        )
    return views


def make_targets(subjects: list[str], seed: int = 0) -> pd.DataFrame:
    """Targets with a missing label in every column."""
    rng = np.random.default_rng(seed)
    n = len(subjects)
    table = pd.DataFrame(
        {
            "subject_id": subjects,
            "age": rng.uniform(20, 80, n),
            "bmi": rng.uniform(18, 35, n),
            "smoking": rng.integers(0, 2, n).astype(float),
            "obesity": rng.integers(0, 2, n).astype(float),
        }
    )
    for j, column in enumerate(NAMES):
        table.loc[j % n, column] = np.nan
    return table


def make_data(targets: pd.DataFrame | None = None, **options) -> ViewDataModule:
    subjects = list(SPLIT_OF)
    splits = pd.DataFrame({"subject_id": subjects, "split": list(SPLIT_OF.values())})
    return ViewDataModule(
        make_views(subjects),
        make_targets(subjects) if targets is None else targets,
        splits,
        target_names=NAMES,
        **{"image_size": SIZE, "batch_size": 8, "views_per_subject_per_epoch": 4, **options},
    )


def test_embedding_needs_more_than_100_dimensions() -> None:
    with pytest.raises(ValueError, match="N > 100"):
        EmbeddingNet(100, backbone=TINY)
    net = EmbeddingNet(101, backbone=TINY).eval()
    with torch.inference_mode():
        assert net(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 101)


def test_default_net_is_resnet50_with_128_dimensions() -> None:
    net = EmbeddingNet().eval()
    assert net.encoder.default_cfg["architecture"] == "resnet50"
    assert net.encoder.num_features == 2048
    with torch.inference_mode():
        assert net(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 128)


def test_masked_loss_ignores_missing_labels() -> None:
    torch.manual_seed(0)
    is_binary = torch.tensor([False, False, True, True])
    outputs = torch.randn(6, 4, requires_grad=True)
    targets = torch.tensor(
        [[0.5, -1.0, 1.0, 0.0], [np.nan, 0.3, 0.0, 1.0], [1.2, np.nan, np.nan, 0.0]]
        + [[-0.4, 2.0, 1.0, np.nan], [0.0, 0.1, np.nan, 1.0], [np.nan, np.nan, 0.0, 1.0]]
    )
    present = ~torch.isnan(targets)
    loss, per_target, counts = masked_multitask_loss(outputs, targets, is_binary)
    loss.backward()
    assert torch.isfinite(outputs.grad).all()
    assert (outputs.grad[~present] == 0).all()  # missing labels pull on nothing

    garbage = torch.where(present, targets, torch.full_like(targets, 1e6))
    noisy_outputs = torch.where(present, outputs, torch.full_like(outputs, -1e4))
    same, _, _ = masked_multitask_loss(noisy_outputs, garbage, is_binary, mask=present)
    assert torch.allclose(loss, same)

    expected = 0.0
    for j in range(4):
        o, t = outputs[present[:, j], j], targets[present[:, j], j]
        expected += F.binary_cross_entropy_with_logits(o, t) if is_binary[j] else F.mse_loss(o, t)
    assert torch.allclose(loss, expected)
    assert counts.tolist() == [4, 4, 4, 5]

    # A target with no label in the batch is skipped, not NaN.
    targets[:, 1] = np.nan
    loss, per_target, _ = masked_multitask_loss(outputs, targets, is_binary)
    assert torch.isfinite(loss) and torch.isnan(per_target[1])
    empty, _, _ = masked_multitask_loss(outputs, torch.full_like(targets, np.nan), is_binary)
    empty.backward()  # still a graph: a batch without any label does not break training
    assert empty.item() == 0.0


def test_scaler_is_fitted_on_training_subjects_only() -> None:
    targets = make_targets(list(SPLIT_OF))
    data = make_data(targets)
    train = [s for s, split in SPLIT_OF.items() if split == "train"]
    assert data.scaler.fitted_on == train
    assert not set(data.scaler.fitted_on) & {s for s, p in SPLIT_OF.items() if p != "train"}
    train_age = targets.set_index("subject_id").loc[train, "age"]
    assert data.scaler.mean_[0] == pytest.approx(train_age.mean())
    assert data.scaler.scale_[0] == pytest.approx(train_age.std(ddof=0))
    assert list(data.scaler.mean_[2:]) == [0.0, 0.0] and list(data.scaler.scale_[2:]) == [1, 1]

    changed = targets.copy()
    changed.loc[changed["subject_id"] == "S07", ["age", "bmi"]] = [1e4, 1e3]  # a test subject
    other = make_data(changed).scaler
    np.testing.assert_array_equal(other.mean_, data.scaler.mean_)
    np.testing.assert_array_equal(other.scale_, data.scaler.scale_)

    scaled = data.scaler.transform(targets)
    assert scaled[NAMES].isna().equals(targets[NAMES].isna())  # missing stays missing
    pd.testing.assert_series_equal(scaled["smoking"], targets["smoking"])  # binary passes
    back = data.scaler.inverse_transform(scaled)
    np.testing.assert_allclose(back[NAMES].to_numpy(), targets[NAMES].to_numpy())
    with pytest.raises(RuntimeError, match="not fitted"):
        TargetScaler(NAMES).transform(targets)


def drawn_views(data: ViewDataModule, epoch: int) -> list[tuple[str, str]]:
    loader = data.train_dataloader()
    loader.sampler.set_epoch(epoch)  # what Lightning's fit loop does before each epoch
    return [pair for b in loader for pair in zip(b["subject_id"], b["view"], strict=True)]


def test_random_views_differ_between_epochs_and_repeat_across_runs() -> None:
    data = make_data()
    first, second = drawn_views(data, 0), drawn_views(data, 1)
    assert set(first) != set(second)
    for epoch in (first, second):
        assert len(epoch) == len(set(epoch)) == 4 * 4  # 4 distinct views per training subject
        assert {s for s, _ in epoch} == {s for s, p in SPLIT_OF.items() if p == "train"}
    rerun = make_data()
    assert drawn_views(rerun, 0) == first and drawn_views(rerun, 1) == second
    assert drawn_views(make_data(seed=1), 0) != first

    steps = [type(t).__name__ for t in data.train_dataloader().dataset.transform.transforms]
    assert "RandomResizedCrop" in steps and "RandomHorizontalFlip" not in steps  # views differ
    flipping = make_data(horizontal_flip=True).train_dataloader().dataset.transform.transforms
    assert "RandomHorizontalFlip" in [type(t).__name__ for t in flipping]

    batch = next(iter(data.val_dataloader()))
    assert batch["images"].shape == (8, 3, SIZE, SIZE)
    expected = ["front", "pitch_down_15", "pitch_up_15", "yaw_left_15", "yaw_right_15"]
    assert data.validation_views == expected
    assert batch["view"][:5] == expected
    assert len(data.predict_dataloader().dataset) == len(SPLIT_OF) * len(VIEW_NAMES)


def test_fast_dev_run_fit_with_missing_labels() -> None:
    data = make_data()
    module, metrics = fit_embedding_model(
        data,
        module_options={"target_names": NAMES, "backbone": TINY, "embedding_dim": 101},
        trainer_options={"fast_dev_run": True, "enable_model_summary": False},
    )
    assert isinstance(module, EmbeddingModule) and not module.training
    assert math.isfinite(metrics["best_val_loss"]) and metrics["train_seconds"] > 0
    logged = module.trainer.callback_metrics
    assert {"train_loss", "val_loss", "val_mae_age", "val_bce_smoking"} <= set(logged)
    assert module.hparams.target_kinds == KINDS
    assert module.target_scale[0] == pytest.approx(data.scaler.scale_[0])


def test_fit_from_an_encoder_file_reloads_the_best_checkpoint(tmp_path: Path) -> None:
    encoder_file = tmp_path / "encoder.pt"
    torch.save(EmbeddingNet(101, backbone=TINY).encoder.state_dict(), encoder_file)
    options = {"target_names": NAMES, "backbone": TINY, "embedding_dim": 101, "max_epochs": 1}
    options["checkpoint_path"] = str(encoder_file)
    trainer = {"limit_train_batches": 1, "limit_val_batches": 1, "num_sanity_val_steps": 0}
    logger = CSVLogger(tmp_path, name="fit")  # hyperparameters of module and data must merge
    module, metrics = fit_embedding_model(
        make_data(), module_options=options, trainer_options=trainer, logger=logger
    )
    assert metrics["epochs"] == 1 and math.isfinite(metrics["best_val_loss"])
    logged = pd.read_csv(Path(logger.log_dir) / "metrics.csv")
    assert {"train_loss", "val_loss", "val_mae_age", "val_bce_obesity"} <= set(logged.columns)
    assert module.hparams.checkpoint_path == str(encoder_file)
    assert isinstance(pickle.loads(pickle.dumps(module)), EmbeddingModule)  # Kedro pickles it


def test_subject_embeddings_mean_and_concat() -> None:
    names = ["front", "yaw_left_15", "pitch_up_15"]
    views = make_views(["A", "B", "C"], names)
    torch.manual_seed(0)
    module = EmbeddingModule(NAMES, KINDS, backbone=TINY, embedding_dim=101).eval()

    mean = subject_embeddings(module, views, image_size=SIZE, batch_size=4)
    assert mean.shape == (3, 1 + 101)
    assert list(mean.columns[:3]) == ["subject_id", "emb_000", "emb_001"]
    assert mean.columns[-1] == "emb_100" and mean["subject_id"].tolist() == ["A", "B", "C"]
    to_tensor = view_transform(SIZE)
    images = torch.stack([to_tensor(as_pil_rgb(views["B"][v])) for v in names])
    with torch.inference_mode():
        direct = module.net.cpu()(images).mean(dim=0).numpy()
    np.testing.assert_allclose(mean.iloc[1, 1:].to_numpy(float), direct, rtol=1e-4, atol=1e-5)

    concat = subject_embeddings(module, views, image_size=SIZE, aggregate="concat")
    assert concat.shape == (3, 1 + 3 * 101)
    assert concat.columns[1] == "emb_front_000" and concat.columns[-1] == "emb_yaw_left_15_100"

    del views["C"]["yaw_left_15"]
    with pytest.raises(ValueError, match="yaw_left_15"):
        subject_embeddings(module, views, image_size=SIZE, aggregate="concat")
    with pytest.raises(ValueError, match="aggregate"):
        subject_embeddings(module, views, image_size=SIZE, aggregate="max")


def test_encoder_weights_from_a_local_checkpoint(tmp_path: Path) -> None:
    net = EmbeddingNet(101, backbone=TINY).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    torch.save(net.encoder.state_dict(), tmp_path / "encoder.pt")
    loaded = EmbeddingNet(101, backbone=TINY, checkpoint_path=str(tmp_path / "encoder.pt"))
    with torch.inference_mode():
        torch.testing.assert_close(loaded.eval().encoder(x), net.encoder(x))
        assert not torch.equal(loaded(x), net(x))  # only the encoder came from the file
    torch.save(net.state_dict(), tmp_path / "net.pt")
    whole = EmbeddingNet(101, backbone=TINY, checkpoint_path=str(tmp_path / "net.pt")).eval()
    with torch.inference_mode():
        torch.testing.assert_close(whole(x), net(x))

    with pytest.raises(FileNotFoundError, match="does not exist"):
        EmbeddingNet(101, backbone=TINY, checkpoint_path=str(tmp_path / "missing.pt"))
    torch.save(EmbeddingNet(101, backbone="resnet18").encoder.state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ValueError, match="does not match the resnet10t encoder"):
        EmbeddingNet(101, backbone=TINY, checkpoint_path=str(tmp_path / "r18.pt"))
