"""A training run killed with SIGKILL after a checkpoint, then rerun with the same command,
resumes from the checkpoint and ends with the weights of an uninterrupted run (also with
NEFTune, whose noise is seeded per optimizer step, with a LoRA adapter, and under DeepSpeed ZeRO-3)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import train_helpers as th


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return th.tiny_inputs(tmp_path_factory)


def killed_mid_run(run: dict, log: Path) -> bool:
    """Start the run and SIGKILL it (and any child) as soon as
    ``checkpoint-<checkpoint_every>/trainer_state.json`` appears in its scratch dir. True when the
    kill landed mid-run; False when the run had already finished (then nothing can be resumed)."""
    process = th.start_train(run, log)
    first = Path(run["scratch_dir"], f"checkpoint-{run['checkpoint_every']}", "trainer_state.json")
    appeared = th.wait_for(first, process)
    th.kill_tree(process)
    if process.returncode == 0:  # it finished (and removed its checkpoints) before the poll saw one
        return False
    assert appeared, f"the run exited {process.returncode} without a checkpoint:\n{log.read_text()[-3000:]}"
    return process.returncode == -signal.SIGKILL and not Path(run["output_dir"]).exists()


LORA = {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": "all-linear", "modules_to_save": [],
        "load_in_4bit": False}


@pytest.mark.slow
@pytest.mark.parametrize("neftune_alpha, lora", [(None, None), (5.0, LORA)], ids=["plain", "lora_neftune"])
def test_killed_run_resumes_to_the_same_weights(inputs, tmp_path, neftune_alpha, lora):
    """Full fine-tuning; and a LoRA adapter with NEFTune (one case for both, each ~1 min: the noise is
    drawn per (seed, step) whatever is trained) and LoRA dropout, whose masks come from the restored
    RNG state. The checkpoint holds the adapter's optimizer state; the weights compared are the
    merged model's."""
    extra = {"epochs": 4, "neftune_alpha": neftune_alpha, "lora": lora}  # 4 epochs of 36 examples: 20 steps of 8
    for steps in (8, 20):  # checkpoints every 2 steps; 20 steps only if the 8-step run ended before the kill
        reference = th.settings(inputs, tmp_path / f"reference{steps}", max_steps=steps, checkpoint_every=0, **extra)
        reference_log = tmp_path / f"reference{steps}.log"
        reference_process = th.start_train(reference, reference_log)  # runs alongside
        interrupted = th.settings(inputs, tmp_path / f"interrupted{steps}", max_steps=steps, **extra)
        if killed_mid_run(interrupted, tmp_path / f"killed{steps}.log"):
            break
        th.kill_tree(reference_process)
    else:
        pytest.fail("the run finished before it could be killed, even with 20 optimizer steps")

    log = th.finish(th.start_train(interrupted, tmp_path / "resumed.log"), tmp_path / "resumed.log")
    th.finish(reference_process, reference_log)

    resumed, uninterrupted = th.summary(interrupted), th.summary(reference)
    assert "resuming from" in log
    assert resumed["resumed_from_step"] > 0
    assert resumed["resumed_from_step"] % interrupted["checkpoint_every"] == 0
    assert resumed["optimizer_steps"] == uninterrupted["optimizer_steps"] == steps > resumed["resumed_from_step"]
    assert [h["step"] for h in resumed["history"]] == list(range(1, steps + 1))
    for ours, theirs in zip(resumed["history"], uninterrupted["history"], strict=True):
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=1e-5), ours["step"]
        assert ours["lr"] == pytest.approx(theirs["lr"], rel=1e-9), ours["step"]
    assert th.max_abs_diff(th.weights(interrupted["output_dir"]), th.weights(reference["output_dir"])) < 1e-5
    assert not Path(interrupted["scratch_dir"]).exists(), "scratch checkpoints are removed after the final save"


@pytest.mark.slow
def test_deepspeed_run_resumes_after_sigkill(inputs, tmp_path):
    """ZeRO-3 checkpoints (accelerate save_state: the engine's sharded state, scheduler, RNG)
    are loaded by the rerun, which ends with the weights of an uninterrupted run."""
    pytest.importorskip("deepspeed")
    run = th.settings(inputs, tmp_path / "zero3", max_steps=6, epochs=2)  # checkpoints after steps 2 and 4
    reference = th.settings(inputs, tmp_path / "plain", max_steps=6, epochs=2, checkpoint_every=0)
    reference_process = th.start_train(reference, tmp_path / "plain.log")
    killed = th.start_train(run, tmp_path / "killed.log", th.deepspeed_launcher("zero3"))
    appeared = th.wait_for(Path(run["scratch_dir"], "checkpoint-2", "trainer_state.json"), killed)
    th.kill_tree(killed)
    assert appeared and not Path(run["output_dir"]).exists(), "the run ended before the kill"

    resumed = th.start_train(run, tmp_path / "resumed.log", th.deepspeed_launcher("zero3"))
    log = th.finish(resumed, tmp_path / "resumed.log")
    th.finish(reference_process, tmp_path / "plain.log")
    assert "resuming from" in log and th.summary(run)["resumed_from_step"] in (2, 4)
    assert [h["lr"] for h in th.summary(run)["history"]] == [h["lr"] for h in th.summary(reference)["history"]]
    assert th.max_abs_diff(th.weights(run["output_dir"]), th.weights(reference["output_dir"])) < 1e-5
