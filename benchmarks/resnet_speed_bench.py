"""ResNet-50 images/s on this CPU: memory format and bfloat16 autocast, training and embedding.

Issue 15 asks for channels-last and bfloat16 autocast *where they are faster on this CPU*;
this measures them before the trainer uses either. For each variant (``fp32`` contiguous,
``channels_last``, ``bf16`` autocast, both) at ``--size`` px and ``--batch`` images:

- training images/s: forward + backward + AdamW step of ``EmbeddingNet`` (timm ResNet-50,
  ``pretrained=False``) and a linear head on an MSE loss, the first ``--warmup`` steps not
  counted;
- embedding images/s: forward in inference mode.

Random images (speed does not depend on them). Every variant is timed ``--repeats`` times,
interleaved (so a load change on a shared machine hits all variants alike), and the median
is reported beside the spread. Usage::

    .venv/bin/python benchmarks/resnet_speed_bench.py --size 112 --batch 32

Writes ``benchmarks/results/resnet_speed.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from face_health.embedding.model import EmbeddingNet

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "fp32": (False, False),
    "channels_last": (True, False),
    "bf16": (False, True),
    "channels_last+bf16": (True, True),
}


def _autocast(bf16: bool):
    if bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def time_variant(
    channels_last: bool, bf16: bool, size: int, batch: int, steps: int, warmup: int
) -> dict[str, float]:
    torch.manual_seed(0)
    net = EmbeddingNet(128)
    head = torch.nn.Linear(128, 18)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    optimiser = torch.optim.AdamW([*net.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    y = torch.randn(batch, 18)
    net.train()
    started = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            started = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        with _autocast(bf16):
            out = head(net(x))
        torch.nn.functional.mse_loss(out.float(), y).backward()
        optimiser.step()
    train = steps * batch / (time.perf_counter() - started)
    net.eval()
    with torch.inference_mode(), _autocast(bf16):
        for _ in range(warmup):
            net(x)
        started = time.perf_counter()
        for _ in range(steps):
            net(x)
    embed = steps * batch / (time.perf_counter() - started)
    return {"train_images_per_s": train, "embed_images_per_s": embed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "resnet_speed.json"
    )
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for repeat in range(args.repeats):
        for name in args.variants:
            cl, bf16 = VARIANTS[name]
            result = time_variant(cl, bf16, args.size, args.batch, args.steps, args.warmup)
            runs[name].append(result)
            print(
                f"repeat {repeat + 1}/{args.repeats} {name:<20} train "
                f"{result['train_images_per_s']:6.1f} img/s, embed "
                f"{result['embed_images_per_s']:6.1f} img/s",
                flush=True,
            )
    summary = {}
    for name, rows in runs.items():
        summary[name] = {
            key: {
                "median": round(float(np.median([r[key] for r in rows])), 1),
                "min": round(float(min(r[key] for r in rows)), 1),
                "max": round(float(max(r[key] for r in rows)), 1),
            }
            for key in ("train_images_per_s", "embed_images_per_s")
        }
    print(f"\n{'variant':<20} {'train img/s':>12} {'embed img/s':>12}  (median of {args.repeats})")
    for name, s in summary.items():
        print(
            f"{name:<20} {s['train_images_per_s']['median']:12.1f} "
            f"{s['embed_images_per_s']['median']:12.1f}"
        )
    out = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor()}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "bf16_supported": bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)()),
        "image_size": args.size,
        "batch": args.batch,
        "steps": args.steps,
        "repeats": args.repeats,
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
