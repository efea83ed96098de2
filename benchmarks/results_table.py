"""The README's prediction table from the files a training run wrote (no numbers typed by hand).

Reads the newest ``data/08_reporting/test_metrics.csv/<version>/``, the newest
``ablation_metrics.csv/<version>/`` and ``benchmarks/results/oracle_metrics.csv`` (written by
``oracle_bench.py``) and prints the Markdown table: MLP (both) with its 95 % interval, the
two baselines, the latent oracle and the global / local ablation, one headline metric per
target. Also prints where the MLP fails to beat the mean baseline.

    .venv/bin/python benchmarks/results_table.py [--data data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from face_health import schema

ROOT = Path(__file__).resolve().parents[1]


def newest(folder: Path) -> pd.DataFrame:
    """The newest version of a versioned Kedro CSV dataset (``<name>.csv/<version>/``)."""
    files = sorted(folder.glob(f"*/{folder.name}"))
    if not files:
        raise FileNotFoundError(f"no versions under {folder}: run the training pipeline first")
    return pd.read_csv(files[-1])


def headline(target: schema.Target) -> list[str]:
    if target.kind != "regression":
        return ["auroc"]
    return ["mae", "pearson_r"] if target.name == "age" else ["pearson_r"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    args = parser.parse_args()
    test = newest(args.data / "08_reporting" / "test_metrics.csv").set_index(
        ["target", "model", "metric"]
    )
    ablation = newest(args.data / "08_reporting" / "ablation_metrics.csv").set_index(
        ["target", "model", "metric"]
    )
    oracle_file = ROOT / "benchmarks" / "results" / "oracle_metrics.csv"
    oracle = pd.read_csv(oracle_file).set_index(["target", "model", "metric"])

    def cell(table: pd.DataFrame, key: tuple, interval: bool = False) -> str:
        if key not in table.index or pd.isna(table.loc[key, "value"]):
            return "n/a (constant)" if key[1] == "mean" and key[2] == "pearson_r" else "n/a"
        row = table.loc[key]
        text = f"{row['value']:.2f}"
        if interval:
            text += f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        return text

    print(
        "| target | metric | MLP (both) [95% CI] | ridge / logistic | mean / prevalence "
        "| latent oracle (MLP) | MLP global | MLP local |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for target in schema.TARGETS:
        unit = target.unit if target.kind == "regression" else "yes/no"
        for metric in headline(target):
            t = target.name
            cells = [
                cell(test, (t, "mlp", metric), interval=True),
                cell(test, (t, "linear", metric), interval=True),
                cell(test, (t, "mean", metric), interval=True),
                cell(oracle, (t, "mlp", metric)),
                cell(ablation, (t, "mlp_global", metric)),
                cell(ablation, (t, "mlp_local", metric)),
            ]
            print(f"| {t} ({unit}) | {metric} | " + " | ".join(cells) + " |")

    print("\nWhere the MLP does not beat the mean baseline:")
    for target in schema.TARGETS:
        t = target.name
        if target.kind == "regression":
            mlp, mean = test.loc[(t, "mlp", "mae"), "value"], test.loc[(t, "mean", "mae"), "value"]
            if mlp >= mean:
                print(f"- {t}: MAE {mlp:.2f} vs {mean:.2f} {target.unit}")
            if test.loc[(t, "mlp", "r2"), "value"] < 0:
                print(f"- {t}: R2 {test.loc[(t, 'mlp', 'r2'), 'value']:.2f} (below 0)")
        elif test.loc[(t, "mlp", "auroc"), "ci_low"] <= 0.5:
            row = test.loc[(t, "mlp", "auroc")]
            print(f"- {t}: AUROC {row['value']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]")


if __name__ == "__main__":
    main()
