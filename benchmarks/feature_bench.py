"""Benchmark: seconds per scan for regions + radiomics, and ResNet-50 throughput on this CPU.

Run by hand after a default run of data_engineering (it reads the aligned faces):

    .venv/bin/python benchmarks/feature_bench.py --subjects 20

- regions + radiomics: ``segment_regions`` + ``subject_radiomics`` on aligned faces from
  ``data/03_primary``, one process, one scan at a time (the pipeline runs one per core).
- ResNet-50 (timm, 112 px, batch 16): training images/s (forward + backward + AdamW step)
  and embedding images/s (forward, inference mode), with torch's default threads.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from face_health import schema
from face_health.alignment.similarity import landmark_table_to_dict
from face_health.datasets import MeshDataset
from face_health.embedding.model import EmbeddingNet
from face_health.omics.radiomics import subject_radiomics
from face_health.omics.regions import segment_regions

ROOT = Path(__file__).resolve().parents[1]


def regions_and_radiomics(data: Path, n: int) -> dict[str, float]:
    meshes = sorted((data / "03_primary" / "aligned_meshes").glob("*.glb"))[:n]
    centroids = json.loads((data / "06_models" / "template_region_centroids.json").read_text())
    centroids = {r: np.asarray(c) for r, c in centroids.items()}
    seg, rad = [], []
    for path in meshes:
        mesh = MeshDataset(filepath=str(path)).load()
        table = pd.read_csv(data / "03_primary" / "aligned_landmarks" / f"{path.stem}.csv")
        t0 = time.perf_counter()
        region_map = segment_regions(mesh, landmark_table_to_dict(table))
        t1 = time.perf_counter()
        subject_radiomics(
            mesh,
            {r: region_map.faces_of(r) for r in schema.REGIONS},
            template_centroids=centroids,
        )
        t2 = time.perf_counter()
        seg.append(t1 - t0)
        rad.append(t2 - t1)
    return {
        "subjects": len(meshes),
        "regions_s_per_scan": round(float(np.mean(seg)), 3),
        "radiomics_s_per_scan": round(float(np.mean(rad)), 3),
        "total_s_per_scan": round(float(np.mean(seg) + np.mean(rad)), 3),
    }


def resnet_throughput(size: int = 112, batch: int = 16, steps: int = 6) -> dict[str, float]:
    net = EmbeddingNet(128)
    head = torch.nn.Linear(128, 18)
    optimiser = torch.optim.AdamW([*net.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(batch, 3, size, size)
    y = torch.randn(batch, 18)
    net.train()
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()  # the first step warms up
        optimiser.zero_grad()
        torch.nn.functional.mse_loss(head(net(x)), y).backward()
        optimiser.step()
    train = steps * batch / (time.perf_counter() - t0)
    net.eval()
    with torch.inference_mode():
        net(x)
        t0 = time.perf_counter()
        for _ in range(steps):
            net(x)
    embed = steps * batch / (time.perf_counter() - t0)
    return {
        "image_size": size,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "train_images_per_s": round(train, 1),
        "embed_images_per_s": round(embed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/features.json")
    args = parser.parse_args()
    result = {
        "regions_radiomics": regions_and_radiomics(args.data, args.subjects),
        "resnet50": resnet_throughput(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
