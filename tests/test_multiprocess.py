"""Two ranks (CPU, gloo) train like one: DDP under torchrun and DeepSpeed ZeRO-3 under
``accelerate launch --num_processes 2`` give the single process's losses, learning rates and
weights. Guards the loss denominators across ranks, the equalised micro-batch counts, and the lr
schedule (accelerate's default would step the scheduler once per rank at every optimizer step)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import train_helpers as th

LAUNCHERS = {
    "ddp": lambda: [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2",
                    "--master_port", str(th.free_port())],
    "zero3": lambda: th.deepspeed_launcher("zero3", processes=2),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    pytest.importorskip("deepspeed")
    inputs = th.tiny_inputs(tmp_path_factory)
    root = tmp_path_factory.mktemp("two_ranks")
    started = {}
    for name in ("single", *LAUNCHERS):
        # 4 steps, no warmup: the lr changes every step; a checkpoint after step 2 (collective save)
        run = th.settings(inputs, root / name, max_steps=4, warmup_ratio=0.0, checkpoint_every=2)
        launcher = LAUNCHERS[name]() if name in LAUNCHERS else None
        env = {"ACCELERATE_USE_CPU": "true"} if name == "ddp" else {}  # torchrun: accelerate picks gloo DDP
        started[name] = (run, th.start_train(run, root / f"{name}.log", launcher, **env), root / f"{name}.log")
    for _, process, log in started.values():
        th.finish(process, log)
    return {name: run for name, (run, _, _) in started.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LAUNCHERS))
def test_two_ranks_train_like_one(runs, name):
    ours, single = th.summary(runs[name]), th.summary(runs["single"])
    assert ours["world_size"] == 2 and single["world_size"] == 1
    assert [h["lr"] for h in ours["history"]] == [h["lr"] for h in single["history"]] == [1e-3, 7.5e-4, 5e-4, 2.5e-4]
    for h, s in zip(ours["history"], single["history"], strict=True):
        assert h["loss"] == pytest.approx(s["loss"], abs=1e-4)
        assert h["tokens"] == s["tokens"]
    assert th.max_abs_diff(th.weights(runs[name]["output_dir"]), th.weights(runs["single"]["output_dir"])) < 1e-5
