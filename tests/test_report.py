"""The README's final-test block: generated from the result tables, claims only where the
paired interval excludes 0, and the committed README equal to what the committed tables give."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from face_health.evaluation.metrics import evaluate, paired_differences
from face_health.evaluation.report import (
    END,
    RESULT_FILES,
    START,
    block_from_files,
    claims,
    current_block,
    final_test_block,
    replace_block,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "final_test"
CEILINGS = ROOT / "benchmarks" / "results" / "oracle_ceilings.csv"
PAIRS = [("mlp", "linear"), ("mlp", "mean"), ("linear", "mean")]


def _cohort(n: int = 150) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], list[str]]:
    """Four targets: ridge far better than the MLP on age, the MLP better on bmi, both alike
    on smoking, and neither better than chance on anemia."""
    rng = np.random.default_rng(5)
    ids = [f"F{i:04d}" for i in range(n)]
    age = rng.uniform(20, 80, n)
    bmi = rng.normal(24, 3, n)
    smoking = rng.integers(0, 2, n).astype(float)
    anemia = rng.integers(0, 2, n).astype(float)
    truth = pd.DataFrame(
        {"subject_id": ids, "age": age, "bmi": bmi, "smoking": smoking, "anemia": anemia}
    )
    signal = smoking + rng.normal(0, 0.6, n)
    mlp = pd.DataFrame(
        {
            "subject_id": ids,
            "age": age + rng.normal(0, 12, n),
            "bmi": bmi + rng.normal(0, 1, n),
            "smoking": 1 / (1 + np.exp(-signal)),
            "anemia": rng.random(n),
        }
    )
    linear = pd.DataFrame(
        {
            "subject_id": ids,
            "age": age + rng.normal(0, 2, n),
            "bmi": bmi + rng.normal(0, 8, n),
            "smoking": 1 / (1 + np.exp(-(signal + rng.normal(0, 0.05, n)))),
            "anemia": rng.random(n),
        }
    )
    mean = truth.assign(
        age=age.mean(), bmi=bmi.mean(), smoking=smoking.mean(), anemia=anemia.mean()
    )
    return truth, {"mlp": mlp, "linear": linear, "mean": mean}, ids


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    truth, models, ids = _cohort()
    metrics = evaluate(models, truth, test_ids=ids, n_boot=200, seed=0)
    differences = paired_differences(models, truth, test_ids=ids, pairs=PAIRS, n_boot=200)
    return metrics, differences


def _ceilings() -> pd.DataFrame:
    rows = []
    for target, metric, mlp, linear in [
        ("age", "mae", 3.4, 3.2),
        ("bmi", "pearson_r", 0.79, 0.80),
        ("smoking", "auroc", 0.86, 0.87),
        ("anemia", "auroc", 0.69, 0.75),
    ]:
        for kind, shift in (("asymptotic", 0.0), ("same_n", 0.01)):
            for model, value in (("mlp", mlp), ("linear", linear)):
                rows.append(
                    (target, metric, model, kind, value + shift, value - 0.02, value + 0.02)
                )
    return pd.DataFrame(
        rows, columns=["target", "metric", "model", "ceiling", "value", "low", "high"]
    )


def test_the_block_has_a_row_per_target_with_every_model_and_both_ceilings(tables) -> None:
    metrics, differences = tables
    block = final_test_block(metrics, differences, _ceilings())
    header = next(line for line in block.splitlines() if line.startswith("| target | metric | MLP"))
    assert "ridge / logistic [95% CI]" in header and "mean / prevalence [95% CI]" in header
    assert "ceiling, asymptotic" in header and "ceiling, same n" in header
    age = next(line for line in block.splitlines() if line.startswith("| age (years) | MAE |"))
    mae = metrics.query("target == 'age' and model == 'mlp' and metric == 'mae'").iloc[0]
    assert f"{mae.value:.2f} [{mae.ci_low:.2f}, {mae.ci_high:.2f}]" in age
    assert "3.21 [3.18, 3.22] (ridge)" in age  # the better family's same-n ceiling: lower MAE
    bmi = next(line for line in block.splitlines() if line.startswith("| bmi (kg/m^2) | r |"))
    assert bmi.split(" | ")[4] == "n/a (constant)"  # the mean's r in the metrics table
    assert block == final_test_block(metrics, differences, _ceilings())  # deterministic


def test_claims_are_made_only_where_the_paired_interval_excludes_zero(tables) -> None:
    _, differences = tables
    text = "\n".join(claims(differences))
    mlp_vs_linear = differences[(differences.model_a == "mlp") & (differences.model_b == "linear")]
    by_target = mlp_vs_linear.set_index("target")
    # Constructed: ridge much better on age (lower MAE), the MLP on bmi; smoking alike.
    assert by_target.loc["age", "better"] == "linear" and by_target.loc["age", "excludes_zero"]
    assert by_target.loc["age", "difference"] > 0  # MAE: A - B > 0 means B is better
    assert by_target.loc["bmi", "better"] == "mlp" and by_target.loc["bmi", "excludes_zero"]
    assert not by_target.loc["smoking", "excludes_zero"]
    sure_linear = list(mlp_vs_linear.query("better == 'linear' and excludes_zero")["target"])
    ahead_linear = int((mlp_vs_linear["better"] == "linear").sum())
    assert (
        f"ridge / logistic is ahead on {ahead_linear} of {len(mlp_vs_linear)} headline metrics"
        in text
    )
    listing = ", ".join(sure_linear)
    assert f"excludes 0 on {len(sure_linear)} in favour of ridge / logistic ({listing})" in text
    vs_mean = differences[(differences.model_a == "mlp") & (differences.model_b == "mean")]
    beaten = list(vs_mean.query("better == 'mlp' and excludes_zero")["target"])
    line = next(s for s in claims(differences) if "The MLP vs the mean baseline" in s)
    assert f"beats the mean baseline on {len(beaten)} of {len(vs_mean)}" in line
    listed = re.search(r"excludes 0\): (.*?)\. It does not", line).group(1).split(", ")
    assert listed == beaten and "anemia" not in listed  # anemia: chance for both
    assert "anemia" in line.split("does not beat the mean baseline on:")[1]


def test_without_results_the_block_says_so_and_holds_no_numbers() -> None:
    block = final_test_block(None, None)
    assert "Not yet produced" in block and "--pipelines=final_test" in block
    assert "|" not in block and not re.search(r"\d\.\d", block)


def test_replace_block_is_idempotent_and_needs_both_markers() -> None:
    readme = f"# x\n\n### Final\n\n{START}\nold\n{END}\n\nafter\n"
    once = replace_block(readme, "new\n")
    assert once == f"# x\n\n### Final\n\n{START}\nnew\n{END}\n\nafter\n"
    assert replace_block(once, "new\n") == once and current_block(once) == "new\n"
    with pytest.raises(ValueError, match="exactly one"):
        replace_block("# no markers\n", "new\n")
    with pytest.raises(ValueError, match="exactly one"):
        replace_block(readme + START, "new\n")


def _script():
    spec = importlib.util.spec_from_file_location(
        "update_readme_results", ROOT / "scripts" / "update_readme_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_copies_a_runs_tables_and_rewrites_only_the_block(tables, tmp_path) -> None:
    metrics, differences = tables
    run = tmp_path / "08_reporting"
    run.mkdir()
    metrics.to_csv(run / "final_test_metrics.csv", index=False)
    differences.to_csv(run / "final_test_differences.csv", index=False)
    summary = {
        "cohort": {"n": 150, "seed": 20261202, "generator_version": 3},
        "training_cohort": {"seed": 20261126},
        "model_run_id": "0123456789abcdef",
        "subjects": {"cohort": 150, "scored": 150, "ok": 150},
        "bootstrap": {"n": 200, "seed": 0},
    }
    (run / "final_test_summary.json").write_text(json.dumps(summary))
    ceilings = tmp_path / "ceilings.csv"
    _ceilings().to_csv(ceilings, index=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{START}\n{END}\nafter\n")
    results = tmp_path / "committed"
    args = ["--results", str(results), "--ceilings", str(ceilings), "--readme", str(readme)]
    script = _script()
    assert script.main([*args, "--check"]) == 1  # the empty block is stale
    assert script.main(["--from", str(run), *args]) == 0
    assert sorted(p.name for p in results.iterdir()) == sorted(
        [*RESULT_FILES, "final_test_summary.json"]
    )
    text = readme.read_text()
    assert text.startswith(f"before\n{START}\n") and text.endswith(f"{END}\nafter\n")
    assert "150 subjects simulated with seed 20261202" in text and "run `01234567`" in text
    assert current_block(text) == block_from_files(results, ceilings)
    assert script.main([*args, "--check"]) == 0
    with pytest.raises(SystemExit, match="final_test_metrics.csv"):
        script.main(["--from", str(tmp_path / "nothing"), *args])


def _committed() -> bool:
    return all((RESULTS / name).is_file() for name in RESULT_FILES)


@pytest.mark.skipif(
    not _committed(),
    reason=f"no final-test results committed in {RESULTS.relative_to(ROOT)} yet "
    "(run the final_test pipeline, then scripts/update_readme_results.py --from data/08_reporting)",
)
def test_the_readme_block_is_what_the_committed_results_give() -> None:
    readme = (ROOT / "README.md").read_text()
    assert current_block(readme) == block_from_files(RESULTS, CEILINGS), (
        "README.md's final-test block is stale: run scripts/update_readme_results.py"
    )


@pytest.mark.skipif(_committed(), reason="final-test results are committed; checked above")
def test_without_committed_results_the_readme_says_not_yet_produced() -> None:
    readme = (ROOT / "README.md").read_text()
    assert current_block(readme) == final_test_block(None, None)


def test_targets_whose_metric_is_undefined_are_named_not_counted(tables) -> None:
    _, differences = tables
    undefined = differences.copy()
    one_class = undefined["target"] == "anemia"
    undefined.loc[one_class, ["difference", "ci_low", "ci_high"]] = np.nan
    undefined.loc[one_class, "better"] = ""
    undefined.loc[one_class, "excludes_zero"] = False
    lines = claims(undefined)
    assert lines[-1] == (
        "- **Not compared** (the metric is undefined on this cohort, e.g. one class only): anemia."
    )
    assert "on 3 headline metrics" not in lines[0] and " of 3 headline metrics" in lines[0]


def test_the_development_block_shows_every_variant_and_claims_only_what_pairs_support(
    tables,
) -> None:
    """The ablation's block: a row per target with the method's models and the variants,
    the paired differences against the method, and claims only where an interval
    excludes 0."""
    from face_health.evaluation.report import development_block

    metrics, differences = tables
    ablation = metrics[metrics["model"] != "mean"].replace(
        {"model": {"mlp": "mlp_both", "linear": "mlp_both_in_sample"}}
    )
    ablation_differences = differences[
        (differences["model_a"] == "mlp") & (differences["model_b"] == "linear")
    ].replace(
        {
            "model_a": {"mlp": "mlp_both"},
            "model_b": {"linear": "mlp_both_in_sample"},
            "better": {"mlp": "mlp_both", "linear": "mlp_both_in_sample"},
        }
    )
    block = development_block(metrics, ablation, ablation_differences)
    header = next(line for line in block.splitlines() if line.startswith("| target"))
    assert "MLP, global + local, in-sample embeddings [95% CI]" in header
    assert "ceiling" not in header and "MLP, global + local [95% CI]" not in header  # the method
    assert "MLP, global + local − MLP, global + local, in-sample embeddings" in block
    sure = ablation_differences[ablation_differences["excludes_zero"].astype(bool)]
    claim = next(line for line in block.splitlines() if line.startswith("- **"))
    n_sure = int((sure["better"] == "mlp_both_in_sample").sum())
    assert f"excludes 0 on {n_sure} in favour of" in claim
    assert development_block(None, None, None).count("Not yet produced") == 1


def test_the_readme_development_block_is_what_the_committed_results_give() -> None:
    from face_health.evaluation.report import (
        DEV_END,
        DEV_FILES,
        DEV_START,
        development_from_files,
    )

    readme = (ROOT / "README.md").read_text()
    folder = ROOT / "benchmarks" / "results" / "development"
    expected = development_from_files(folder)
    if not all((folder / name).is_file() for name in DEV_FILES):
        assert "Not yet produced" in expected
    assert current_block(readme, DEV_START, DEV_END) == expected, (
        "README.md's development block is stale: run scripts/update_readme_results.py"
    )
