"""A LoRA method on a chat-template model through the whole workflow on CPU: Snakemake builds the role
record in the template (tests/fixtures/chat_template_demo.yaml: the demo's tiny Llama, Tulu's template
as a Jinja file), trains a LoRA adapter, evaluates the merged model on a few benchmarks and writes the
tables."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import REPO, snakemake

RUN = "demo_llama_chat__lima_head64__it_lora__ep2"
CONFIGS = [REPO / "profiles/demo/demo_config.yaml", REPO / "tests/fixtures/chat_template_demo.yaml"]
OVERLAY = """
extra_datasets: []
methods:
  it_lora: {labels: it, lora: {r: 4}}
run_groups:
  chat_lora: {models: [demo_llama_chat], datasets: [lima_head64], methods: [it_lora]}
use_run_groups: [chat_lora]
evaluation:
  base_models: false
  benchmarks: [piqa, regen_bleu, output_loss]
  lm_eval: {source: local, batch_size: 8, limit: 2}
  regen_bleu: {max_new_tokens: 8, limit: 3}
"""


@pytest.mark.slow
def test_lora_on_a_chat_template_model_runs_to_the_tables(tmp_path):
    from transformers import AutoTokenizer

    (tmp_path / "overlay.yaml").write_text(OVERLAY)
    configs = [*map(str, CONFIGS), str(tmp_path / "overlay.yaml")]
    result = snakemake("--directory", str(tmp_path), "--cores", "2", "tables", "--configfile", *configs,
                       timeout=900)
    assert result.returncode == 0, result.stdout[-5000:]

    run = tmp_path / "results" / "train" / RUN
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["settings"]["lora"] == {"r": 4, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear",
                                           "modules_to_save": [], "load_in_4bit": False}  # the schema's defaults
    assert 0 < summary["trainable_parameters"] < summary["total_parameters"] / 10
    assert (run / "adapter" / "adapter_model.safetensors").stat().st_size > 0
    template = (REPO / "resources/chat_templates/tulu.jinja").read_text()
    assert AutoTokenizer.from_pretrained(run).chat_template == template  # served as it was trained

    evaluated = json.loads((tmp_path / "results" / "eval" / RUN / "summary.json").read_text())
    assert evaluated["tasks"]["piqa"]["value"] is not None
    extra = {(e["benchmark"], e["metric"]): e["value"] for e in evaluated["extra"]}
    assert extra[("Regeneration BLEU", "bleu")] is not None
    assert extra[("Output loss (train)", "mean_per_example_loss")] > 0
    with open(tmp_path / "results" / "tables" / "eval_long.csv", newline="") as handle:
        assert {row["run"] for row in csv.DictReader(handle)} == {RUN}
    assert (tmp_path / "results" / "tables" / "runs.csv").read_text().count(RUN) == 1
