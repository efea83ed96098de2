"""Record the shipped landmark checkpoint's provenance inside the file, after the fact.

Checkpoints trained since issue 13 carry their provenance from training
(``landmarks.fit.checkpoint_provenance``: commit, settings, subjects, validation metrics,
the cohort's generator, version and seed). The shipped one
(``src/face_health/resources/landmarks_synthetic.pt``) was trained before that, in three
steps whose commands and numbers are in ``benchmarks/README.md``; rebuilding it (about 80
minutes on 2 cores) would not change what it is. This script writes that record into the
file, marked ``recorded_after_training: true``, and leaves the weights bit-identical (it
checks). It is idempotent: a second run rewrites the same record.

    .venv/bin/python scripts/record_checkpoint_provenance.py
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

CHECKPOINT = (
    Path(__file__).resolve().parents[1] / "src/face_health/resources/landmarks_synthetic.pt"
)

#: From ``benchmarks/README.md`` ("The shipped landmark checkpoint ...") and the git history
#: of the file: the commit that shipped these weights and the simulator version at that commit.
PROVENANCE = {
    "recorded_after_training": True,
    "recorded_by": "scripts/record_checkpoint_provenance.py",
    "git_commit": "e7c43c928967a9589f1d881b8f54d1089476ab51",
    "trained_at": "2026-12-02",
    "recipe": "benchmarks/README.md: steps 1-3 of `face-health train-landmarks`",
    "steps": [
        "1: from scratch, plain views, 20 epochs, 16 views per scan, --no-reshape "
        "--no-scanner-noise",
        "2: fine-tuned 8 epochs with shape variety and scanner noise, seed 3, lr 5e-4",
        "3: fine-tuned 8 epochs with decimation (half the scans to 3k-20k vertices) and baked "
        "lighting on the texture, seed 3, lr 5e-4, from step 2",
    ],
    "cohort": {
        "generator": "face_health.synthetic",
        "generator_version": 3,
        "n": 300,
        "seed": 1,
        "command": "face-health simulate --n 300 --seed 1 --out /tmp/lmtrain",
    },
    "split": "the seed-1 cohort's own split (make_splits with the training seed): 210 train, "
    "45 validation, 45 test subjects",
    "validation_metrics": {
        "val_px_error": 1.05,
        "cnn_mm_20_validation_scans": 1.62,
        "cnn_plus_fit_mm_20_validation_scans": 0.805,
        "cnn_mm_12_validation_scans_decimated_8k": 1.77,
        "cnn_plus_fit_mm_12_validation_scans_decimated_8k": 0.74,
    },
    "selection": "step 3 over step 2 on the seed-1 cohort's validation split. An earlier "
    "choice (step 1+2 over fine-tuning the height-field checkpoint, and the snapping mode) "
    "was made on the seed-1 cohort's test split (20 subjects), which no pipeline cohort "
    "uses; the default run's cohort (seed 20261126) and the final test cohort were never "
    "looked at.",
}


def main() -> None:
    checkpoint = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    before = {k: v.clone() for k, v in checkpoint["state_dict"].items()}
    checkpoint["provenance"] = PROVENANCE
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    reloaded = torch.load(buffer, map_location="cpu", weights_only=True)
    same = list(reloaded["state_dict"]) == list(before) and all(
        torch.equal(reloaded["state_dict"][k], v) for k, v in before.items()
    )
    if not same or reloaded["provenance"] != PROVENANCE:
        raise SystemExit("the rewritten checkpoint would differ in its weights; not written")
    CHECKPOINT.write_bytes(buffer.getvalue())
    print(f"provenance recorded in {CHECKPOINT} (weights unchanged)")


if __name__ == "__main__":
    main()
