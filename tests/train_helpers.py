"""Tiny end-to-end training runs for the trainer tests (test_resume, test_deepspeed).

A 2-layer Llama (hidden 64) and a 48-example LIMA record truncated at 128 tokens, built once per
session with the workflow's own scripts; runs go through ``workflow_scripts/train.py`` in a
subprocess, optionally under a launcher (``accelerate launch ...``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conftest import LLAMA2_TOKENIZER, REPO, SHIPPED, TINY_MODEL

TRAIN = REPO / "workflow_scripts" / "train.py"
_INPUTS: dict[str, Path] = {}


def tiny_inputs(tmp_path_factory) -> dict[str, Path]:
    """``{"model": <model dir>, "record": <role record>}``, built once per test session."""
    if not _INPUTS:
        root = tmp_path_factory.mktemp("tiny_train_inputs")
        head = root / "lima48.jsonl"
        head.write_text("".join(SHIPPED["lima"].read_text().splitlines(keepends=True)[:48]))
        scripts = REPO / "workflow_scripts"
        for args in (
            ["prepare_model.py", "--output", root / "model", "--init", json.dumps(TINY_MODEL),
             "--tokenizer-model", LLAMA2_TOKENIZER],
            ["build_role_record.py", "--input", head, "--tokenizer-backend", "sentencepiece",
             "--tokenizer-path", LLAMA2_TOKENIZER, "--max-length", "128", "--output", root / "lima.parquet"],
        ):
            subprocess.run([sys.executable, scripts / args[0], *map(str, args[1:])], check=True, cwd=REPO,
                           env=train_env(), capture_output=True)
        _INPUTS.update(model=root / "model", record=root / "lima.parquet")
    return dict(_INPUTS)


def settings(inputs: dict[str, Path], out: Path, **overrides) -> dict:
    """Training settings for a fast run: fp32, 8 examples per optimizer step, 128-token examples
    packed two per micro-batch (so every step accumulates 4 micro-batches)."""
    return {"model_path": str(inputs["model"]), "record_path": str(inputs["record"]),
            "output_dir": str(out / "model"), "scratch_dir": str(out / "scratch"), "precision": "fp32",
            "effective_batch_size": 8, "epochs": 1, "learning_rate": 1e-3, "token_budget": 256,
            "checkpoint_every": 2, "progress": False, **overrides}


def train_env(**extra: str) -> dict[str, str]:
    """One thread per process: runs are reproducible and two of them can share a small machine."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deepspeed_launcher(config: str, processes: int = 1) -> list[str]:
    """``accelerate launch`` with a config from configs/deepspeed, as on the GPU nodes."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--num_processes",
            str(processes), "--mixed_precision", "no", "--main_process_port", str(free_port()), "--use_deepspeed",
            "--deepspeed_config_file", str(REPO / "configs" / "deepspeed" / f"{config}.json")]


def start_train(settings: dict, log: Path, launcher: list[str] | None = None, **env: str) -> subprocess.Popen:
    """Start ``train.py --settings <json>`` (under ``launcher`` if given), output to ``log``."""
    command = [*(launcher or [sys.executable]), str(TRAIN), "--settings", json.dumps(settings)]
    with open(log, "w") as handle:
        return subprocess.Popen(command, cwd=REPO, env=train_env(**env), stdout=handle, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    """Wait for a run; return its log, failing with the log's tail when it did not exit 0."""
    try:
        rc = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process)
        raise AssertionError(f"training timed out after {timeout} s:\n{log.read_text()[-3000:]}") from None
    text = log.read_text()
    assert rc == 0, f"training exited {rc}:\n{text[-3000:]}"
    return text


def summary(settings: dict) -> dict:
    return json.loads((Path(settings["output_dir"]) / "train_summary.json").read_text())


def weights(model_dir: Path | str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out: dict[str, np.ndarray] = {}
    for shard in sorted(Path(model_dir).glob("*.safetensors")):
        out.update(load_file(shard))
    assert out, f"{model_dir}: no safetensors weights"
    return out


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return max(float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max()) for k in a)


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a run and every process under it: launchers (torchrun) start their workers in new
    sessions, out of reach of a process-group kill."""
    import psutil  # a dependency of accelerate

    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for proc in [*children, process]:
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            os.kill(proc.pid, signal.SIGKILL)
    process.wait()
    psutil.wait_procs(children, timeout=30)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> bool:
    """Poll until ``path`` exists (True) or the process has exited (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if process.poll() is not None:
            return path.exists()
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear within {timeout} s")
