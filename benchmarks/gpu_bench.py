"""Benchmark on the accelerator present: ResNet-50 training and embedding, landmark seconds a scan.

Issue 16 (item 4): one script, ready to run on a GPU machine (and on this CPU), that measures
in under 5 minutes, on ``--device`` (``auto``: CUDA when there is one, else the CPU):

(a) ResNet-50 training images/s: forward + backward + AdamW step of the project's own
    ``EmbeddingModule`` (timm ``resnet50``, ``pretrained=False``, the 128-d projection and
    the multi-task heads of ``schema.TARGETS``, the masked multi-task loss, the optimiser of
    its ``configure_optimizers``), built from ``conf/base`` ``embedding.module``. Variants
    from ``resnet_speed_bench.VARIANTS``: the project's setting (channels-last + bfloat16
    autocast, Lightning's ``bf16-mixed``: fp32 weights and AdamW, autocast around the
    forward pass and the loss) and fp32 for comparison, at 96 px (the pipeline's size) and
    224 px. The first ``--warmup`` steps are not counted; CUDA is synchronised before every
    clock reading.
(b) ResNet-50 embedding images/s: the module's forward pass in inference mode under the same
    autocast as ``embedding.model._embed``. Images are random and already on the device: this
    is the network's throughput, not the data loader's.
(c) Landmark seconds per scan: ``--scans`` subjects simulated on the fly
    (``synthetic.write_cohort``, the same call as ``face-health simulate --n 4 --seed 5 --jobs
    1``), ingested as the pipeline does (``ingest_scan`` with the ``ingest`` settings, then
    ``storage.as_stored``), then ``detector.detect_one`` (one torch thread, as the pipeline's
    workers) with the shipped checkpoint: ``landmarks.method: cnn`` (CNN alone) and ``fit``
    (CNN + model fit, the pipeline's default). The first scan is run once first, untimed.
    The detector's network runs where ``DetectorSettings.device`` says (``auto``: a CUDA GPU
    when torch sees one); the views are rendered on the CPU either way. The output says
    where the network ran.

``--quick`` (the default on the CPU) takes fewer steps so that the CPU run ends in about 3
minutes on 2 cores. Usage::

    .venv/bin/python benchmarks/gpu_bench.py                  # auto device
    .venv/bin/python benchmarks/gpu_bench.py --device cuda --sizes 96 224 --batch 256

Prints one table (Markdown) and writes ``benchmarks/results/gpu_bench_<device>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

import dataclasses  # noqa: E402

# Beside this file: the fit benchmark's landmark-table helper, the CPU benchmark's variants.
import landmark_fit_bench  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from resnet_speed_bench import VARIANTS  # noqa: E402

from face_health import schema  # noqa: E402
from face_health.config import base_section  # noqa: E402
from face_health.embedding.model import EmbeddingModule, masked_multitask_loss  # noqa: E402
from face_health.ingest.scan import ingest_scan  # noqa: E402
from face_health.ingest.storage import as_stored  # noqa: E402
from face_health.landmarks.detector import LandmarkDetector, detect_one  # noqa: E402
from face_health.synthetic import CohortSettings, subject_ids, write_cohort  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: Measured by default: the pipeline's setting, and fp32 to compare it with.
DEFAULT_VARIANTS = ("fp32", "channels_last+bf16")
#: (warm-up steps, timed steps) per measurement.
STEPS = {"quick": (1, 3), "full": (3, 15)}
DEFAULT_BATCH = {"cpu": 32, "cuda": 256}
SCANS = (".obj", ".ply")  # the simulator's scan files (beside them: textures)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device (torch.cuda.is_available())")
    return torch.device(name)


def device_facts(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:  # Linux: the model name; platform.processor() is often empty there
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts: dict[str, Any] = {
        "device": device.type,
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts |= {
            "device_name": torch.cuda.get_device_name(device),
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "bf16_supported": bool(torch.cuda.is_bf16_supported()),
        }
    else:
        facts["device_name"] = facts["cpu"]
    return facts


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_module(variant: str, device: torch.device) -> EmbeddingModule:
    """The pipeline's ``EmbeddingModule`` (``embedding.module`` of ``conf/base``, the targets
    of ``schema``) with the variant's memory format and precision."""
    channels_last, bf16 = VARIANTS[variant]
    names = list(schema.TARGET_NAMES)
    options = {
        **base_section("embedding").module,
        "channels_last": channels_last,
        "precision": "bf16-mixed" if bf16 else "32-true",
    }
    kinds = [schema.TARGET_BY_NAME[n].kind for n in names]
    return EmbeddingModule(names, kinds, **options).to(device)


def _random_batch(module: EmbeddingModule, batch: int, size: int, device: torch.device):
    generator = torch.Generator().manual_seed(batch * 1000 + size)
    images = torch.randn(batch, 3, size, size, generator=generator)
    targets = torch.randn(batch, len(module.hparams.target_names), generator=generator)
    binary = module.heads.is_binary.cpu()
    targets[:, binary] = (targets[:, binary] > 0).float()
    return images.to(device), targets.to(device)


def _timed(step, device: torch.device, warmup: int, steps: int) -> float:
    """Seconds of ``steps`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - start


def resnet_throughput(
    variant: str, size: int, batch: int, device: torch.device, warmup: int, steps: int
) -> dict[str, Any]:
    """Training and embedding images/s of one variant at ``size`` px and ``batch`` images."""
    torch.manual_seed(0)
    module = build_module(variant, device)
    bf16 = module.hparams.precision == "bf16-mixed"
    optimiser = module.configure_optimizers()["optimizer"]
    images, targets = _random_batch(module, batch, size, device)
    is_binary = module.heads.is_binary

    def train_step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = masked_multitask_loss(module.heads(module(images)), targets, is_binary)[0]
        loss.backward()
        optimiser.step()

    def embed_step() -> None:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            module(images).float()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    module.train()
    train_s = _timed(train_step, device, warmup, steps)
    module.eval()
    embed_s = _timed(embed_step, device, warmup, steps)
    result = {
        "variant": variant,
        "image_size": size,
        "batch": batch,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "train_images_per_s": round(steps * batch / train_s, 1),
        "embed_images_per_s": round(steps * batch / embed_s, 1),
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return result


def resnet_with_fallback(
    variant: str, size: int, batch: int, device: torch.device, warmup: int, steps: int
) -> dict[str, Any]:
    """``resnet_throughput``, halving the batch while the GPU runs out of memory."""
    while True:
        try:
            result = resnet_throughput(variant, size, batch, device, warmup, steps)
            if device.type == "cuda":  # the module and its batch are gone with the call
                torch.cuda.empty_cache()
            return result
        except torch.cuda.OutOfMemoryError:
            if batch <= 8:
                raise
            torch.cuda.empty_cache()
            print(f"  out of GPU memory at batch {batch}; trying {batch // 2}", flush=True)
            batch //= 2


def landmark_seconds(
    n_scans: int, seed: int, cohort: Path | None, device: str = "auto"
) -> dict[str, Any]:
    """Simulate (unless ``cohort`` is given), ingest and detect landmarks on ``n_scans`` scans."""
    out: dict[str, Any] = {"n_scans": n_scans, "seed": seed}
    with tempfile.TemporaryDirectory(prefix="gpu_bench_") as scratch:
        if cohort is None:
            cohort = Path(scratch) / "cohort"
            print(f"  simulating {n_scans} subjects (seed {seed}, 1 job)", flush=True)
            t0 = time.perf_counter()
            write_cohort(cohort, n_scans, seed, settings=CohortSettings(), n_jobs=1, progress=False)
            out["simulate_s_per_subject"] = round((time.perf_counter() - t0) / n_scans, 2)
        subjects = subject_ids(n_scans)
        ingest = base_section("ingest").as_kwargs()
        meshes, ingest_s = {}, []
        for sid in subjects:
            scan = next(p for p in (cohort / "scans").glob(f"{sid}.*") if p.suffix in SCANS)
            t0 = time.perf_counter()
            mesh, record = ingest_scan_as_pipeline(scan, sid, ingest)
            ingest_s.append(time.perf_counter() - t0)
            if mesh is None:
                raise RuntimeError(f"{sid} failed ingest: {record}")
            meshes[sid] = mesh
        out["ingest_s_per_scan"] = round(float(np.mean(ingest_s)), 3)
        out["vertices"] = [len(m.vertices) for m in meshes.values()]
        names = list(schema.LANDMARK_NAMES)
        truth = {
            s: landmark_fit_bench._xyz(pd.read_csv(cohort / "landmarks" / f"{s}.csv"), names)
            for s in subjects
        }
        detector = LandmarkDetector.from_checkpoint()  # the shipped checkpoint
        detector.settings = dataclasses.replace(detector.settings, device=device)
        landmarks = base_section("landmarks")
        for method in ("cnn", "fit"):
            settings = dataclasses.replace(landmarks, method=method)
            print(f"  landmarks, method {method}: warm-up on {subjects[0]}", flush=True)
            detect_one(meshes[subjects[0]], detector, settings)
            seconds, errors = [], []
            for sid, mesh in meshes.items():
                start = time.perf_counter()
                table = detect_one(mesh, detector, settings)[0]
                seconds.append(time.perf_counter() - start)
                errors.append(
                    np.linalg.norm(landmark_fit_bench._xyz(table, names) - truth[sid], axis=1)
                )
                print(f"    {sid}: {seconds[-1]:.2f} s", flush=True)
            out[method] = {
                "s_per_scan": round(float(np.mean(seconds)), 3),
                "s_max": round(float(np.max(seconds)), 3),
                "mean_error_mm": round(float(np.nanmean(np.concatenate(errors))), 3),
            }
        out["input_px"] = detector.input_size
        out["network_device"] = str(next(detector.net.parameters()).device)
        out["network_threads"] = 1
        out["network_bf16"] = bool(detector.settings.bf16)
    return out


def ingest_scan_as_pipeline(scan: Path, sid: str, options: dict):
    """The ingest node's ``ingest_scan`` call, then the mesh as ``clean_meshes`` stores it."""
    mesh, record = ingest_scan(scan, sid, **options)
    return (None if mesh is None else as_stored(mesh)), record


def _row(what: str, value: str, unit: str, px="", variant="", batch="", extra="") -> list[str]:
    return [what, str(px), variant, str(batch), value, unit, extra]


def table_rows(resnet: list[dict], lm: dict | None) -> list[list[str]]:
    """The table's rows: ResNet-50 images/s (and the ratio to fp32 at the same size), then
    the landmark stage's seconds a scan (and its mean error against the simulator's)."""
    rows = []
    for kind, key in (("training", "train_images_per_s"), ("embedding", "embed_images_per_s")):
        fp32 = {r["image_size"]: r[key] for r in resnet if r["variant"] == "fp32"}
        for r in resnet:
            base = fp32.get(r["image_size"]) if r["variant"] != "fp32" else None
            ratio = f"{r[key] / base:.2f}x" if base else ""
            rows.append(
                _row(f"ResNet-50 {kind}", f"{r[key]:.1f}", "images/s", r["image_size"],
                     r["variant"], r["batch"], ratio)
            )  # fmt: skip
    if not lm:
        return rows
    if "simulate_s_per_subject" in lm:
        rows.append(_row("simulate a subject", f"{lm['simulate_s_per_subject']:.2f}", "s"))
    rows.append(_row("ingest a scan", f"{lm['ingest_s_per_scan']:.2f}", "s/scan"))
    where = f"bf16, network on {lm['network_device']}, 1 thread"
    for method, label in (("cnn", "landmarks, CNN only"), ("fit", "landmarks, CNN + fit")):
        m = lm[method]
        error = f"{m['mean_error_mm']:.2f} mm"
        rows.append(
            _row(label, f"{m['s_per_scan']:.2f}", "s/scan", lm["input_px"], where, "", error)
        )
    fit = lm["fit"]["s_per_scan"] - lm["cnn"]["s_per_scan"]
    rows.append(_row("model fit alone (difference)", f"{fit:.2f}", "s/scan"))
    return rows


def print_table(rows: list[list[str]], facts: dict) -> None:
    header = ["measurement", "px", "variant", "batch", "value", "unit", "vs fp32 / mean error"]
    print(f"\n{facts['device_name']} ({facts['device']}), torch {facts['torch']}")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--quick",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"fewer steps {STEPS['quick']} (warm-up, timed) instead of {STEPS['full']}; "
        "default: on for the CPU, off for CUDA",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 224], help="image px")
    parser.add_argument(
        "--batch", type=int, default=None, help=f"images per step (default {DEFAULT_BATCH})"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (override)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (override)")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(DEFAULT_VARIANTS)
    )
    parser.add_argument("--scans", type=int, default=4, help="simulated scans for landmarks")
    parser.add_argument("--seed", type=int, default=5, help="seed of the simulated scans")
    parser.add_argument(
        "--cohort", type=Path, default=None, help="an existing cohort instead of simulating"
    )
    parser.add_argument("--skip-landmarks", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=None, help="default results/gpu_bench_<device>.json"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    device = pick_device(args.device)
    quick = device.type == "cpu" if args.quick is None else args.quick
    warmup, steps = STEPS["quick" if quick else "full"]
    warmup = warmup if args.warmup is None else args.warmup
    steps = steps if args.steps is None else args.steps
    batch = args.batch or DEFAULT_BATCH[device.type]
    facts = device_facts(device)
    mode = "quick" if quick else "full"
    print(
        f"device {device.type}: {facts['device_name']}; torch {facts['torch']}; "
        f"{mode} ({warmup} warm-up + {steps} timed steps a measurement)",
        flush=True,
    )

    resnet = []
    todo = [(size, v) for size in args.sizes for v in args.variants]
    for i, (size, variant) in enumerate(todo, 1):
        t0 = time.perf_counter()
        r = resnet_with_fallback(variant, size, batch, device, warmup, steps)
        resnet.append(r)
        print(
            f"[{i}/{len(todo)}] ResNet-50 {size} px {variant:<20} batch {r['batch']:>3}: train "
            f"{r['train_images_per_s']:8.1f} img/s, embed {r['embed_images_per_s']:8.1f} img/s "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )

    lm = None
    if not args.skip_landmarks:
        print(f"[landmarks] {args.scans} scans", flush=True)
        t0 = time.perf_counter()
        lm = landmark_seconds(args.scans, args.seed, args.cohort, device.type)
        print(f"[landmarks] done ({time.perf_counter() - t0:.0f} s)", flush=True)

    notes = [
        "ResNet-50: the project's EmbeddingModule (conf/base embedding.module), random images "
        "already on the device; AdamW from its configure_optimizers",
    ]
    if lm and lm["network_device"].split(":")[0] != device.type:
        notes.append(
            f"landmarks: the detector's network ran on {lm['network_device']}, not "
            f"{device.type} (DetectorSettings.device)"
        )
    wall = time.perf_counter() - started
    rows = table_rows(resnet, lm)
    print_table(rows, facts)
    for note in notes:
        print(f"note: {note}")
    print(f"wall time {wall:.0f} s")
    if wall > 300:
        print("note: over the 5-minute budget; use --quick, fewer --sizes or --steps")

    out_path = args.out or RESULTS / f"gpu_bench_{device.type}.json"
    record = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **facts,
        "quick": quick,
        "resnet": resnet,
        "landmarks": lm,
        "notes": notes,
        "wall_s": round(wall, 1),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
