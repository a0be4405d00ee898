"""The evaluation stage's wiring: which models get which benchmarks, one rule per (model, benchmark),
the output-loss analysis and the per-model summaries."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, snakemake
from imrepro import workflow_config as wc
from imrepro.data.role_record import load_role_record
from imrepro.eval import aggregate
from imrepro.eval import summary as eval_summary
from imrepro.eval.catalogue import ALL_BENCHMARKS, LM_EVAL_TASKS
from imrepro.train.label_policies import it_weights
from train_helpers import tiny_inputs, train_env


@pytest.fixture(scope="module")
def paper_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def counts(stdout: str) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1]) for line in stdout.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


# ---- which models get which benchmarks -----------------------------------------------------------

def test_paper_grid_targets(paper_config):
    config = wc.prepare(paper_config)
    targets = wc.eval_targets(config)
    assert set(wc.runs(config)) == {t.run for t in targets.values() if t.run}
    # Fig. 2 subsets are scored on AlpacaEval 1.0 only; Table 1 runs on everything
    assert targets["llama2_7b__tulu_v2_ratio10__it__ep2"].benchmarks == ("alpaca_eval_1",)
    assert targets["llama2_7b__lima__im_seed__ep2"].benchmarks == ALL_BENCHMARKS
    # each base model once, on what its runs get, minus what needs a training set
    base = targets["base__llama2_7b"]
    assert base.run is None and "regen_bleu" not in base.benchmarks and "mmlu" in base.benchmarks
    assert {t for t in targets if t.startswith("base__")} == {"base__llama2_7b", "base__llama2_13b", "base__opt_6.7b"}


def test_unknown_benchmark_names_the_key(paper_config):
    config = copy.deepcopy(paper_config)
    config["run_groups"]["fig2_size"]["benchmarks"] = ["alpaca_eval_1", "alpacaeval"]
    with pytest.raises(wc.ConfigError, match=r"run_groups.fig2_size.benchmarks\[1\].*unknown benchmark 'alpacaeval'"):
        wc.prepare(config)


def test_paper_grid_evaluate_dry_run(tmp_path, paper_config):
    """One lm-eval job per model (all of its tasks, one model load), GPU declared; judges and summaries run
    locally."""
    result = snakemake("--directory", str(tmp_path), "--nolock", "-n", "evaluate")
    assert result.returncode == 0, result.stdout[-3000:]
    planned = counts(result.stdout)
    targets = wc.eval_targets(wc.prepare(paper_config))
    assert planned["lm_eval"] == sum(bool(set(t.benchmarks) & set(LM_EVAL_TASKS)) for t in targets.values())
    assert planned["lm_eval"] < len(targets)  # the Fig. 2 runs have no NLP task
    # one model job per model for everything else the model writes
    assert planned["model_outputs"] == sum(bool(set(t.benchmarks) & MODEL_JOB_BENCHMARKS) for t in targets.values())
    # rule names do not depend on the config: no numbered copies of a rule
    assert not [name for name in planned if re.search(r"_\d+$", name)]
    assert planned["eval_result"] == sum(len(set(t.benchmarks) & (set(LM_EVAL_TASKS) | {"output_loss", "regen_bleu"}))
                                         for t in targets.values())
    assert planned["humaneval"] == sum("humaneval" in t.benchmarks for t in targets.values())
    assert planned["eval_summary"] == len(targets)
    assert planned["judge_alpaca_eval"] == sum("alpaca_eval_1" in t.benchmarks for t in targets.values()) + sum(
        "alpaca_eval_2" in t.benchmarks for t in targets.values())
    assert planned["eval_long_table"] == planned["runs_table"] == 1
    assert "gpu=1" in result.stdout


MODEL_JOB_BENCHMARKS = {"output_loss", "regen_bleu", "alpaca_eval_1", "alpaca_eval_2", "mt_bench", "humaneval"}


def test_one_benchmark_of_one_model_alone(tmp_path):
    """`snakemake results/eval/<run>/mmlu.json` plans that model's lm-eval job (and what it needs), nothing
    else of the stage."""
    run = "llama2_7b__lima__it__ep2"
    result = snakemake("--directory", str(tmp_path), "--nolock", "-n", f"results/eval/{run}/mmlu.json")
    assert result.returncode == 0, result.stdout[-3000:]
    planned = counts(result.stdout)
    assert planned["lm_eval"] == planned["train_model"] == 1
    assert not {"humaneval", "eval_summary", "judge_mt_bench"} & set(planned)
    scored = counts(snakemake("--directory", str(tmp_path), "--nolock", "-n",
                              f"results/eval/{run}/humaneval.json").stdout)  # that model's model job, then the sandbox
    assert (scored["humaneval"], scored["train_model"]) == (1, 1)
    assert scored["model_outputs"] == 1
    assert "lm_eval" not in scored


def test_rule_names_do_not_depend_on_the_config(tmp_path):
    """The paper's grid, the demo and the study list the same rules (--set-resources, --until, -R stay valid)."""
    listed = [snakemake("--directory", str(tmp_path), "--list-rules", *profile).stdout.splitlines()
              for profile in ([], ["--profile", str(REPO / "profiles" / "demo")],
                              ["--profile", str(REPO / "profiles" / "study")])]
    rules = [[line for line in lines if re.fullmatch(r"\w+", line)] for lines in listed]  # not the profile notes
    assert rules[0] == rules[1] == rules[2]
    assert {"lm_eval", "model_outputs", "eval_result"} <= set(rules[0])


@pytest.mark.parametrize("path, message", [
    ("results/eval/llama2_7b__tulu_v2_ratio10__it__ep2/mmlu.json",
     "benchmark 'mmlu' is not configured for 'llama2_7b__tulu_v2_ratio10__it__ep2'"),
    ("results/eval/llama2_7b__lima__sft__ep2/mmlu.json", "unknown evaluation target 'llama2_7b__lima__sft__ep2'"),
])
def test_unconfigured_requests_fail_clearly(tmp_path, path, message):
    result = snakemake("--directory", str(tmp_path), "--nolock", "-n", path)
    assert result.returncode != 0
    assert message in result.stdout


# ---- output loss ---------------------------------------------------------------------------------

def output_loss_job(inputs, out, **fields) -> list[str]:
    """eval_model_outputs.py arguments for an output-loss-only model job."""
    job = {"output": str(out), "run": "tiny", "train": str(inputs["record"]), "heldout": str(inputs["record"]),
           **fields}
    return [sys.executable, "workflow_scripts/eval_model_outputs.py", "--model", str(inputs["model"]),
            "--model-id", "tiny", "--jobs", json.dumps({"output_loss": job}),
            "--stats-output", str(out.with_suffix(".stats.json"))]


def test_output_loss_matches_a_direct_computation(tmp_path_factory, tmp_path):
    inputs = tiny_inputs(tmp_path_factory)
    out = tmp_path / "output_loss.json"
    subprocess.run(output_loss_job(inputs, out, limit=5, token_budget=300, reference=str(inputs["record"])), cwd=REPO,
                   env=train_env(), check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert result["benchmark"] == "output_loss" and len(result["train"]["losses"]) == 5
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(inputs["model"], dtype=torch.float32).eval()
    record = load_role_record(inputs["record"])
    with_output = [i for i in range(5) if (it_weights(record.example(i)[1]) > 0).any()]
    assert len(with_output) >= 2  # (an example truncated before its answer has no output loss: None)
    assert all(result["train"]["losses"][i] is None for i in set(range(5)) - set(with_output))
    for i in with_output[:2]:  # one example alone through the model: mean NLL over the tokens IT trains
        ids, roles = record.example(i)
        with torch.no_grad():
            logits = model(torch.tensor(ids[None], dtype=torch.long)).logits[0, :-1]
        nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:], dtype=torch.long), reduction="none")
        mask = torch.tensor(it_weights(roles)[1:] > 0)
        assert result["train"]["losses"][i] == pytest.approx(nll[mask].mean().item(), rel=1e-4)
    assert result["heldout"]["mean"] == pytest.approx(np.mean([result["train"]["losses"][i] for i in with_output]))
    assert result["reference"]["losses"] == result["heldout"]["losses"]  # the same record, a third split


def test_output_loss_needs_a_model_directory(tmp_path_factory, tmp_path):
    inputs = tiny_inputs(tmp_path_factory)
    proc = subprocess.run(output_loss_job({**inputs, "model": tmp_path / "none"}, tmp_path / "o.json"), cwd=REPO,
                          env=train_env(), capture_output=True, text=True)
    assert proc.returncode == 1 and "not a model directory" in proc.stderr
    assert not (tmp_path / "o.json").exists()


# ---- summaries -----------------------------------------------------------------------------------

def _results(tmp_path):
    files = {
        "mmlu": {"benchmark": "mmlu", "kind": "lm_eval", "status": "scored", "value": 0.40, "metric": "acc,none"},
        "piqa": {"benchmark": "piqa", "kind": "lm_eval", "status": "scored", "value": 0.60, "metric": "acc_norm,none"},
        "hellaswag": {"benchmark": "hellaswag", "kind": "lm_eval", "status": "not_shipped", "value": None,
                      "metric": "acc_norm,none", "reason": "no local data"},
        "humaneval": {"benchmark": "humaneval", "kind": "generation", "status": "scored", "value": 0.05,
                      "metric": "pass@1"},
        "mt_bench": {"benchmark": "mt_bench", "kind": "judge", "status": "scored", "value": 3.5, "metric": "score",
                     "n_unparseable": 2},
        "alpaca_eval_1": {"benchmark": "alpaca_eval_1", "kind": "judge", "status": "scored", "value": 25.0,
                          "metric": "win_rate", "lc_win_rate": None, "avg_length": 120.0},
        "output_loss": {"benchmark": "output_loss", "kind": "loss", "status": "scored", "value": 1.2,
                        "metric": "loss", "train": {"mean": 1.0}, "heldout": {"mean": 1.2},
                        "reference": {"mean": 2.5}},
    }
    paths = []
    for name, data in files.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        paths.append(path)
    return paths


def test_summary_lists_not_shipped_and_judged(tmp_path):
    out = tmp_path / "summary.json"
    subprocess.run([sys.executable, "workflow_scripts/eval_summary.py", "summary", "--target", "r1",
                    "--allow-partial", "--judge-label", "demo-judge", "--not-shipped", "wmt14", "--output", str(out),
                    *map(str, _results(tmp_path))],
                   cwd=REPO, check=True, capture_output=True)
    summary = json.loads(out.read_text())
    assert summary["not_shipped"] == ["wmt14", "hellaswag"] and summary["partial"] and not summary["complete"]
    assert "wmt14" not in summary["benchmarks_not_evaluated"] and "coqa" in summary["benchmarks_not_evaluated"]
    assert summary["categories"]["understanding_knowledge"]["score"] == pytest.approx(50.0)
    assert summary["categories"]["understanding_knowledge"]["tasks_missing"] == ["openbookqa", "hellaswag", "lambada"]
    assert summary["unparseable_verdicts"] == {"mt_bench": 2} and summary["judge_label"] == "demo-judge"
    assert summary["provenance"]["packages"]["torch"] == torch.__version__
    assert "gpus" not in summary["provenance"]  # no model runs in a summary job: torch is not imported
    rows = eval_summary.long_rows([summary], {"r1": 3})
    assert ("r1", "MT-Bench", "score", 3.5, "", 3) in rows
    assert ("r1", "AlpacaEval 1.0", "lc_win_rate", None, "", 3) in rows
    assert ("r1", "Output loss (held-out)", "mean_per_example_loss", 1.2, "", 3) in rows
    assert ("r1", "Output loss (reference answers)", "mean_per_example_loss", 2.5, "", 3) in rows
    no_reference = eval_summary._extra_rows("output_loss", {"train": None, "heldout": {"mean": 1.2}})
    assert [r[0] for r in no_reference] == ["Output loss (train)", "Output loss (held-out)"]
    assert ("r1", "HellaSwag", "acc_norm,none", None, "", 3) in rows
    assert ("r1", "Understanding & Knowledge", "category_mean", pytest.approx(50.0),
            "partial: 2 of 5 tasks (mmlu, piqa)", 3) in rows
    (mean,) = [r for r in rows if r[1] == aggregate.MEAN_NAME]
    with pytest.raises(ValueError, match="no seed given"):
        eval_summary.long_rows([summary], {})
    assert mean[4] == "partial: 2 of 6 categories, some of them partial"
    strict = eval_summary.summarize_target("r1", [json.loads(p.read_text()) for p in _results(tmp_path)],
                                           allow_partial=False, judge_label="x")
    assert strict[aggregate.MEAN_KEY] is None


def test_summary_rejects_a_bad_result_file(tmp_path):
    bad = tmp_path / "mmlu.json"
    bad.write_text('{"benchmark": "mmlu", "value": 0.4')
    out = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "workflow_scripts/eval_summary.py", "summary", "--target", "r",
                           "--output", str(out), str(bad)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and f"{bad}: not valid JSON" in proc.stderr
    assert not out.exists()
    bad.write_text('{"benchmark": "mmlu_typo", "value": 0.4}')
    proc = subprocess.run([sys.executable, "workflow_scripts/eval_summary.py", "summary", "--target", "r",
                           "--output", str(out), str(bad)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and "field 'benchmark' is 'mmlu_typo'" in proc.stderr
    bad.write_text('{"benchmark": "mmlu", "kind": "lm_eval", "status": "scored", "value": NaN, "metric": "acc"}')
    proc = subprocess.run([sys.executable, "workflow_scripts/eval_summary.py", "summary", "--target", "r",
                           "--output", str(out), str(bad)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and f"{bad}: field 'value' is nan, not a finite number or null" in proc.stderr
