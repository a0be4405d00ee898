"""Paired comparisons: the statistics find a planted difference and keep their coverage under none, equal
scipy's own interval, pair items by id (and refuse different item sets); the per-item readers and the one
result record; comparisons.csv and its joins into the tables and the forest plot."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from imrepro.eval import item_scores
from imrepro.eval.result_record import BenchmarkResult, ItemScore, load_result
from imrepro.report import comparisons as cmp
from imrepro.report import figures, paired_stats, tables

FAST = 999  # resamples: enough for the checks below, seconds for the whole file


# ---- statistics -------------------------------------------------------------------------------

def test_planted_difference_is_found():
    rng = np.random.default_rng(1)
    a = rng.normal(50, 10, 300)
    b = a + 2.0 + rng.normal(0, 3, 300)  # correlated pairs, a true difference of 2
    result = paired_stats.paired_difference(a, b, n_resamples=FAST, seed=0)
    assert result.ci_low > 0 and result.ci_low < 2.0 < result.ci_high and result.p_value < 0.01


def test_no_difference_interval_covers_zero_about_95_percent():
    """200 seeded repetitions with no true difference: coverage 95 % within a binomial tolerance (3 sd)."""
    rng = np.random.default_rng(7)
    covered = 0
    repetitions = 200
    for rep in range(repetitions):
        a = rng.normal(0, 1, 40)
        b = a + rng.normal(0, 1, 40)  # paired noise, mean difference 0
        result = paired_stats.paired_difference(a, b, n_resamples=FAST, seed=rep)
        covered += result.ci_low <= 0 <= result.ci_high
    tolerance = 3 * math.sqrt(0.95 * 0.05 / repetitions)
    assert abs(covered / repetitions - 0.95) <= tolerance, covered


def test_interval_equals_scipys_and_is_reproducible():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 60), rng.normal(0.3, 1, 60)
    ours = paired_stats.paired_difference(a, b, n_resamples=FAST, seed=11)
    theirs = stats.bootstrap((b, a), lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis), paired=True,
                             n_resamples=FAST, rng=np.random.default_rng(11)).confidence_interval
    assert (ours.ci_low, ours.ci_high) == pytest.approx((theirs.low, theirs.high))
    assert paired_stats.paired_difference(a, b, n_resamples=FAST, seed=11) == ours
    assert ours.delta == pytest.approx(b.mean() - a.mean())


def test_composite_resamples_within_tasks_and_holm_matches_statsmodels():
    rng = np.random.default_rng(5)
    diffs = [rng.normal(1.0, 1, 80), rng.normal(1.0, 1, 20)]
    result = paired_stats.composite_difference(diffs, lambda m: m.mean(axis=-1), n_resamples=FAST, seed=0)
    assert result.delta == pytest.approx((diffs[0].mean() + diffs[1].mean()) / 2)  # tasks weigh equally
    assert result.ci_low < result.delta < result.ci_high and result.p_value < 0.01
    assert paired_stats.holm([0.01, 0.04, math.nan, 0.03]) == pytest.approx([0.03, 0.06, math.nan, 0.06],
                                                                            nan_ok=True)


def test_pairing_is_by_item_id_and_rejects_different_item_sets():
    a = {"q1": (1.0, "", ""), "q2": (2.0, "", ""), "q3": (None, "", "")}
    b = {"q2": (4.0, "", ""), "q1": (2.0, "", ""), "q3": (5.0, "", "")}  # another order, same ids
    paired = paired_stats.pair_items(a, b, "test")
    assert paired.units == ("q1", "q2") and list(paired.b - paired.a) == [1.0, 2.0]
    assert paired.n_excluded == 1  # unparseable on one side: out on both
    with pytest.raises(ValueError, match=r"MMLU: the two arms scored different items \(1 only in the first, "
                                         r"e.g. \['q3'\]; 0 only"):
        paired_stats.pair_items(a, {k: v for k, v in b.items() if k != "q3"}, "MMLU")
    with pytest.raises(ValueError, match="different doc_hash"):
        paired_stats.pair_items({"d": (1.0, "", "h1")}, {"d": (1.0, "", "h2")}, "GSM8K")


def test_clusters_are_the_resampled_unit():
    a = {f"{q}/{t}": (float(q), str(q), "") for q in range(5) for t in (1, 2)}
    b = {f"{q}/{t}": (float(q) + t, str(q), "") for q in range(5) for t in (1, 2)}
    paired = paired_stats.pair_items(a, b, "MT-Bench")
    assert len(paired.units) == 5 and paired.n_items == 10 and list(paired.b - paired.a) == [1.5] * 5


# ---- records and readers ----------------------------------------------------------------------

def test_result_record_checks_its_fields(tmp_path):
    path = tmp_path / "mmlu.json"
    BenchmarkResult("mmlu", "lm_eval", 0.5, "acc,none", details={"n": 3},
                    items=[ItemScore("t/0", 100.0, filter="none", doc_hash="h")]).write(path)
    assert load_result(path)["items"][0] == {"item": "t/0", "score": 100.0, "cluster": "", "filter": "none",
                                             "doc_hash": "h"}
    with pytest.raises(ValueError, match="field 'kind' is 'judged'"):
        BenchmarkResult("mt_bench", "judged", 5.0, "score")
    with pytest.raises(ValueError, match="details repeat core field"):
        BenchmarkResult("mt_bench", "judge", 5.0, "score", details={"value": 1}).to_dict()
    path.write_text(json.dumps({"benchmark": "mmlu", "kind": "lm_eval", "status": "scored", "value": "high",
                                "metric": "acc"}))
    with pytest.raises(ValueError, match=f"{path}: field 'value' is 'high'"):
        load_result(path)


def test_lm_eval_items_per_doc_and_filter():
    samples = {"gsm": [{"doc_id": 0, "filter": "strict-match", "exact_match": 1.0, "doc_hash": "a"},
                       {"doc_id": 0, "filter": "flexible-extract", "exact_match": 0.0, "doc_hash": "a"},
                       {"doc_id": 1, "filter": "strict-match", "exact_match": 0.0, "doc_hash": "b"}]}
    items = item_scores.lm_eval_items(samples, "exact_match,strict-match", 1.0)
    assert [(i.item, i.score, i.filter, i.doc_hash) for i in items] == [("gsm/0", 100.0, "strict-match", "a"),
                                                                        ("gsm/1", 0.0, "strict-match", "b")]
    corpus = {"wmt": [{"doc_id": 0, "filter": "none", "ter": ("ref", "hyp")}]}
    assert item_scores.lm_eval_items(corpus, "ter,none", 0.01) is None  # a corpus metric: no per-item scores


def test_stock_tool_readers(tmp_path):
    judgments = tmp_path / "j.jsonl"
    judgments.write_text("".join(json.dumps(r) + "\n" for r in (
        {"question_id": 81, "turn": 1, "score": 7}, {"question_id": 81, "turn": 2, "score": None},
        {"question_id": 82, "turn": 1, "score": -1})))
    assert [(i.item, i.score, i.cluster) for i in item_scores.mt_bench_items(judgments)] == [
        ("81/1", 7.0, "81"), ("81/2", None, "81"), ("82/1", None, "82")]
    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps([{"instruction": "x", "preference": 2.0}, {"instruction": "y", "preference": 0},
                                       {"instruction": "z", "preference": None},
                                       {"instruction": "w", "preference": 1.25}]))
    assert [i.score for i in item_scores.alpaca_eval_items(annotations)] == [100.0, 50.0, None, 25.0]
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps({"task_id": t, "temperature": temp, "passed": p}) + "\n"
                               for t, temp, p in (("H/0", 0.1, True), ("H/0", 0.1, False), ("H/0", 0.7, True))))
    assert [(i.item, i.score) for i in item_scores.humaneval_items(samples, 0.1)] == [("H/0", 50.0)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 1}\n')
    with pytest.raises(ValueError, match=f"{bad}:1: expected"):
        item_scores.mt_bench_items(bad)


# ---- comparisons.csv --------------------------------------------------------------------------

RUN_FIELDS = ["run", "model", "model_paper_name", "dataset", "dataset_paper_name", "method", "method_paper_name",
              "epochs", "is_base", "n_examples", "ratio_output_instruction", "judge_label", "seed"]
NAMES = {"it": "IT", "im_seed": "IM", "im": "IM (Eq. 4)"}


def synthetic(tmp_path: Path, seeds: int = 1, shift: float = 5.0) -> tuple[Path, list[Path]]:
    """runs.csv and items files: it, im_seed (MMLU + shift, AlpacaEval 1.0 and MT-Bench equal in expectation)
    and im on one dataset, ``seeds`` runs each."""
    rng = np.random.default_rng(0)
    runs, paths = [], []
    truth = rng.uniform(20, 80, 200)
    for method in ("it", "im_seed", "im"):
        for seed in range(seeds):
            run = f"m__d__{method}__ep2" + (f"__s{seed}" if seeds > 1 else "")
            runs.append({"run": run, "model": "m", "model_paper_name": "LLaMA-2-7B", "dataset": "d",
                         "dataset_paper_name": "D", "method": method, "method_paper_name": NAMES[method],
                         "epochs": 2, "is_base": "False", "n_examples": 64, "ratio_output_instruction": 1.0,
                         "judge_label": "", "seed": seed})
            bump = shift if method == "im_seed" else 0.0
            mmlu = [ItemScore(f"mmlu_x/{i}", float(np.clip(truth[i] + bump + rng.normal(0, 3), 0, 100)),
                              doc_hash=f"h{i}") for i in range(200)]
            alpaca = [ItemScore(f"instr {i}", None if i == 3 and method == "it" else float(rng.integers(0, 2) * 100))
                      for i in range(30)]
            mt = [ItemScore(f"{q}/{t}", float(rng.integers(1, 11)), str(q)) for q in range(10) for t in (1, 2)]
            benchmarks = [item_scores.BenchmarkItems("MMLU", "acc,none", "mmlu", True, mmlu, 1.5),
                          item_scores.BenchmarkItems("AlpacaEval 1.0", "win_rate", "alpaca_eval_1", True, alpaca),
                          item_scores.BenchmarkItems("MT-Bench", "score", "mt_bench", True, mt)]
            path = tmp_path / f"{run}.items.json"
            item_scores.write_items(path, run, benchmarks)
            paths.append(path)
    runs.append({**runs[0], "run": "base__m", "dataset": "", "method": "", "method_paper_name": "none",
                 "epochs": "", "is_base": "True", "seed": ""})
    runs_csv = tmp_path / "runs.csv"
    with open(runs_csv, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RUN_FIELDS)
        writer.writeheader()
        writer.writerows(runs)
    return runs_csv, paths


def comparisons_frame(tmp_path: Path, seeds: int = 1, settings: cmp.Settings | None = None) -> pd.DataFrame:
    from imrepro.report.report_inputs import load_runs

    runs_csv, paths = synthetic(tmp_path, seeds)
    frame = cmp.compare(load_runs(runs_csv), cmp.load_items(paths), settings or cmp.Settings(n_resamples=FAST))
    out = tmp_path / "comparisons.csv"
    cmp.write_csv(frame, out)
    return cmp.load_comparisons(out)


def test_every_method_against_it_and_named_pairs(tmp_path):
    frame = comparisons_frame(tmp_path, settings=cmp.Settings(pairs=(("im", "im_seed"),), n_resamples=FAST))
    assert set(frame["comparison"]) == {"im_seed vs it", "im vs it", "im_seed vs im"}
    assert set(cmp.COLUMNS) <= set(frame.columns)
    mmlu = frame[(frame["comparison"] == "im_seed vs it") & (frame["benchmark"] == "MMLU")].iloc[0]
    assert mmlu["ci_low"] > 0 and mmlu["significant"] and mmlu["n_items"] == 200 and mmlu["stderr_lm_eval_a"] == 1.5
    alpaca = frame[(frame["comparison"] == "im_seed vs it") & (frame["benchmark"] == "AlpacaEval 1.0")].iloc[0]
    assert alpaca["n_items"] == 29 and alpaca["n_excluded"] == 1  # it's unparseable verdict: out on both sides
    mt = frame[(frame["comparison"] == "im vs it") & (frame["benchmark"] == "MT-Bench")].iloc[0]
    assert mt["n_items"] == 20 and mt["n_units"] == 10  # questions are resampled
    composites = frame[frame["benchmark"].isin(["Understanding & Knowledge", "Mean (18 NLP tasks)"])]
    assert len(composites) == 6 and set(composites["family"]) == {"table1"}
    tasks = frame[(frame["comparison"] == "im_seed vs it") & (frame["family"] == "tasks")]
    assert list(tasks["p_holm"]) == list(tasks["p_value"])  # one task: Holm changes nothing


def test_seeds_average_items_and_report_the_spread(tmp_path):
    frame = comparisons_frame(tmp_path, seeds=3)
    mmlu = frame[(frame["comparison"] == "im_seed vs it") & (frame["benchmark"] == "MMLU")].iloc[0]
    assert mmlu["n_seeds"] == 3 and mmlu["seed_sd_a"] > 0 and len(mmlu["runs_b"].split()) == 3
    assert mmlu["interval_covers"].startswith("items (seeds fixed")


def test_mismatched_item_sets_are_an_error(tmp_path):
    from imrepro.report.report_inputs import load_runs

    runs_csv, paths = synthetic(tmp_path)
    items = cmp.load_items(paths)
    first = items["m__d__im_seed__ep2"][("MMLU", "acc,none")]
    first.items = first.items[:-1]
    with pytest.raises(ValueError, match="im_seed vs it, d, MMLU: the two arms scored different items"):
        cmp.compare(load_runs(runs_csv), items, cmp.Settings(n_resamples=FAST))


def test_tables_and_forest_show_the_intervals(tmp_path):
    frame = comparisons_frame(tmp_path)
    text = cmp.to_markdown(frame, cmp.Settings(n_resamples=FAST))
    assert "**im_seed vs it** on d" in text and "significant on" in text and "MMLU +" in text
    row = frame[(frame["comparison"] == "im vs it") & (frame["benchmark"] == "AlpacaEval 1.0")].iloc[0]
    run = type("Run", (), {"run": "m__d__im__ep2"})()
    cell = {"_decimals": 2, "paper": None, "status": "no paper value", "ours": 40.0, "judge": "", "diff": None,
            **tables._vs_it(frame, run, tables.Column("AlpacaEval 1.0", "AlpacaEval 1.0", "win_rate", "x"),
                            frozenset({"m__d__it__ep2"}))}
    assert cell["vs_it"] == pytest.approx(row["delta"])
    mark = "*" if row["significant"] else ""
    assert tables.format_cell(cell) == (f"40.00 / —; vs IT {row['delta']:+.2f} [{row['ci_low']:+.2f}, "
                                        f"{row['ci_high']:+.2f}]{mark}")
    inputs = figures.Inputs(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), label="L", comparisons=frame)
    fig = figures.make_figure("forest", inputs)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["im_seed vs it", "im vs it"]
