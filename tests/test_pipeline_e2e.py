"""The whole pipeline on a tiny configuration, for real: data -> training -> every benchmark kind ->
summaries -> tables, figures and the HTML report; then dry runs that check what a config change
reruns (only the changed run's branch and the aggregations downstream of it)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import REPO, snakemake
from imrepro.catalogue import FIGURES, TABLE_STEMS

DEMO_CONFIG = REPO / "profiles" / "demo" / "demo_config.yaml"
RUN_IT, RUN_IM = "demo_llama__lima_head64__it__ep2", "demo_llama__lima_head64__im_seed__ep2"
BASE = "base__demo_llama"
COMPARISON_COLUMNS = ("comparison", "model", "dataset", "benchmark", "metric", "n_items", "delta", "ci_low", "ci_high",
                      "p_value", "p_holm", "n_seeds")
BENCHMARKS = ["piqa", "hellaswag", "humaneval", "mt_bench", "alpaca_eval_1", "alpaca_eval_2", "regen_bleu",
              "output_loss"]
OVERLAY = f"""
extra_datasets: []
run_groups:
  tiny:
    models: [demo_llama]
    datasets: [lima_head64]
    methods: [it, im_seed]
use_run_groups: [tiny]
evaluation:
  benchmarks: [{", ".join(BENCHMARKS)}]
  lm_eval: {{source: local, batch_size: 8, limit: 2}}
  humaneval: {{n_samples: 2, temperatures: [0.1, 0.7], max_new_tokens: 16, limit: 2}}
  mt_bench: {{max_new_tokens: 8, limit: 2}}
  alpaca_eval: {{max_new_tokens: 8, limit: 3}}
  regen_bleu: {{max_new_tokens: 8, limit: 3}}
"""


def smk(workdir: Path, *args: str, overlay: str = OVERLAY):
    (workdir / "overlay.yaml").write_text(overlay)
    return snakemake("--directory", str(workdir), "--cores", "2", *args, "--configfile", str(DEMO_CONFIG),
                     str(workdir / "overlay.yaml"), timeout=1200)


def planned(stdout: str) -> dict[str, int]:
    """Job counts of the "Job stats" table of a dry run."""
    table = stdout.split("Job stats:")[1].split("\n\n")[0]
    return {line.split()[0]: int(line.split()[1]) for line in table.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("pipeline")
    result = smk(workdir, "all")
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir


@pytest.mark.slow
def test_every_benchmark_kind_is_scored_for_every_model(pipeline):
    for target in (RUN_IT, RUN_IM, BASE):
        summary = json.loads((pipeline / "results" / "eval" / target / "summary.json").read_text())
        assert summary["run"] == target and summary["provenance"]["git"]
        assert summary["not_shipped"] == ["hellaswag"]  # offline: listed, never scored
        assert summary["tasks"]["piqa"]["value"] is not None and summary["tasks"]["humaneval"]["value"] is not None
        extra = {(e["benchmark"], e["metric"]): e["value"] for e in summary["extra"]}
        assert extra[("MT-Bench", "score")] is not None and extra[("AlpacaEval 2.0", "win_rate")] is not None
        assert extra[("Output loss (held-out)", "mean_per_example_loss")] > 0
        if target == BASE:
            assert ("Regeneration BLEU", "bleu") not in extra  # no training set
            assert extra[("Output loss (train)", "mean_per_example_loss")] is None
        else:
            assert extra[("Regeneration BLEU", "bleu")] is not None
    with open(pipeline / "results" / "tables" / "eval_long.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["run"] for r in rows} == {RUN_IT, RUN_IM, BASE}
    assert list(rows[0]) == ["run", "benchmark", "metric", "value", "note", "seed"]
    assert {r["seed"] for r in rows if r["run"] == RUN_IT} == {"42"}  # training.seed: no seeds axis
    assert {r["seed"] for r in rows if r["run"] == BASE} == {""}


@pytest.mark.slow
def test_tables_figures_and_report(pipeline):
    results = pipeline / "results"
    table1 = (results / "tables" / "table1_main_results.md").read_text()
    assert "DEMO-SCALE" in table1 and "LIMA" in table1 and "not run" in table1
    for figure in FIGURES:
        assert (results / "figures" / f"{figure}.png").stat().st_size > 1000
        assert (results / "figures" / f"{figure}.pdf").stat().st_size > 1000
    with open(results / "tables" / "comparisons.csv", newline="") as handle:
        compared = list(csv.DictReader(handle))
    assert set(COMPARISON_COLUMNS) <= set(compared[0]) and {r["comparison"] for r in compared} == {"im_seed vs it"}
    assert {"PIQA", "HumanEval", "MT-Bench", "AlpacaEval 1.0", "AlpacaEval 2.0", "Regeneration BLEU",
            "Output loss (held-out)", "Understanding & Knowledge", "Mean (18 NLP tasks)"} <= {r["benchmark"]
                                                                                         for r in compared}
    assert all(float(r["ci_low"]) <= float(r["ci_high"]) and 0 <= float(r["p_holm"]) <= 1 for r in compared)
    assert "vs IT" in table1 and "im_seed vs it" in (results / "tables" / "comparisons.md").read_text()
    report = (results / "report.html").read_text(errors="replace")
    assert len(report) > 100_000 and "Table 1" in report
    provenance = json.loads((results / "provenance.json").read_text())
    assert provenance["packages"]["snakemake"] and provenance["config"]["use_run_groups"] == ["tiny"]


@pytest.mark.slow
def test_nothing_to_do_after_a_complete_run(pipeline):
    result = smk(pipeline, "-n", "all")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout, result.stdout[-3000:]


@pytest.mark.slow
def test_changing_one_method_reruns_only_its_branch(pipeline):
    """NEFTune added to im_seed: its training run, its benchmark jobs and everything aggregated from them
    (and the provenance record, which holds the config) are planned; the IT run, the base model and the
    data stage are not."""
    changed = OVERLAY + "methods:\n  im_seed: {paper_name: IM, labels: im_authors, neftune_alpha: 5}\n"
    result = smk(pipeline, "-n", "all", overlay=changed)
    assert result.returncode == 0, result.stdout[-3000:]
    jobs = planned(result.stdout)
    assert jobs.pop("train_model") == 1
    # eval_result: the copies of the per-model jobs' results; runs_table: runs.csv carries the method's settings
    per_target = {"lm_eval": 1, "model_outputs": 1, "humaneval": 1, "judge_mt_bench": 1, "judge_alpaca_eval": 2,
                  "eval_summary": 1, "eval_items": 1, "eval_result": 3}
    downstream = {"eval_long_table": 1, "runs_table": 1, "paper_table": len(TABLE_STEMS), "paper_figure": len(FIGURES),
                  "provenance": 1, "comparisons": 1, "report": 1, "all": 1}
    jobs.pop("total")
    assert jobs == {**per_target, **downstream}
    outputs = [line for line in result.stdout.splitlines() if line.strip().startswith("output:")]
    assert any(f"results/eval/{RUN_IM}/" in line for line in outputs)
    assert not any(f"/{RUN_IT}" in line or f"/{BASE}/" in line for line in outputs)


@pytest.mark.slow
def test_one_figure_and_one_benchmark_rerun_alone(pipeline):
    figure = smk(pipeline, "-n", "--force", "results/figures/fig2.png")
    assert planned(figure.stdout) == {"paper_figure": 1, "total": 1}, figure.stdout[-2000:]
    copy = smk(pipeline, "-n", "--force", f"results/eval/{RUN_IT}/piqa.json")  # the result file: its local copy
    assert planned(copy.stdout) == {"eval_result": 1, "total": 1}, copy.stdout[-2000:]
    bench = smk(pipeline, "-n", "--force", f"results/eval/{RUN_IT}/lm_eval")  # that model's lm-eval job (folder)
    assert planned(bench.stdout) == {"lm_eval": 1, "total": 1}, bench.stdout[-2000:]
    rescore = smk(pipeline, "-n", "--force", f"results/eval/{RUN_IT}/humaneval.json")
    assert planned(rescore.stdout) == {"humaneval": 1, "total": 1}, rescore.stdout[-2000:]  # the sandbox only
