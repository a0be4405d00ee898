"""Shared fixtures: repository paths and the shipped data/tokenizer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "resources"
SHIPPED = {
    "lima": RESOURCES / "data" / "lima_data.jsonl",
    "alpagasus_dolly_3k": RESOURCES / "data" / "alpagasus_3k_dolly.jsonl",
    "alpagasus_alpaca_5k": RESOURCES / "data" / "alpagasus_claude_t45_alpaca.jsonl",
}
LLAMA2_TOKENIZER = RESOURCES / "tokenizers" / "llama2" / "tokenizer.model"


@pytest.fixture(scope="session")
def sp_backend():
    from imrepro.token_backends import SentencePieceBackend
    return SentencePieceBackend(LLAMA2_TOKENIZER)


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the workflow's snakemake with this interpreter's environment on PATH.

    Snakemake reports to both streams; they are merged into ``.stdout``.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    exe = shutil.which("snakemake", path=env["PATH"])
    return subprocess.run([exe, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
