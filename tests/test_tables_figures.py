"""Tables and figures of the reporting stage on synthetic runs: our value, the paper's value and their
difference land in the right cells; rows not run stay "not run"; figures are written with and without data."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imrepro.catalogue import COMPARISON_FIGURES
from imrepro.eval.aggregate import CATEGORIES, MEAN_NAME
from imrepro.report import figures, tables
from imrepro.report.report_inputs import load_eval_long, load_paper, load_runs, name_key

REPO = Path(__file__).resolve().parents[1]
NOT_IN_PAPER = COMPARISON_FIGURES  # our figures beyond the paper's
PAPER_CSV = REPO / "resources" / "paper" / "paper_results.csv"
SCRIPTS = REPO / "workflow_scripts"
RUN_FIELDS = ["run", "model", "model_paper_name", "dataset", "dataset_paper_name", "method", "method_paper_name",
              "epochs", "is_base", "n_examples", "ratio_output_instruction", "judge_label", "compare_as"]
METHOD_NAMES = {"it": "IT", "im_seed": "IM", "im": "IM (Eq. 4)", "neftune": "NEFTune",
                "it_kl_0.1": "IT w/ KL (lambda=0.1)"}


def _run(dataset, paper_name, method, epochs=2, n=1000, ratio=1.0, compare_as="", model="llama2_7b"):
    return {"run": f"{model}__{dataset}__{method}__ep{epochs}", "model": model, "model_paper_name": "LLaMA-2-7B",
            "dataset": dataset, "dataset_paper_name": paper_name, "method": method,
            "method_paper_name": METHOD_NAMES[method], "epochs": epochs, "is_base": "False", "n_examples": n,
            "ratio_output_instruction": ratio, "judge_label": "", "compare_as": compare_as}


def _scores(run: str, seed: int) -> list[tuple]:
    """Every benchmark row of eval_long for one run, values a deterministic function of ``seed``."""
    rows = [(run, name, "category_mean", 40.0 + seed + i) for i, name in enumerate(CATEGORIES.values())]
    rows += [(run, MEAN_NAME, "mean_of_6_categories", 42.5 + seed), (run, "MT-Bench", "score", 3.0 + seed / 10),
             (run, "Regeneration BLEU", "bleu", 20.0 + seed)]
    for name in ("AlpacaEval 1.0", "AlpacaEval 2.0"):
        rows += [(run, name, "win_rate", 10.0 + seed), (run, name, "avg_length", 200.0 + 10 * seed)]
    return rows


def write_inputs(tmp_path: Path, runs: list[dict], overrides: dict | None = None,
                 notes: dict | None = None, fields: list[str] = RUN_FIELDS) -> dict[str, Path]:
    """runs.csv and eval_long.csv; ``overrides``: {(run, benchmark, metric): value or None}; ``notes``:
    {(run, benchmark, metric): note}, written as a fifth column ``note`` when given (else the old 4 columns)."""
    overrides = overrides or {}
    paths = {"runs": tmp_path / "runs.csv", "eval_long": tmp_path / "eval_long.csv"}
    with open(paths["runs"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(runs)
    rows = [row for i, run in enumerate(runs) for row in _scores(run["run"], i)]
    rows = [(r, b, m, overrides.get((r, b, m), v)) for r, b, m, v in rows]
    with open(paths["eval_long"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "benchmark", "metric", "value"] + (["note"] if notes is not None else []))
        writer.writerows([(r, b, m, "" if v is None else v) + ((notes.get((r, b, m), ""),) if notes is not None else ())
                          for r, b, m, v in rows])
    return paths


BASE = {"run": "base__llama2_7b", "model": "llama2_7b", "model_paper_name": "LLaMA-2-7B", "dataset": "",
        "dataset_paper_name": "none (base)", "method": "", "method_paper_name": "none", "epochs": "",
        "is_base": "True", "n_examples": "", "ratio_output_instruction": "", "judge_label": "demo-judge",
        "compare_as": ""}
MAIN_RUNS = [BASE] + [_run("lima", "LIMA", m, n=1030, ratio=10.6124) for m in ("it", "im_seed", "im", "neftune")] + [
    _run("mydata", "My Data", m) for m in ("it", "neftune")] + [
    _run("lima_head64", "lima_head64", "it_kl_0.1", compare_as="LIMA")]


@pytest.fixture()
def main_inputs(tmp_path):
    paths = write_inputs(tmp_path, MAIN_RUNS, {("llama2_7b__lima__neftune__ep2", "MT-Bench", "score"): None})
    return load_eval_long(paths["eval_long"]), load_runs(paths["runs"]), load_paper(PAPER_CSV), paths


def _cells(rows, **where) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def test_table1_cell_holds_ours_paper_and_difference(main_inputs):
    eval_long, runs, paper, _ = main_inputs
    rows = tables.build_table(tables.TABLES["table1"], eval_long, runs, paper)
    # LIMA IT is the 2nd run: Mean = 42.5 + 1; the paper prints 48.79
    (cell,) = _cells(rows, run="llama2_7b__lima__it__ep2", benchmark=MEAN_NAME)
    assert (cell["ours"], cell["paper"], cell["status"]) == (43.5, 48.79, "ok")
    assert cell["diff"] == pytest.approx(43.5 - 48.79)
    assert tables.format_cell(cell) == "43.50 / 48.79 (Δ -5.29)"
    (ae1,) = _cells(rows, run="llama2_7b__lima__im_seed__ep2", benchmark="AlpacaEval 1.0")
    assert (ae1["ours"], ae1["paper"]) == (12.0, 32.94)  # our "IM" is compared with the paper's IM
    (base,) = _cells(rows, run="base__llama2_7b", benchmark="MT-Bench")
    assert (base["ours"], base["paper"], base["judge"]) == (3.0, 1.16, "demo-judge")
    assert tables.format_cell(base).startswith("3.00† / 1.16")


def test_table1_not_run_missing_and_ours_only_rows(main_inputs):
    eval_long, runs, paper, _ = main_inputs
    rows = tables.build_table(tables.TABLES["table1"], eval_long, runs, paper)
    dolly9k = _cells(rows, paper_dataset="Alpagasus Dolly 9k", paper_method="IM")
    assert dolly9k and all(c["status"] == "not run" and c["ours"] is None and c["run"] == "" for c in dolly9k)
    (mean,) = _cells(dolly9k, benchmark=MEAN_NAME)
    assert mean["paper"] == 48.00 and tables.format_cell(mean) == "not run / 48.00"
    assert _cells(rows, paper_model="LLaMA-2-7B-chat", benchmark="MT-Bench")[0]["status"] == "not run"
    (missing,) = _cells(rows, run="llama2_7b__lima__neftune__ep2", benchmark="MT-Bench")
    assert missing["status"] == "missing" and missing["paper"] == 4.79 and missing["diff"] is None
    for run in ("llama2_7b__lima__im__ep2", "llama2_7b__mydata__it__ep2"):  # Eq.-4 IM and a dataset of ours
        cells = _cells(rows, run=run)
        assert len(cells) == 10 and all(c["paper"] is None and c["status"] == "no paper value" for c in cells)
        assert tables.format_cell(cells[0]).endswith(" / —")
    # the KL run and an epoch-sweep run do not belong in Table 1
    assert not _cells(rows, run="llama2_7b__lima_head64__it_kl_0.1__ep2")


def test_compare_as_maps_a_demo_slice_onto_the_paper_row(main_inputs):
    eval_long, runs, paper, _ = main_inputs
    rows = tables.build_table(tables.TABLES["table7"], eval_long, runs, paper)
    (cell,) = _cells(rows, run="llama2_7b__lima_head64__it_kl_0.1__ep2", benchmark=MEAN_NAME)
    assert cell["paper"] == 48.77 and cell["paper_method"] == "IT w/ KL (lambda=0.1)"
    assert [c["status"] for c in _cells(rows, benchmark=MEAN_NAME)].count("not run") == 2  # lambda 0.01 and 1.0
    # Table 3 compares the paper's "IT w/o KL" with our IT
    rows3 = tables.build_table(tables.TABLES["table3"], eval_long, runs, paper)
    (it,) = _cells(rows3, run="llama2_7b__lima__it__ep2", benchmark=MEAN_NAME)
    assert it["paper"] == 48.79 and it["paper_method"] == "IT w/o KL"


def test_demo_model_stands_in_for_the_paper_model_but_other_models_do_not(tmp_path):
    """As runs.csv is written: compare_as = the dataset's paper name for every run, "none (base)" for base runs."""
    demo_base = {**BASE, "run": "base__demo_llama", "model": "demo_llama", "model_paper_name": "demo_llama",
                 "compare_as": "none (base)"}
    big_base = {**BASE, "run": "base__llama2_13b", "model": "llama2_13b", "model_paper_name": "llama2_13b",
                "compare_as": "none (base)"}
    runs = [demo_base, big_base]
    for method in ("it", "neftune"):
        runs.append({**_run("lima_head64", "lima_head64", method, compare_as="LIMA", model="demo_llama"),
                     "model_paper_name": "demo_llama"})
        runs.append({**_run("lima", "LIMA", method, compare_as="LIMA", model="llama2_13b"),
                     "model_paper_name": "llama2_13b"})
    paths = write_inputs(tmp_path, runs)
    rows = tables.build_table(tables.TABLES["table1"], load_eval_long(paths["eval_long"]), load_runs(paths["runs"]),
                              load_paper(PAPER_CSV))
    assert _cells(rows, run="demo_llama__lima_head64__it__ep2", benchmark=MEAN_NAME)[0]["paper"] == 48.79
    assert _cells(rows, run="base__demo_llama", benchmark=MEAN_NAME)[0]["paper"] == 49.32
    for run in ("llama2_13b__lima__it__ep2", "base__llama2_13b"):
        assert all(c["paper"] is None for c in _cells(rows, run=run))
    markdown = tables.to_markdown(rows, tables.TABLES["table1"])
    assert "| demo_llama | lima_head64 (vs paper LIMA) | IT | `demo_llama__lima_head64__it__ep2` |" in markdown


def test_table5_against_paper(tmp_path):
    stats = tmp_path / "stats.csv"
    stats.write_text("dataset,n_examples,avg_total,avg_output,std_output,avg_instruction,std_instruction,"
                     "ratio_output_instruction\n"
                     "lima,1030,484.47,442.75,491.34,41.72,79.28,10.6124\n"
                     "tulu_v2_10pct,32000,500.0,330.0,560.0,170.0,340.0,1.9412\n"
                     "lima_head64,64,400.0,360.0,300.0,40.0,50.0,9.0\n")
    rows = tables.build_table5(tables.load_table5_stats(stats), load_paper(PAPER_CSV))
    lima = _cells(rows, dataset="lima")
    assert len(lima) == 8 and all(c["status"] == "ok" and c["diff"] == pytest.approx(0, abs=1e-4) for c in lima)
    (tulu,) = _cells(rows, dataset="tulu_v2_10pct", metric="n_examples")
    assert (tulu["paper_dataset"], tulu["paper"], tulu["diff"]) == ("Tulu V2 (10%)", 32618, -618)
    (ratio,) = _cells(rows, dataset="lima", metric="ratio_instruction_output")
    assert ratio["ours"] == pytest.approx(0.0942) and ratio["paper"] == pytest.approx(0.0942)
    assert _cells(rows, dataset="Less MMLU Chat", metric="n_examples")[0]["status"] == "not built"
    assert all(c["paper"] is None for c in _cells(rows, dataset="lima_head64"))


def test_make_tables_cli_writes_every_table(main_inputs, tmp_path):
    _, _, _, paths = main_inputs
    stats = tmp_path / "stats.csv"
    stats.write_text("dataset,n_examples,avg_total,avg_output,std_output,avg_instruction,std_instruction,"
                     "ratio_output_instruction\nlima,1030,484.47,442.75,491.34,41.72,79.28,10.6124\n")
    out = tmp_path / "tables"
    label = "DEMO-SCALE numbers: synthetic"
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "make_tables.py"), "--eval-long", str(paths["eval_long"]), "--runs",
         str(paths["runs"]), "--paper", str(PAPER_CSV), "--table5", str(stats), "--outdir", str(out),
         "--label", label], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for key in tables.ALL_TABLES:
        for name in tables.filenames(key):
            assert (out / name).stat().st_size > 0
        markdown = (out / tables.filenames(key)[1]).read_text()
        assert markdown.startswith(f"> **{label}**")
    long = pd.read_csv(out / "table1_main_results.csv")
    assert list(long.columns) == list(tables.LONG_COLUMNS)
    row = long[(long["run"] == "llama2_7b__lima__it__ep2") & (long["benchmark"] == MEAN_NAME)].iloc[0]
    assert (row["ours"], row["paper"], round(row["diff"], 2)) == (43.5, 48.79, -5.29)
    assert "| LLaMA-2-7B | LIMA | IT | `llama2_7b__lima__it__ep2` | 41.00 / 63.92 (Δ -22.92) |" in (
        out / "table1_main_results.md").read_text()
    # one table alone, and a clear error for a missing input
    alone = tmp_path / "alone"
    subprocess.run([sys.executable, str(SCRIPTS / "make_tables.py"), "--eval-long", str(paths["eval_long"]),
                    "--runs", str(paths["runs"]), "--paper", str(PAPER_CSV), "--outdir", str(alone),
                    "--tables", "table2"], check=True, capture_output=True, timeout=120)
    assert sorted(p.name for p in alone.iterdir()) == sorted(tables.filenames("table2"))
    bad = subprocess.run([sys.executable, str(SCRIPTS / "make_tables.py"), "--eval-long", str(tmp_path / "nope.csv"),
                          "--runs", str(paths["runs"]), "--paper", str(PAPER_CSV), "--outdir", str(alone)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "nope.csv: eval_long table not found" in bad.stderr


LIMA_IT, LIMA_IM = "llama2_7b__lima__it__ep2", "llama2_7b__lima__im_seed__ep2"
UNDERSTANDING = CATEGORIES["understanding_knowledge"]


def test_partial_note_marks_the_cell_adds_the_footnote_and_reaches_the_csv(tmp_path):
    notes = {(LIMA_IT, UNDERSTANDING, "category_mean"): "partial: 1 of 5 tasks (mmlu)",
             (LIMA_IT, MEAN_NAME, "mean_of_6_categories"): "partial: 4 of 6 categories, some of them partial",
             (LIMA_IM, MEAN_NAME, "mean_of_6_categories"): "scored over all 18 tasks"}  # a note, not partial
    paths = write_inputs(tmp_path, MAIN_RUNS, notes=notes)
    eval_long, runs, paper = load_eval_long(paths["eval_long"]), load_runs(paths["runs"]), load_paper(PAPER_CSV)
    spec = tables.TABLES["table1"]
    rows = tables.build_table(spec, eval_long, runs, paper)
    (mean,) = _cells(rows, run=LIMA_IT, benchmark=MEAN_NAME)
    assert mean["status"] == "ok" and mean["note"] == "partial: 4 of 6 categories, some of them partial"
    assert tables.format_cell(mean) == "43.50‡ / 48.79 (Δ -5.29)"
    (category,) = _cells(rows, run=LIMA_IT, benchmark=UNDERSTANDING)
    assert tables.format_cell(category).startswith("41.00‡ / ")
    (im_mean,) = _cells(rows, run=LIMA_IM, benchmark=MEAN_NAME)
    assert "‡" not in tables.format_cell(im_mean) and im_mean["note"] == "scored over all 18 tasks"
    (mt_bench,) = _cells(rows, run="base__llama2_7b", benchmark="MT-Bench")  # † stays, no ‡ without a note
    assert tables.format_cell(mt_bench).startswith("3.00† / ")
    markdown = tables.to_markdown(rows, spec)
    assert markdown.count("‡") == 3 and markdown.rstrip("\n").endswith(tables.PARTIAL_FOOTNOTE)
    assert "| LLaMA-2-7B | LIMA | IT | `llama2_7b__lima__it__ep2` | 41.00‡ / 63.92 (Δ -22.92) |" in markdown

    csv_path, _ = tables.write_table(rows, spec, tmp_path / "out")
    written = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert list(written.columns) == list(tables.LONG_COLUMNS) and "note" in written.columns
    noted = written[written["note"] != ""]
    assert sorted(zip(noted["run"], noted["benchmark"], noted["note"], strict=True)) == sorted(
        (r, b, n) for (r, b, _), n in notes.items())
    assert set(noted["status"]) == {"ok"}  # the note does not change the status

    # a partial note on a missing value: nothing to mark, so no mark and no footnote
    missing = write_inputs(tmp_path, MAIN_RUNS, overrides={(LIMA_IT, MEAN_NAME, "mean_of_6_categories"): None},
                           notes={(LIMA_IT, MEAN_NAME, "mean_of_6_categories"): "partial: 0 of 6 categories"})
    rows = tables.build_table(spec, load_eval_long(missing["eval_long"]), runs, paper)
    assert "‡" not in tables.to_markdown(rows, spec)


def test_eval_long_without_note_column_still_loads(main_inputs, tmp_path):
    eval_long, runs, paper, paths = main_inputs
    assert "note" not in paths["eval_long"].read_text().splitlines()[0]
    assert "note" in eval_long.columns and set(eval_long["note"]) == {""}
    spec = tables.TABLES["table1"]
    rows = tables.build_table(spec, eval_long, runs, paper)
    assert all(r["note"] == "" for r in rows)
    assert "‡" not in tables.to_markdown(rows, spec)
    # a frame built elsewhere, without the column, works too
    assert tables.build_table(spec, eval_long.drop(columns="note"), runs, paper) == rows
    csv_path, _ = tables.write_table(rows, spec, tmp_path / "out")
    assert set(pd.read_csv(csv_path, dtype=str, keep_default_na=False)["note"]) == {""}


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------

def test_fit_recovers_slope_and_intercept():
    x = np.array([0.1, 0.3, 1.0, 3.0, 10.0, 30.0])
    y = 18.85 * np.log(x) + 25.83
    slope, intercept = figures.fit_log_linear(x, y)
    assert (slope, intercept) == (pytest.approx(18.85), pytest.approx(25.83))
    assert figures.fit_equation(slope, intercept) == "y = 18.85 ln(x) + 25.83"
    assert figures.fit_equation(-39.37, -4.5) == "y = -39.37 ln(x) - 4.50"
    assert figures.fit_log_linear([2.0, 2.0], [1.0, 3.0]) is None


def test_paper_fig2_points_refit_to_the_printed_line():
    paper = load_paper(PAPER_CSV)
    for side, printed, n in (("left", (18.85, 25.83), 19), ("right", (-39.37, 431.74), 15)):
        points, fit = figures.paper_fig2(paper, side)
        assert len(points) == n and fit == printed
        slope, intercept = figures.fit_log_linear(points["x"], points["y"])
        assert slope == pytest.approx(printed[0], abs=0.05) and intercept == pytest.approx(printed[1], abs=0.1)


def _figure_runs() -> tuple[list[dict], dict]:
    """IT/IM pairs with known gains on ratio datasets and size subsets, an epoch sweep, Tulu fractions."""
    runs, overrides = [BASE], {}

    def pair(dataset, paper_name, gain, ratio=1.0, n=1000, epochs=2, it=20.0):
        for method, value in (("it", it), ("im_seed", it * (1 + gain / 100))):
            run = _run(dataset, paper_name, method, epochs=epochs, n=n, ratio=ratio)
            runs.append(run)
            overrides[(run["run"], "AlpacaEval 1.0", "win_rate")] = value

    for inv_ratio in (0.1, 0.5, 2.0, 8.0):  # gain = 10 ln(instruction/output) + 30
        pair(f"set_r{inv_ratio}", f"Set {inv_ratio}", 10 * math.log(inv_ratio) + 30, ratio=1 / inv_ratio)
    for n in (1000, 4000, 16000):  # gain = -20 ln(N) + 200
        pair(f"tulu_v2_n{n}", f"tulu_v2_n{n}", -20 * math.log(n) + 200, ratio=0.1, n=n)
    for epochs in (4, 6):
        pair("set_r0.1", "Set 0.1", 5.0, ratio=10.0, epochs=epochs)
    for key, name in (("tulu_v2_10pct", "Tulu V2 (10%)"), ("tulu_v2", "Tulu V2")):
        pair(key, name, 10 * math.log(1 / 1.9) + 30, ratio=1.9)  # on the same line as the ratio sets
    return runs, overrides


@pytest.fixture()
def figure_inputs(tmp_path):
    runs, overrides = _figure_runs()
    paths = write_inputs(tmp_path, runs, overrides)
    return figures.Inputs(load_eval_long(paths["eval_long"]), load_runs(paths["runs"]), load_paper(PAPER_CSV),
                          label="DEMO-SCALE numbers: synthetic")


def test_fig2_gain_points_and_fit(figure_inputs):
    points, skipped = figures.gain_points(figure_inputs)
    assert not skipped
    ratio = points[~points["size_study"]]
    assert set(ratio["dataset"]) == {"set_r0.1", "set_r0.5", "set_r2.0", "set_r8.0", "tulu_v2_10pct", "tulu_v2"}
    slope, intercept = figures.fit_log_linear(ratio["ratio_instruction_output"], ratio["gain"])
    assert (slope, intercept) == (pytest.approx(10.0), pytest.approx(30.0))
    size = points[points["size_study"]]
    slope, intercept = figures.fit_log_linear(size["n_examples"], size["gain"])
    assert (slope, intercept) == (pytest.approx(-20.0), pytest.approx(200.0))
    # an IT win rate of 0 has no relative gain: left out and counted, not divided by
    zero = figures.Inputs(figure_inputs.eval_long.assign(value=figure_inputs.eval_long["value"].where(
        ~((figure_inputs.eval_long["run"] == "llama2_7b__set_r0.5__it__ep2")
          & (figure_inputs.eval_long["benchmark"] == "AlpacaEval 1.0")), 0.0)),
        figure_inputs.runs, figure_inputs.paper)
    points, skipped = figures.gain_points(zero)
    assert "set_r0.5" not in set(points["dataset"]) and len(skipped) == 1


def test_fig2_size_study_is_the_declared_subset_family(figure_inputs):
    """With runs.csv's subset_family the size study is what the config declared, whatever the dataset key."""
    runs = figure_inputs.runs.assign(subset_family=["size" if d.startswith("set_r8") else ""
                                                    for d in figure_inputs.runs["dataset"]])
    points, _ = figures.gain_points(figures.Inputs(figure_inputs.eval_long, runs, figure_inputs.paper))
    assert set(points.loc[points["size_study"], "dataset"]) == {"set_r8.0"}


def _texts(fig) -> str:
    found = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        if ax.get_visible():
            found += [t.get_text() for t in ax.texts] + [ax.get_title()]
    return "\n".join(found)


def _losses(tmp_path: Path, runs: list[dict]) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for run in runs:
        shift = 0.2 if run["method"] == "im_seed" else 0.0
        path = tmp_path / f"{run['run']}.json"
        train, heldout = rng.normal(1.4 + shift, 0.3, 50), rng.normal(1.3 - shift, 0.3, 50)
        path.write_text(json.dumps({"run": run["run"], "train": {"dataset": run["dataset"], "losses": list(train)},
                                    "heldout": {"dataset": "heldout", "losses": list(heldout)}}))
        paths.append(path)
    return paths


@pytest.mark.parametrize("name", figures.FIGURES)
def test_every_figure_with_data_and_without_runs(name, figure_inputs, tmp_path):
    runs, _ = _figure_runs()
    loss_runs = [r for r in runs if r["dataset"] == "set_r0.1" and r["epochs"] == 2]
    figure_inputs.losses = figures.load_losses(_losses(tmp_path, loss_runs))
    if name == "forest":
        from test_comparisons import comparisons_frame

        figure_inputs.comparisons = comparisons_frame(tmp_path)
    fig = figures.make_figure(name, figure_inputs)
    text = _texts(fig)
    assert "DEMO-SCALE numbers: synthetic" in text
    if name not in ("fig1", "fig5", "fig_sweep", "fig_weight_grid"):  # no Table 1 training set, no 13B/OPT run, no
        # sweep in the synthetic runs: they say so (sweeps: tests/test_sweep_figures.py)
        assert "not run in this configuration" not in text, text
    if name == "fig2":
        assert "ours: y = 10.00 ln(x) + 30.00" in text and "paper: y = 18.85 ln(x) + 25.83" in text
        assert "ours: y = -20.00 ln(x) + 200.00" in text and "paper: y = -39.37 ln(x) + 431.74" in text
    png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
    figures.save(fig, png, pdf)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"

    # no trained runs at all: the figure is still written, with the message
    (tmp_path / "empty").mkdir()
    empty = write_inputs(tmp_path / "empty", [BASE])
    out_png, out_pdf = tmp_path / "empty" / f"{name}.png", tmp_path / "empty" / f"{name}.pdf"
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "make_figure.py"), "--figure", name, "--eval-long", str(empty["eval_long"]),
         "--runs", str(empty["runs"]), "--paper", str(PAPER_CSV), "--output-png", str(out_png),
         "--output-pdf", str(out_pdf), "--label", "DEMO"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out_png.stat().st_size > 0 and out_pdf.stat().st_size > 0
    inputs = figures.Inputs(load_eval_long(empty["eval_long"]), load_runs(empty["runs"]), load_paper(PAPER_CSV))
    assert "not run in this configuration: needs" in _texts(figures.make_figure(name, inputs))


def test_fig1_compares_table1_runs_with_paper_markers(main_inputs):
    eval_long, runs, paper, _ = main_inputs
    fig = figures.fig1(figures.Inputs(eval_long, runs, paper))
    mean_ax = fig.axes[0]
    labels = [t.get_text() for t in mean_ax.get_xticklabels()]
    assert labels == ["LIMA", "My Data"]
    markers = [y for line in mean_ax.lines if line.get_marker() == "D" for y in line.get_ydata()]
    assert sorted(markers) == [48.79, 49.60]  # the paper's LIMA IT and IM; nothing for Eq.-4 IM or My Data
    assert [line.get_label() for line in mean_ax.lines].count("paper") == 1


def test_fig5_draws_13b_and_opt_runs_on_table1_sets_and_says_what_is_missing(tmp_path):
    """Fig. 5: the runs whose paper model is LLaMA-2-13B or OPT-6.7B, on Table 1 training sets only (not the
    7B runs, not a non-paper set), our values as bars; a model without runs gets the "not run" message."""
    runs = [{**_run(key, name, method, model="llama2_13b"), "model_paper_name": "LLaMA-2-13B-base"}
            for key, name in (("lima", "LIMA"), ("less_tydiqa", "Less Tydiqa"), ("mydata", "My Data"))
            for method in ("it", "im_seed")]
    runs += [_run("lima", "LIMA", method) for method in ("it", "im_seed", "neftune")]  # 7B: Fig. 1's
    paths = write_inputs(tmp_path, runs)
    eval_long = load_eval_long(paths["eval_long"])
    fig = figures.fig5(figures.Inputs(eval_long, load_runs(paths["runs"]), load_paper(PAPER_CSV), label="DEMO"))
    mean_13b, ae_13b, mean_opt, ae_opt = fig.axes[:4]
    assert [t.get_text() for t in mean_13b.get_xticklabels()] == ["LIMA", "Less Tydiqa"]
    want = eval_long[(eval_long["benchmark"] == MEAN_NAME) & eval_long["run"].str.startswith("llama2_13b__")
                     & ~eval_long["run"].str.contains("mydata")].set_index("run")["value"]
    heights = sorted(p.get_height() for p in mean_13b.patches)
    assert heights == sorted(want) and len(heights) == 4
    assert not [line for line in mean_13b.lines if line.get_marker() == "D"]  # no paper numbers for Fig. 5
    assert ae_13b.get_title().startswith("LLaMA-2-13B-base: AlpacaEval 1.0")
    text = " ".join(_texts(fig).split())  # messages are wrapped to their panel
    assert "DEMO" in text and "the paper prints no numbers" in text
    assert "needs IT and IM runs of OPT-6.7B on the Table 1 training sets (run group fig5_other_models)" in text
    assert "needs IT and IM runs of LLaMA-2-13B-base" not in text
    assert not mean_opt.patches and not ae_opt.patches


def test_loss_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"run": "x", "train": {"losses": [1.0]}, "heldout": {"dataset": "h"}}))
    with pytest.raises(ValueError, match=r"bad.json: field heldout.losses"):
        figures.load_losses([bad])
    partial = tmp_path / "partial.json"  # the evaluation stage writes null for a split it did not score
    partial.write_text(json.dumps({"run": "x", "train": None, "heldout": {"dataset": "h", "losses": [1.0, None]}}))
    (loaded,) = figures.load_losses([partial])
    assert loaded["train"]["losses"] == [] and loaded["heldout"]["losses"] == [1.0, None]


def test_name_key_matches_paper_spellings():
    assert name_key("LLaMA-2-7B-base") == name_key("LLaMA-2-7B")
    assert name_key("Tulu V2 (10%)") == name_key("tulu_v2_10pct")
    assert name_key("LIMA (inferred: lambda=1.0 row equals Table 3 LIMA w/ KL; caption names no dataset)") == "lima"


@pytest.mark.parametrize("name", [*tables.ALL_TABLES, *figures.FIGURES])
def test_report_caption_names_the_paper_item_and_renders(name):
    """Snakemake renders captions with Jinja, then docutils: both must pass without errors."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    text = (REPO / "report" / "captions" / f"{name}.rst").read_text()
    number = name.removeprefix("table").removeprefix("fig")
    if name in NOT_IN_PAPER:
        assert text.startswith("Not in Shi et al.")
    else:
        assert f"**{'Table' if name.startswith('table') else 'Figure'} {number}**" in text

    class Snakemake:  # what Snakemake passes to a caption template
        params = type("Params", (), {"label": "DEMO-SCALE numbers"})()
        config = {"use_run_groups": ["demo_main"]}

    rendered = Environment(trim_blocks=True, lstrip_blocks=True).from_string(text).render(snakemake=Snakemake)
    html = publish_parts(rendered, writer="html", settings_overrides={"halt_level": 2, "report_level": 2})
    assert "Shi et al." in html["body"]


def _drawn(fig):
    """Lay out and draw ``fig`` (Agg, as save() does); return its renderer for text extents."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


def _inside(inner, outer, slack: float = 1.0) -> bool:
    return (inner.x0 >= outer.x0 - slack and inner.x1 <= outer.x1 + slack
            and inner.y0 >= outer.y0 - slack and inner.y1 <= outer.y1 + slack)


def test_fig3_titles_are_short_and_nothing_overlaps(tmp_path):
    """3 rows x 2 columns of long demo dataset names: titles stay inside the figure and apart, legends sit
    above the histograms, a paper mean far off our losses' scale goes to the legend only."""
    slices = (("alpagasus_alpaca_5k_head64", "Alpagasus Alpaca 5k", 10.0), ("alpagasus_dolly_3k_head64",
              "Alpagasus Dolly 3k", 0.6), ("lima_head64", "LIMA", 10.0))
    runs = [_run(key, key, method, compare_as=paper) for key, paper, _ in slices for method in ("it", "im_seed")]
    paths = write_inputs(tmp_path, runs)
    rng, loss_files = np.random.default_rng(1), []
    for run, (key, _, level) in zip(runs, [s for s in slices for _ in (0, 1)], strict=True):
        path = tmp_path / f"{run['run']}.json"
        train, heldout = list(rng.normal(level, 0.05, 64)), list(rng.normal(2 * level, 0.05, 64))
        path.write_text(json.dumps({"run": run["run"], "train": {"dataset": key, "losses": train},
                                    "heldout": {"dataset": "tulu_v2_10pct_heldout", "losses": heldout}}))
        loss_files.append(path)
    inputs = figures.Inputs(load_eval_long(paths["eval_long"]), load_runs(paths["runs"]), load_paper(PAPER_CSV),
                            losses=figures.load_losses(loss_files), label="DEMO-SCALE numbers: " + "long label " * 12)
    fig = figures.fig3(inputs)
    renderer = _drawn(fig)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 6
    page = fig.bbox
    titles = [ax.title.get_window_extent(renderer) for ax in axes]
    for i, (ax, title) in enumerate(zip(axes, titles, strict=True)):
        lines = ax.get_title().split("\n")
        assert len(lines) <= 3 and lines[-1] in ("training set", "held-out set (tulu_v2_10pct_heldout)"), lines
        assert _inside(title, page), ax.get_title()
        for j, other in enumerate(axes):
            if j != i:
                assert not title.overlaps(titles[j]) and not title.overlaps(other.get_window_extent(renderer))
        legend = ax.get_legend().get_window_extent(renderer)
        tallest = max(p.get_window_extent(renderer).y1 for p in ax.patches)
        assert legend.y0 >= tallest - 1, ax.get_title()  # head room: the legend covers no bar
    assert _inside(fig._suptitle.get_window_extent(renderer), page)
    assert not fig._suptitle.get_window_extent(renderer).overlaps(titles[0])

    def vertical_lines(ax):
        return sorted(line.get_xdata()[0] for line in ax.lines if len(set(line.get_xdata())) == 1)

    lima_train, dolly_train = axes[4], axes[2]
    assert vertical_lines(lima_train) == []
    assert "paper IT mean 1.37 (off scale)" in lima_train.get_legend_handles_labels()[1]
    assert vertical_lines(dolly_train) == [0.58, 0.61]  # within our range: drawn
    assert lima_train.get_title() == "lima_head64 (vs paper LIMA)\ntraining set"
    assert axes[0].get_title().split("\n")[:2] == ["alpagasus_alpaca_5k_head64", "(vs paper Alpagasus Alpaca 5k)"]


@pytest.mark.parametrize("name", ["fig2", "fig4", "fig6"])
def test_long_label_and_point_labels_stay_inside_the_figure(name, figure_inputs):
    figure_inputs.label = "DEMO-SCALE numbers: tiny random-init model, 64-example training slices, small eval " * 2
    fig = figures.make_figure(name, figure_inputs)
    renderer = _drawn(fig)
    assert _inside(fig._suptitle.get_window_extent(renderer), fig.bbox)
    for ax in fig.axes:
        assert _inside(ax.title.get_window_extent(renderer), fig.bbox)
        for text in ax.texts:  # fig2's point labels, within their panel
            assert _inside(text.get_window_extent(renderer), ax.get_window_extent(renderer), slack=2), text.get_text()
        labels = [t.get_window_extent(renderer) for t in ax.texts if type(t).__name__ == "Annotation"]
        assert not any(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1:])  # close points: apart
        assert len(labels) == {"fig2": 6 if ax is fig.axes[0] else 3}.get(name, 0)
    for legend in fig.legends:  # one legend below the panels, covering none of them
        box = legend.get_window_extent(renderer)
        assert _inside(box, fig.bbox) and not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)


DECLARED = {"it": ("it", "", ""), "im_seed": ("im_seed", "", ""), "im": ("im", "", ""),
            "neftune": ("it", "5.0", ""), "it_kl_0.1": ("it", "", "0.1"), "": ("", "", "")}


def _with_declared_attributes(tmp_path: Path, rename: bool):
    """MAIN_RUNS as runs.csv writes them now (labels, NEFTune, KL, swept); ``rename``: every method's
    paper_name replaced."""
    runs = []
    for run in MAIN_RUNS:
        labels, alpha, kl = DECLARED[run["method"]]
        runs.append({**run, "labels": labels, "neftune_alpha": alpha, "kl_lambda": kl, "swept": "",
                     "method_paper_name": f"Renamed {run['method']}" if rename and run["method"] else
                     run["method_paper_name"]})
    fields = [*RUN_FIELDS, "labels", "neftune_alpha", "kl_lambda", "swept"]
    (tmp_path / ("renamed" if rename else "as_is")).mkdir()
    paths = write_inputs(tmp_path / ("renamed" if rename else "as_is"), runs, fields=fields)
    return load_eval_long(paths["eval_long"]), load_runs(paths["runs"]), load_paper(PAPER_CSV)


def test_renaming_a_paper_name_drops_no_row(tmp_path):
    """Tables and figures find the paper's arms by the runs' declared attributes (labels policy, NEFTune,
    KL), not by method_paper_name: renaming every method keeps every row, value and paper match."""
    as_is, renamed = _with_declared_attributes(tmp_path, False), _with_declared_attributes(tmp_path, True)
    assert list(renamed[1]["arm"]) == list(as_is[1]["arm"]) == [
        "", "IT", "IM", "IM (Eq. 4)", "NEFTune", "IT", "NEFTune", "IT w/ KL (lambda=0.1)"]
    for key in ("table1", "table2", "table7"):
        strip = [{k: v for k, v in row.items() if k != "method"}
                 for row in tables.build_table(tables.TABLES[key], *as_is)]
        renamed_rows = tables.build_table(tables.TABLES[key], *renamed)
        assert strip == [{k: v for k, v in row.items() if k != "method"} for row in renamed_rows], key
        assert any(row["status"] == "ok" and row["run"] for row in renamed_rows), key
    before, after = figures.method_values(figures.Inputs(*as_is), MEAN_NAME, "mean_of_6_categories"), \
        figures.method_values(figures.Inputs(*renamed), MEAN_NAME, "mean_of_6_categories")
    assert list(after["run"]) == list(before["run"]) and len(after) == 4
