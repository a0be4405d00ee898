"""The trainer under DeepSpeed ZeRO-2 and ZeRO-3, launched as on the GPU nodes
(``accelerate launch --use_deepspeed --deepspeed_config_file configs/deepspeed/...``), here as one
CPU process (gloo). Each optimizer step accumulates 4 micro-batches, so the runs also show that
DeepSpeed steps once per optimizer step (at the boundary the loop marks), with the loop's loss
normalisation and lr schedule: losses, learning rates, grad norms and weights match a run without
DeepSpeed. Two ranks: test_multiprocess.py; kill and resume: test_resume.py. The first DeepSpeed
run on a machine JIT-builds DeepSpeed's CPU shared-memory comm op (about 2 minutes, cached in
~/.cache/torch_extensions)."""

from __future__ import annotations

import copy
import json
import math

import pytest

import train_helpers as th
from conftest import REPO

pytest.importorskip("deepspeed")
STAGES = ("zero2", "zero3")
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear", "modules_to_save": [],
        "load_in_4bit": False}


def test_deepspeed_config_is_filled_from_the_settings():
    from imrepro.train.trainer import TrainSettings, _configure_deepspeed

    base = json.loads((REPO / "configs" / "deepspeed" / "zero3.json").read_text())
    ours = TrainSettings(model_path="m", record_path="r", output_dir="o", scratch_dir="s", max_grad_norm=0.5)
    config = copy.deepcopy(base)
    _configure_deepspeed(config, ours, world=8)
    assert (config["gradient_accumulation_steps"], config["train_micro_batch_size_per_gpu"],
            config["train_batch_size"], config["gradient_clipping"]) == (1, 1, 8, 0.5)
    config = copy.deepcopy(base) | {"optimizer": {"type": "AdamW", "params": {"betas": "auto", "eps": "auto"}}}
    _configure_deepspeed(config, ours, world=1)
    assert config["optimizer"]["params"] == {"betas": [0.9, 0.98], "eps": 1e-6}
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        _configure_deepspeed(copy.deepcopy(base) | {"gradient_accumulation_steps": 4}, ours, world=1)
    with pytest.raises(ValueError, match="gradient_clipping"):
        _configure_deepspeed(copy.deepcopy(base) | {"gradient_clipping": 1.0}, ours, world=1)
    with pytest.raises(ValueError, match="scheduler"):
        _configure_deepspeed(copy.deepcopy(base) | {"scheduler": {"type": "WarmupLR"}}, ours, world=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two optimizer steps without DeepSpeed and under each ZeRO stage, all started at once; a LoRA run
    without DeepSpeed and under ZeRO-3."""
    inputs = th.tiny_inputs(tmp_path_factory)
    root = tmp_path_factory.mktemp("deepspeed_runs")
    out = {}
    for name in ("plain", *STAGES, "lora_plain", "lora_zero3"):
        lora = LORA if name.startswith("lora") else None
        run = th.settings(inputs, root / name, max_steps=2, checkpoint_every=1, lora=lora)
        log = root / f"{name}.log"
        launcher = None if name.endswith("plain") else th.deepspeed_launcher(name.removeprefix("lora_"))
        out[name] = (run, th.start_train(run, log, launcher), log)
    return {name: (run, th.finish(process, log)) for name, (run, process, log) in out.items()} | {"inputs": inputs}


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_deepspeed_matches_the_plain_loop(runs, stage):
    run, _ = runs[stage]
    plain, _ = runs["plain"]
    ours, theirs = th.summary(run), th.summary(plain)
    assert ours["optimizer_steps"] == 2 and [h["step"] for h in ours["history"]] == [1, 2]
    losses = [h["loss"] for h in ours["history"]]
    assert all(math.isfinite(x) for x in losses) and losses[0] != losses[1]
    # the loop's normalisation is unchanged under DeepSpeed ...
    assert losses[0] == pytest.approx(theirs["history"][0]["loss"], abs=1e-4)
    # ... and DeepSpeed stepped exactly once per optimizer step, at the plain run's lr
    assert losses[1] == pytest.approx(theirs["history"][1]["loss"], abs=1e-4)
    assert [h["lr"] for h in ours["history"]] == [h["lr"] for h in theirs["history"]]
    for h, t in zip(ours["history"], theirs["history"], strict=True):
        assert h["grad_norm"] == pytest.approx(t["grad_norm"], rel=1e-3)  # the engine's pre-clipping norm

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run["output_dir"])
    assert model.num_parameters() > 0
    final, initial = th.weights(run["output_dir"]), th.weights(runs["inputs"]["model"])
    assert final.keys() == initial.keys()
    assert th.max_abs_diff(final, initial) > 1e-4, "training changed the weights"
    assert th.max_abs_diff(final, th.weights(plain["output_dir"])) < 1e-5


@pytest.mark.slow
def test_lora_under_zero3_saves_the_gathered_adapter_and_merged_model(runs):
    """Under ZeRO-3 the adapter and the merge read gathered parameters: the adapter is not the empty
    one that a save of partitioned shards writes, and both match the run without DeepSpeed."""
    run, _ = runs["lora_zero3"]
    plain, _ = runs["lora_plain"]
    ours, theirs = th.summary(run), th.summary(plain)
    for h, t in zip(ours["history"], theirs["history"], strict=True):
        assert h["loss"] == pytest.approx(t["loss"], abs=1e-4)
    assert ours["trainable_parameters"] == theirs["trainable_parameters"] < ours["total_parameters"] // 10
    assert ours["total_parameters"] == theirs["total_parameters"]
    adapter, plain_adapter = (th.weights(f"{r['output_dir']}/adapter") for r in (run, plain))
    assert all(t.size > 0 for t in adapter.values())
    assert th.max_abs_diff(adapter, plain_adapter) < 1e-5
    merged, initial = th.weights(run["output_dir"]), th.weights(runs["inputs"]["model"])
    assert th.max_abs_diff(merged, th.weights(plain["output_dir"])) < 1e-5
    moved = {k for k in initial if k in merged and th.max_abs_diff({k: merged[k]}, {k: initial[k]}) > 0}
    assert moved and all("proj" in k for k in moved)  # the merged LoRA deltas: linear layers only
