"""The cost plan (`snakemake plan`): exact counts from built role records (the trainer's own
examples and tokens), estimates from Table 5 otherwise, and the paper grid's GPU-hours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, snakemake
from imrepro import workflow_config as wc
from imrepro.data.role_record import load_role_record
from imrepro.eval.catalogue import LM_EVAL_TASKS
from imrepro.train.cost_plan import (
    TrainJob,
    flops_factor,
    job_tokens,
    optimizer_step_count,
    paper_table5,
    plan,
    record_counts,
    state_bytes_per_parameter,
)
from imrepro.train.schedule import optimizer_steps

DEMO_CONFIG = REPO / "profiles" / "demo" / "demo_config.yaml"
OVERLAY = """
extra_datasets: []
run_groups:
  tiny:
    models: [demo_llama]
    datasets: [lima_head64, alpagasus_dolly_3k_head64]
    methods: [it, im_seed, it_lora]
use_run_groups: [tiny]
methods:
  it_lora: {labels: it, lora: {}}
"""


def test_step_count_is_the_schedules():
    for n, batch, epochs in [(64, 16, 2), (65, 16, 1), (1030, 128, 2.5), (7, 128, 0.5), (3000, 128, 3)]:
        assert optimizer_step_count(n, batch, epochs) == len(optimizer_steps(n, batch, epochs, 0))


def test_estimate_from_paper_table5():
    table5 = paper_table5(REPO / "resources" / "paper" / "paper_results.csv")
    job = TrainJob("r", "m", "lima", 2, 128, 2048, 1, record="/nonexistent.parquet", paper_name="LIMA")
    n, tokens, source = job_tokens(job, table5, 1.5)
    assert (n, source) == (1030, "estimate: paper Table 5")
    assert tokens == round(1030 * 484.47 * 1.5)
    short = TrainJob("r", "m", "lima", 2, 128, 256, 1, record="/nonexistent.parquet", paper_name="LIMA")
    assert job_tokens(short, table5, 1.5)[1] == 1030 * 256  # capped at max_length
    with pytest.raises(ValueError, match="no role record, statistics or Table 5 row for dataset 'x'"):
        job_tokens(TrainJob("r", "m", "x", 2, 128, 2048, 1, record="/nonexistent.parquet"), table5, 1.5)


def test_lora_costs_less_compute_and_memory():
    """(4 + 2c) / (6 + 2c) of full fine-tuning's FLOPs: no weight gradients for the frozen model."""
    spec = {"r": 8, "load_in_4bit": False}
    assert flops_factor(None, True) == flops_factor(None, False) == 1.0
    assert flops_factor(spec, True) == 6 / 8 and flops_factor(spec, False) == 4 / 6
    assert state_bytes_per_parameter(None) == 16 > state_bytes_per_parameter(spec) == 2
    assert state_bytes_per_parameter({**spec, "load_in_4bit": True}) == 0.5
    table5 = paper_table5(REPO / "resources" / "paper" / "paper_results.csv")
    throughput = {"source": "test", "models": {"m": "7b"}, "tokens_per_s_per_gpu": {"7b": {"h100": 1000.0}}}
    jobs = [TrainJob(f"r{i}", "m", "lima", 2, 128, 2048, 1, record="/nonexistent.parquet", paper_name="LIMA",
                     lora=lora, gradient_checkpointing=False) for i, lora in enumerate((None, spec))]
    full, adapter = plan(jobs, throughput, "h100", 1.5, table5, {})["train"]
    assert adapter["gpu_hours"] == pytest.approx(full["gpu_hours"] * 2 / 3)


@pytest.fixture(scope="module")
def demo_plan(tmp_path_factory) -> Path:
    """The demo's role records built for real, then `snakemake plan` on them."""
    workdir = tmp_path_factory.mktemp("plan_demo")
    (workdir / "overlay.yaml").write_text(OVERLAY)
    config = ["--configfile", str(DEMO_CONFIG), str(workdir / "overlay.yaml")]
    records = [f"results/data/records/llama2_ml256/{d}.parquet" for d in ("lima_head64", "alpagasus_dolly_3k_head64")]
    for targets in (records, ["plan"]):
        result = snakemake("--directory", str(workdir), "--cores", "1", *targets, *config, timeout=600)
        assert result.returncode == 0, result.stdout[-4000:]
    return workdir


def test_demo_plan_counts_are_the_trainers(demo_plan):
    """Examples and tokens of each job equal what the trainer keeps from the built role record."""
    from imrepro.train.trainer import build_training_data

    plan = json.loads((demo_plan / "results" / "plan" / "plan.json").read_text())
    assert len(plan["train"]) == 6 and plan["totals"]["jobs_without_rate"] == 0
    for row in plan["train"]:
        record = load_role_record(demo_plan / row["record"])
        data = build_training_data(record, "it", None)
        assert row["tokens_source"] == "role record"
        assert row["examples"] == len(data.examples) == record_counts(demo_plan / row["record"])[0]
        assert row["tokens_per_epoch"] == sum(len(e.input_ids) for e in data.examples)
        assert row["optimizer_steps"] == len(optimizer_steps(len(data.examples), 16, row["epochs"], 42))
        lora = "__it_lora__" in row["run_id"]
        assert row["lora"] == ({"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear",
                                "modules_to_save": [], "load_in_4bit": False} if lora else None)  # schema defaults
        assert row["flops_factor"] == (4 / 6 if lora else 1.0)  # the demo trains without gradient checkpointing
        assert row["gpu_hours"] == pytest.approx(row["tokens_per_epoch"] * row["epochs"] * row["flops_factor"]
                                                 / row["tokens_per_s_per_gpu"] / 3600)
    assert "GPU-hours" in (demo_plan / "results" / "plan" / "plan.md").read_text()


def test_paper_config_plan_prints_the_grids_gpu_hours(tmp_path):
    result = snakemake("--directory", str(tmp_path), "--cores", "1", "plan", timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    plan = json.loads((tmp_path / "results" / "plan" / "plan.json").read_text())
    totals = plan["totals"]
    assert totals["train_jobs"] == len(plan["train"]) > 100 and totals["jobs_without_rate"] == 0
    assert totals["gpu_hours"] > 0 and f"**{totals['gpu_hours']:,.1f} GPU-hours**" in result.stdout
    assert {row["tokens_source"] for row in plan["train"]} <= {"estimate: paper Table 5",
                                                              "estimate: parent's Table 5 mean"}
    # evaluation: two model-loading jobs per model at most (its lm-eval tasks; everything else it writes)
    targets = wc.eval_targets(wc.prepare(yaml.safe_load((REPO / "config.yaml").read_text())))
    evaluation = {rule.split()[0]: n for rule, n in plan["evaluation_jobs"].items()}
    assert evaluation["lm_eval"] == sum(bool(set(t.benchmarks) & set(LM_EVAL_TASKS)) for t in targets.values())
    assert evaluation["model_outputs"] == sum(bool(set(t.benchmarks) - set(LM_EVAL_TASKS)) for t in targets.values())
    assert totals["evaluation_jobs"] == sum(evaluation.values())
