"""CPU jobs with glibc's default malloc vs ``cpu_malloc_reuse`` (imrepro.core.cpu_malloc), on a finished demo.

    make demo && python benchmarks/bench_cpu_malloc.py [--rounds 2]

Contenders, interleaved per round, each a fresh process as Snakemake starts it (OMP_NUM_THREADS=1):
one demo training job (its own train_summary.json settings, writing to a temporary folder) and one lm-eval
job of the base model. Prints per contender the median wall, user and kernel (sys) seconds and the peak RSS of
the process (``os.wait4``), with ratios against the default allocator, and checks that both allocators
train bit-identical weights.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from imrepro.core.cpu_malloc import MALLOC_REUSE_ENV
from imrepro.core.offline import OFFLINE_ENV

REPO = Path(__file__).resolve().parents[1]
ALLOCATORS = {"default": {}, "reuse": MALLOC_REUSE_ENV}


def run(command: list[str], extra_env: dict) -> dict:
    """Wall, user and sys seconds and peak RSS (MiB) of one process."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_REUSE_ENV}
    env.update(OFFLINE_ENV, OMP_NUM_THREADS="1", **extra_env)
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{proc.stderr.read().decode()[-2000:]}")
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def jobs(run_id: str, scratch: Path) -> dict[str, Callable[[str], list[str]]]:
    """Contender name -> function(allocator) that builds the command line of one job."""
    summary = REPO / "results" / "train" / run_id / "train_summary.json"
    if not summary.is_file():
        raise SystemExit(f"{summary}: not found; run `make demo` first")
    settings = json.loads(summary.read_text())["settings"]  # paths relative to the repository

    def train(allocator: str) -> list[str]:
        out = scratch / f"train_{allocator}"
        job = {**settings, "output_dir": str(out / "model"), "scratch_dir": str(out / "scratch"),
               "log_dir": str(out / "tb"), "progress": False}
        return [sys.executable, "workflow_scripts/train.py", "--settings", json.dumps(job)]

    def lm_eval(allocator: str) -> list[str]:
        return [sys.executable, "workflow_scripts/eval_lm_eval.py", "--model", settings["model_path"], "--tasks",
                "mmlu", "winogrande", "--source", "local", "--batch-size", "8", "--limit", "4",
                "--output-dir", str(scratch / f"lm_eval_{allocator}")]

    return {"train_model": train, "lm_eval": lm_eval}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="demo_llama__lima_head64__it__ep2", help="a finished training run")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        builders = jobs(args.run, Path(tmp))
        times = {(job, alloc): [] for job in builders for alloc in ALLOCATORS}
        for round_ in range(args.rounds):
            for job, build in builders.items():
                for alloc, extra in ALLOCATORS.items():
                    times[job, alloc].append(run(build(alloc), extra))
                    print(f"round {round_ + 1} {job:12s} {alloc:8s} {times[job, alloc][-1]['wall']:6.2f} s",
                          flush=True)
        weights = [(Path(tmp) / f"train_{alloc}" / "model" / "model.safetensors").read_bytes() for alloc in ALLOCATORS]
        print()
        print(f"{'job':12s} {'malloc':8s} {'wall s':>7s} {'user s':>7s} {'sys s':>7s} {'peak MiB':>9s}"
              f" {'wall vs default':>16s} {'peak vs default':>16s}")
        for job in builders:
            base = {k: statistics.median(t[k] for t in times[job, "default"]) for k in ("wall", "rss")}
            for alloc in ALLOCATORS:
                med = {k: statistics.median(t[k] for t in times[job, alloc]) for k in ("wall", "user", "sys", "rss")}
                print(f"{job:12s} {alloc:8s} {med['wall']:7.2f} {med['user']:7.2f} {med['sys']:7.2f} {med['rss']:9.0f}"
                      f" {med['wall'] / base['wall']:15.2f}x {med['rss'] / base['rss']:15.2f}x")
        print(f"\ntrained weights identical: {'yes' if all(w == weights[0] for w in weights) else 'NO'}")


if __name__ == "__main__":
    main()
