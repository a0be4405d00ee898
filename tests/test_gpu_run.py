"""The prepared GPU run: its CPU rehearsal runs the workflow and writes the record; its wheel folder fits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, snakemake

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_wheels  # noqa: E402

# The rehearsal at its smallest: the LoRA run (full fine-tuning is the rest of the suite's), one lm-eval task
# and one generated benchmark, up to eval_long.csv; of gpu_check only its generation section
# (tests/test_gpu_check.py runs all of it).
NARROW = """
use_run_groups: [gpu_lora]
evaluation:
  benchmarks: [winogrande, regen_bleu]
"""


@pytest.mark.slow
def test_cpu_rehearsal_runs_the_workflow_and_writes_one_record(tmp_path):
    (tmp_path / "narrow.yaml").write_text(NARROW)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_run.py"), "--cpu", "--out", str(out),
                             "--cores", "2", "--target", "evaluate", "--overlay", str(tmp_path / "narrow.yaml"),
                             "--skip", "train", "step_7b", "--budget-s", "800"],
                            cwd=REPO, capture_output=True, text=True, timeout=880)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "gpu_run.json").read_text())
    flow = report["workflow"]
    assert flow["returncode"] == 0 and not flow["timed_out"]
    assert flow["command"][flow["command"].index("--configfile") + 1:][:2] == [
        str(REPO / "profiles" / "gpu" / "gpu_config.yaml"), str(REPO / "profiles" / "gpu" / "cpu_config.yaml")]
    assert flow["lora"] == "run" and set(flow["preflight"].values()) == {"ok"}
    [run] = flow["training"]
    assert run["run_id"] == "gpu_llama_1b__gpu_lima__it_lora__ep1" and run["optimizer_steps"] == 4
    assert run["lora"]["r"] == 16 and 0 < run["trainable_parameters"] < run["total_parameters"]
    assert run["attn_implementation"] == "sdpa_varlen" and run["mean_tokens_per_s"] > 0
    assert {job["rule"] for job in flow["jobs"]} >= {"train_model", "lm_eval", "model_outputs"}
    assert flow["evaluation_devices"] == ["lm_eval: cpu float32"]
    assert {row["benchmark"] for row in flow["eval_long"]} >= {"WinoGrande", "Regeneration BLEU"}
    assert report["generation"]["identical_outputs"] == "4/4"
    assert report["skipped"] == {"train": "--skip", "step_7b": "--skip"} and report["errors"] == {}
    markdown = (out / "gpu_run.md").read_text()
    assert "## Workflow (profiles/gpu)" in markdown and "## (c) generation" in markdown
    assert "| gpu_llama_1b__gpu_lima__it_lora__ep1 | it | 16 |" in markdown
    assert (out / "gpu_run_logs.tar.gz").stat().st_size > 0


def test_gpu_profile_plans_the_1b_workflow_offline(tmp_path):
    """profiles/gpu as the GPU machine runs it: the 1.1B shape, bf16, FlexAttention, no hub."""
    result = snakemake("--directory", str(tmp_path), "--nolock", "--profile", str(REPO / "profiles" / "gpu"),
                       "-n", "-p", "all")
    assert result.returncode == 0, result.stdout[-3000:]
    counts = dict(line.split() for line in result.stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    assert counts["train_model"] == "2" and counts["lm_eval"] == "2" and counts["model_outputs"] == "2"
    assert '"attn_implementation": "flex_attention"' in result.stdout and '"precision": "bf16"' in result.stdout
    assert '"hidden_size": 2048' in result.stdout and '"num_key_value_heads": 4' in result.stdout
    assert "huggingface.co" not in result.stdout


def test_every_wheel_is_pinned_by_the_lock():
    pins = gpu_wheels.read_lock()
    names = gpu_wheels.read_wheel_list()
    assert {"snakemake", "lm_eval", "datasets"} <= set(names)
    requirements = gpu_wheels.pinned(names, pins)
    assert "snakemake==9.27.1" in requirements and len(requirements) == len(names)
    with pytest.raises(ValueError, match="not pinned in lock-cpu.txt: no-such-package"):
        gpu_wheels.pinned(["snakemake", "no-such-package"], pins)


def test_wheel_folder_size_check_on_a_fake_folder(tmp_path):
    folder = tmp_path / "wheels"
    (folder / "sub").mkdir(parents=True)
    (folder / "a-1.0-py3-none-any.whl").write_bytes(b"x" * 3 * gpu_wheels.MIB)
    (folder / "sub" / "b.whl").write_bytes(b"y" * gpu_wheels.MIB)
    assert gpu_wheels.folder_bytes(folder) == 4 * gpu_wheels.MIB
    assert [name for name, _ in gpu_wheels.wheel_sizes(folder)] == ["a-1.0-py3-none-any.whl"]
    line = gpu_wheels.check_fits(4 * gpu_wheels.MIB, 12 * gpu_wheels.MIB, limit=20 * gpu_wheels.MIB, headroom=0.8)
    assert line.startswith("wheels 4.0 MiB + working tree 12.0 MiB = 16.0 MiB of the 20 MiB")
    with pytest.raises(ValueError, match="too big: wheels 4.0 MiB"):
        gpu_wheels.check_fits(4 * gpu_wheels.MIB, 12 * gpu_wheels.MIB + 1, limit=20 * gpu_wheels.MIB, headroom=0.8)


def test_wheel_script_check_only_fails_on_an_oversized_folder(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    with open(folder / "big-1.0-py3-none-any.whl", "wb") as handle:
        handle.truncate(60 * gpu_wheels.MIB)  # sparse: 60 MiB by size, no disk
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_wheels.py"), "--check-only", "--folder",
                             str(folder)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "too big: wheels 60.0 MiB" in result.stderr
    assert "60.00 MiB  big-1.0-py3-none-any.whl" in result.stdout
