"""Shared fixtures: repository paths and the shipped data/tokenizer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imrepro.core.cpu_malloc import reuse_freed_memory
from imrepro.core.offline import go_offline

go_offline()  # tests never reach the hub: every process they start inherits the switches (imrepro.core.offline)
reuse_freed_memory()  # as the CPU profiles: the processes they start reuse freed memory (imrepro.core.cpu_malloc)
REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "resources"
SHIPPED = {
    "lima": RESOURCES / "data" / "lima_data.jsonl",
    "alpagasus_dolly_3k": RESOURCES / "data" / "alpagasus_3k_dolly.jsonl",
    "alpagasus_alpaca_5k": RESOURCES / "data" / "alpagasus_claude_t45_alpaca.jsonl",
}
LLAMA2_TOKENIZER = RESOURCES / "tokenizers" / "llama2" / "tokenizer.model"
# the demo's model: a 2-layer Llama with the Llama-2 vocabulary, initialised from a fixed seed
TINY_MODEL = {"architecture": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
              "num_attention_heads": 4, "seed": 0}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny model directory (weights + tokenizer), built once per session by the workflow's script.
    Shared: tests must not write into it."""
    out = tmp_path_factory.mktemp("tiny_model") / "tiny_llama"
    subprocess.run([sys.executable, "workflow_scripts/prepare_model.py", "--output", str(out),
                    "--init", json.dumps(TINY_MODEL), "--tokenizer-model", str(LLAMA2_TOKENIZER)],
                   cwd=REPO, check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def sp_backend():
    from imrepro.data.token_backends import SentencePieceBackend
    return SentencePieceBackend(LLAMA2_TOKENIZER)


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 600, netns: bool = False) -> subprocess.CompletedProcess:
    """Run the workflow's snakemake with this interpreter's environment on PATH.

    Snakemake reports to both streams; they are merged into ``.stdout``. ``netns``: in a network namespace of
    its own with only the loopback device up (:func:`netns_works` must be true), so that every job it runs
    can reach 127.0.0.1 and nothing else.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    exe = shutil.which("snakemake", path=env["PATH"])
    prefix = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"] if netns else []
    return subprocess.run([*prefix, exe, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def netns_works() -> bool:
    """Whether ``unshare -n`` (root or user namespaces) and ``ip`` can give a process a loopback-only network."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    return subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True).returncode == 0
