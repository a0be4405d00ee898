"""Sweep figures (imrepro.report.sweep_figures): points found by ids and declared attributes, seeds averaged,
the comparison stage's intervals where they exist, the lambda_p x lambda_r heat map."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imrepro.report import figures, sweep_figures
from imrepro.report.report_inputs import load_eval_long, load_runs

COLUMNS = ["run", "model", "model_paper_name", "dataset", "dataset_paper_name", "method", "method_paper_name",
           "epochs", "is_base", "n_examples", "ratio_output_instruction", "judge_label", "seed", "seed_draws_data",
           "swept", "labels", "prompt_weight", "response_weight", "weight_normalisation", "neftune_alpha",
           "kl_lambda", "learning_rate"]


def _run(dataset, pw, rw=1.0, seed=1, swept="prompt_weight", method="plw", paper_name="PLW"):
    parts = {"prompt_weight": pw, "response_weight": rw}
    suffix = "__".join(f"{name}{str(parts[name]).replace('.', 'p')}" for name in swept.split())
    return {"run": f"m__{dataset}__{method}__ep2__s{seed}__{suffix}", "model": "m", "model_paper_name": "M",
            "dataset": dataset, "dataset_paper_name": dataset.upper(), "method": method,
            "method_paper_name": paper_name, "epochs": 2, "is_base": "False", "n_examples": 10,
            "ratio_output_instruction": 1.0, "judge_label": "", "seed": seed, "seed_draws_data": "False",
            "swept": swept, "labels": "weighted", "prompt_weight": pw, "response_weight": rw,
            "weight_normalisation": "sum", "neftune_alpha": "", "kl_lambda": "", "learning_rate": 2e-5}


def _write(tmp_path: Path, runs: list[dict], value) -> tuple:
    with open(tmp_path / "runs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows([*runs, {**{c: "" for c in COLUMNS}, "run": "base__m", "model": "m", "is_base": "True"}])
    with open(tmp_path / "eval_long.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "benchmark", "metric", "value", "note", "seed"])
        for run in runs:
            for benchmark, metric in (("Output loss (train)", "mean_per_example_loss"), ("ARC", "acc_norm")):
                writer.writerow([run["run"], benchmark, metric, value(run, benchmark), "", run["seed"]])
    return load_eval_long(tmp_path / "eval_long.csv"), load_runs(tmp_path / "runs.csv")


def _loss(run, benchmark):
    return 2.0 - float(run["prompt_weight"]) + run["seed"] / 10 + (0.5 if run["dataset"] == "b" else 0.0)


@pytest.fixture
def sweep(tmp_path):
    runs = [_run(d, pw, seed=s) for d in ("a", "b") for pw in (0, 0.01, 0.5) for s in (1, 2)]
    return runs, *_write(tmp_path, runs, _loss)


def test_points_average_seeds_and_take_the_comparison_interval(sweep, tmp_path):
    runs, eval_long, run_table = sweep
    points = sweep_figures.sweep_points(run_table, eval_long)
    loss = points[points["benchmark"] == "Output loss (train)"].set_index(["dataset", "prompt_weight"])
    assert len(loss) == 6 and set(loss["n_seeds"]) == {2}
    assert loss.loc[("a", 0.5), "value"] == pytest.approx(2.0 - 0.5 + 0.15)
    assert loss["delta"].isna().all()  # no comparisons.csv: no intervals
    point_runs = loss.loc[("a", 0.01), "runs"].split()
    comparisons = tmp_path / "comparisons.csv"
    comparisons.write_text("comparison,benchmark,metric,delta,ci_low,ci_high,runs_b\nplw vs it,Output loss (train),"
                           f"mean_per_example_loss,-0.2,-0.3,-0.1,{';'.join(point_runs)}\n")
    with_ci = sweep_figures.sweep_points(run_table, eval_long, pd.read_csv(comparisons))
    row = with_ci[(with_ci["dataset"] == "a") & (with_ci["prompt_weight"] == 0.01)
                  & (with_ci["benchmark"] == "Output loss (train)")].iloc[0]
    assert (row["delta"], row["ci_low"], row["ci_high"]) == (-0.2, -0.3, -0.1)
    assert with_ci["delta"].notna().sum() == 1


def test_sweep_figure_draws_one_line_per_dataset(sweep, tmp_path):
    runs, eval_long, run_table = sweep
    comparisons = tmp_path / "comparisons.csv"
    point = " ".join(r["run"] for r in runs if r["dataset"] == "b" and r["prompt_weight"] == 0.5)
    comparisons.write_text("benchmark,metric,delta,ci_low,ci_high,runs_b\n"
                           f"ARC,acc_norm,0.1,0.0,0.3,{point}\n")
    inputs = figures.Inputs(eval_long, run_table, None, label="DEMO",
                            comparisons=pd.read_csv(comparisons))
    fig = figures.make_figure("fig_sweep", inputs)
    loss_ax, arc_ax = fig.axes[:2]
    assert {loss_ax.get_title(), arc_ax.get_title()} == {"Output loss (train)", "ARC"}
    lines = {line.get_label(): line for line in loss_ax.lines if not line.get_label().startswith("_")}
    assert set(lines) == {"A", "B"}
    np.testing.assert_allclose(lines["A"].get_xdata(), [0, 0.01, 0.5])
    np.testing.assert_allclose(lines["A"].get_ydata(), [2.15, 2.14, 1.65])
    assert loss_ax.get_xscale() == "symlog" and loss_ax.get_xlabel() == "prompt weight λp"
    assert len(arc_ax.containers) == 1 and not loss_ax.containers  # the one interval, on ARC
    figures.save(fig, tmp_path / "s.png", tmp_path / "s.pdf")
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_renamed_method_keeps_its_points(tmp_path):
    """Points are joined on ids and declared attributes: a new paper_name drops nothing."""
    runs = [_run(d, pw, paper_name="Prompt loss weight") for d in ("a", "b") for pw in (0, 0.5)]
    eval_long, run_table = _write(tmp_path, runs, _loss)
    points = sweep_figures.sweep_points(run_table, eval_long)
    assert len(points) == 2 * 2 * 2 and set(points["method"]) == {"plw"}


def test_weight_grid_heat_map(tmp_path):
    runs = [_run("a", pw, rw, swept="prompt_weight response_weight", method="wit")
            for pw in (0, 0.5, 1) for rw in (0.5, 1) if (pw, rw) != (1, 0.5)]
    eval_long, run_table = _write(tmp_path, runs,
                                  lambda r, b: 10 * float(r["prompt_weight"]) + float(r["response_weight"]))
    fig = figures.make_figure("fig_weight_grid", figures.Inputs(eval_long, run_table, None))
    ax = fig.axes[0]
    cells = ax.images[0].get_array()
    assert cells.shape == (2, 3)  # rows: lambda_r 0.5, 1; columns: lambda_p 0, 0.5, 1
    assert cells[1, 2] == pytest.approx(11.0) and cells[0, 1] == pytest.approx(5.5)
    assert np.ma.is_masked(cells[0, 2]) or np.isnan(cells[0, 2])  # (1, 0.5) not run
    assert fig.get_suptitle().startswith("Loss-weight grid: Output loss (train)")  # no NLP mean: the first
    # a one-parameter sweep is no grid: the heat map says what it needs
    eval_long, run_table = _write(tmp_path, [_run("a", 0.5)], _loss)
    fig = figures.make_figure("fig_weight_grid", figures.Inputs(eval_long, run_table, None))
    assert "needs a run group sweeping prompt_weight and response_weight" in fig.axes[0].texts[0].get_text()
