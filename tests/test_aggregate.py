"""Aggregation reproduces Table 1's Mean from its category values; missing tasks are never hidden."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from imrepro.eval import aggregate
from imrepro.eval.aggregate import CATEGORIES, CODE_TASKS, MEAN_NAME, PAPER_TASKS

PAPER_CSV = Path(__file__).resolve().parents[1] / "resources" / "paper" / "paper_results.csv"


def table1() -> dict[tuple[str, str, str], dict[str, float]]:
    frame = pd.read_csv(PAPER_CSV)
    frame = frame[frame["table"] == "Table 1"]
    rows = {}
    for key, group in frame.groupby(["model", "train_dataset", "method"], sort=False):
        rows[key] = dict(zip(group["benchmark"], group["value"].astype(float), strict=True))
    return rows


def test_table1_structure():
    rows = table1()
    assert len(rows) == 23
    for values in rows.values():
        assert set(CATEGORIES.values()) | {MEAN_NAME} <= set(values)


TABLE1 = table1()


@pytest.mark.parametrize(("row", "values"), list(TABLE1.items()), ids=[" / ".join(key) for key in TABLE1])
def test_mean_of_categories_reproduces_table1(row, values):
    categories = {key: values[name] for key, name in CATEGORIES.items()}
    assert aggregate.nlp_mean(categories) == pytest.approx(values[MEAN_NAME], abs=0.006)
    # the same through category_scores: give every task of a category the category's value
    task_scores = {t.key: categories[t.category] / 100 for t in PAPER_TASKS}
    recomputed = aggregate.category_scores(task_scores)
    assert recomputed == pytest.approx(categories, abs=1e-9)
    summary = aggregate.summarize("paper", task_scores)
    assert summary[aggregate.MEAN_KEY] == pytest.approx(values[MEAN_NAME], abs=0.006)
    assert summary["complete"] and not summary["partial"]


def test_category_is_unweighted_mean_of_tasks_and_mean_is_mean_of_categories():
    scores = {t.key: 0.5 for t in PAPER_TASKS} | {"mmlu": 1.0, "bbh": 0.2}
    categories = aggregate.category_scores(scores)
    assert categories["understanding_knowledge"] == pytest.approx(100 * (1.0 + 4 * 0.5) / 5)
    assert categories["bbh"] == pytest.approx(20.0)
    assert aggregate.nlp_mean(categories) == pytest.approx((60 + 50 + 50 + 50 + 20 + 50) / 6)
    # not the mean of the 18 tasks
    assert aggregate.nlp_mean(categories) != pytest.approx(100 * sum(scores.values()) / 18)


def test_catalogue():
    assert len(PAPER_TASKS) == 18 and len({t.key for t in PAPER_TASKS}) == 18
    per_category = {c: [t.key for t in PAPER_TASKS if t.category == c] for c in CATEGORIES}
    assert [len(v) for v in per_category.values()] == [5, 3, 4, 2, 1, 3]
    assert "humaneval" in per_category["math_code_reasoning"]
    ter = [t for t in PAPER_TASKS if not t.higher_is_better]
    assert [t.key for t in ter] == ["wmt14", "wmt16"]
    assert all(t.metric == "ter,none" and t.scale == 0.01 for t in ter)
    assert [t.key for t in CODE_TASKS if t.category == "multilinguality"] == ["lambada_multilingual", "wmt"]


def test_missing_task_is_reported_not_averaged_away():
    scores = {t.key: 0.4 for t in PAPER_TASKS if t.key != "humaneval"} | {"gsm8k": 0.1}
    categories = aggregate.category_scores(scores)
    assert categories["math_code_reasoning"] is None
    assert aggregate.nlp_mean(categories) is None
    summary = aggregate.summarize("run-a", scores)
    assert summary["missing_tasks"] == ["humaneval"] and not summary["complete"] and not summary["partial"]
    assert summary["categories"]["math_code_reasoning"]["tasks_missing"] == ["humaneval"]
    assert summary[aggregate.MEAN_KEY] is None
    assert aggregate.summarize("run-a", scores | {"humaneval": None})["missing_tasks"] == ["humaneval"]
    assert aggregate.summarize("run-a", scores | {"humaneval": float("nan")})["missing_tasks"] == ["humaneval"]


def test_allow_partial_says_what_was_averaged():
    scores = {t.key: 0.4 for t in PAPER_TASKS if t.key != "humaneval"} | {"gsm8k": 0.1}
    summary = aggregate.summarize("run-a", scores, allow_partial=True)
    math = summary["categories"]["math_code_reasoning"]
    assert math["score"] == pytest.approx(10.0)
    assert math["tasks_averaged"] == ["gsm8k"] and math["tasks_missing"] == ["humaneval"]
    assert summary["partial"] and summary["missing_tasks"] == ["humaneval"]
    assert summary[aggregate.MEAN_KEY] == pytest.approx((40 * 5 + 10) / 6)
    # a category with no task at all stays None even when partial; the Mean then averages 5 categories
    no_bbh = {k: v for k, v in scores.items() if k != "bbh"}
    categories = aggregate.category_scores(no_bbh, allow_partial=True)
    assert categories["bbh"] is None
    assert aggregate.nlp_mean(categories, allow_partial=True) == pytest.approx((40 * 4 + 10) / 5)


def test_ter_is_averaged_like_an_accuracy_and_flagged():
    scores = {t.key: 0.5 for t in PAPER_TASKS} | {"wmt14": 0.9, "wmt16": 0.8}  # TER 90 / 80: bad translation
    assert aggregate.category_scores(scores)["multilinguality"] == pytest.approx(100 * (0.5 + 0.9 + 0.8) / 3)
    summary = aggregate.summarize("r", scores)
    assert summary["tasks"]["wmt14"]["higher_is_better"] is False
    assert any("lower is better" in note for note in summary["notes"])
    rows = aggregate.to_long_rows("r", summary)
    wmt = [r for r in rows if r[1] == "WMT 2014"]
    assert wmt == [("r", "WMT 2014", "ter,none [lower is better]", pytest.approx(90.0))]


def test_code_catalogue_pools_wmt_into_one_entry():
    scores = {t.key: 0.5 for t in CODE_TASKS} | {"wmt": 0.9}
    assert aggregate.category_scores(scores, tasks=CODE_TASKS)["multilinguality"] == pytest.approx(70.0)


def test_summary_and_long_csv_files(tmp_path):
    scores = {t.key: 0.5 for t in PAPER_TASKS}
    summary = aggregate.summarize("lima_im", scores, extra=[("MT-Bench", "score", 4.83)])
    aggregate.write_summary(tmp_path / "eval" / "lima_im" / "summary.json", summary)
    assert json.loads((tmp_path / "eval" / "lima_im" / "summary.json").read_text()) == summary
    rows = aggregate.to_long_rows("lima_im", summary)
    assert len(rows) == 18 + 6 + 1 + 1
    assert ("lima_im", MEAN_NAME, "mean_of_6_categories", pytest.approx(50.0)) in rows
    assert ("lima_im", "MT-Bench", "score", 4.83) in rows
    partial = aggregate.summarize("base", {"mmlu": 0.6})
    rows += aggregate.to_long_rows("base", partial)
    path = tmp_path / "tables" / "eval_long.csv"
    aggregate.write_long_csv(path, rows)
    with open(path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert list(read[0]) == ["run", "benchmark", "metric", "value"]
    assert len(read) == len(rows)
    base_mean = [r for r in read if r["run"] == "base" and r["benchmark"] == MEAN_NAME]
    assert base_mean[0]["value"] == ""  # missing stays visible as an empty value


def test_task_scores_from_lm_eval_output():
    output = {
        "results": {
            "mmlu": {"acc,none": 0.45},
            "arc_easy": {"acc_norm,none": 0.8}, "arc_challenge": {"acc_norm,none": 0.5},
            "wmt14-en-fr": {"ter,none": 60.0}, "wmt14-fr-en": {"ter,none": 50.0},
            "wmt16-en-de": {"ter,none": 70.0},  # the other three WMT16 directions are missing
        },
        "n-samples": {"arc_easy": {"original": 2376, "effective": 2376},
                      "arc_challenge": {"original": 1172, "effective": 1172},
                      "wmt14-en-fr": {"original": 3003, "effective": 3003},
                      "wmt14-fr-en": {"original": 3003, "effective": 3003}},
    }
    scores = aggregate.task_scores_from_lm_eval(output, humaneval_pass1=0.12)
    assert scores["mmlu"] == 0.45 and scores["humaneval"] == 0.12
    assert scores["arc"] == pytest.approx((0.8 * 2376 + 0.5 * 1172) / (2376 + 1172))
    assert scores["wmt14"] == pytest.approx(0.55)  # TER/100
    assert "wmt16" not in scores and "piqa" not in scores
    plain = aggregate.task_scores_from_lm_eval(output["results"], subtask_weighting="mean")
    assert plain["arc"] == pytest.approx(0.65)
    with pytest.raises(ValueError, match="n-samples"):
        aggregate.task_scores_from_lm_eval(output["results"])
