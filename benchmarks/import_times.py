"""Start-up cost of each workflow script: what ``python -X importtime <script> --help`` imports before argparse
answers (the imports a job pays before its first line of work).

    python benchmarks/import_times.py [--repo .] [--rounds 3]

Per script: the median wall time of ``--help`` over the rounds, the summed self time of every import, and the
three heaviest top-level packages by cumulative import time. Heavy libraries (torch, lm-eval, alpaca-eval,
fastchat, matplotlib) should appear only where the job needs them from its first line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def import_profile(script: Path, src: Path) -> tuple[float, float, list[tuple[str, float]]] | None:
    """(wall s, summed import self time s, [(top-level package, cumulative s)] heaviest first) of one run;
    None if ``--help`` fails (a Snakemake ``script:`` such as build_report.py is not a CLI)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", str(script), "--help"], cwd=script.parent, env=env,
                          capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return None
    total, top = 0.0, {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        total += int(self_us) / 1e6
        if not name.startswith("  "):  # a top-level import of the script (or of imrepro.core.cli)
            package = name.strip().split(".")[0]
            top[package] = max(top.get(package, 0.0), int(cumulative_us) / 1e6)
    return wall, total, sorted(top.items(), key=lambda kv: -kv[1])[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scripts = sorted(p for p in (args.repo / "workflow_scripts").glob("*.py") if not p.name.startswith("_"))
    print(f"{'script':26} {'--help s':>9} {'imports s':>10}  heaviest top-level imports (cumulative s)")
    for script in scripts:
        runs = [import_profile(script, args.repo / "src") for _ in range(args.rounds)]
        if None in runs:
            print(f"{script.name:26} {'-':>9} {'-':>10}  (--help fails: not a command-line script)")
            continue
        wall = statistics.median(r[0] for r in runs)
        total = statistics.median(r[1] for r in runs)
        heavy = ", ".join(f"{name} {seconds:.2f}" for name, seconds in runs[-1][2])
        print(f"{script.name:26} {wall:>9.2f} {total:>10.2f}  {heavy}")


if __name__ == "__main__":
    main()
