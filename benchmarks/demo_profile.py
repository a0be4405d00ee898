"""Where a finished Snakemake run spent its time: jobs and job-seconds per rule, and the run's wall time.

    python benchmarks/demo_profile.py                      # the newest .snakemake/log, results/timings
    python benchmarks/demo_profile.py --log .snakemake/log/2026-12-04T013608.123456.snakemake.log

Two sources, both written by every run:
  * Snakemake's log (``.snakemake/log/*.snakemake.log``): each job from the time stamp before its
    ``rule <name>:`` block to the one before ``Finished jobid: <n>``, whole seconds, for every rule; the wall
    time from the first to the last time stamp;
  * the ``benchmark:`` files (``results/timings/<rule>/...tsv``, columns ``s`` and ``cpu_time``): the
    measured wall and CPU seconds of each job of the heavy rules (training, model evaluation, judging); CPU
    seconds do not grow when other processes share the machine, wall seconds do.
Job-seconds exceed wall time by the parallelism (``--cores``). ``make profile`` runs this after ``make demo``.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?rule (\S+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\S+)\)$")


def parse_log(path: Path) -> tuple[dict[str, list[float]], float]:
    """({rule: [seconds of each finished job]}, wall seconds) from a Snakemake log."""
    stamp = first = None
    pending_rule = pending_start = None
    started: dict[str, tuple[str, datetime]] = {}
    jobs: dict[str, list[float]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if match := STAMP.match(line):
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
            first = first or stamp
        elif match := RULE.match(line):
            pending_rule, pending_start = match.group(1), stamp
        elif (match := JOBID.match(line)) and pending_rule:
            started[match.group(1)] = (pending_rule, pending_start)
            pending_rule = None
        elif match := FINISHED.match(line):
            rule, start = started.pop(match.group(1), (match.group(2), None))
            if start is not None and stamp is not None:
                jobs[rule].append((stamp - start).total_seconds())
    if first is None:
        raise ValueError(f"{path}: no time stamp; not a Snakemake log")
    return dict(jobs), (stamp - first).total_seconds()


def read_timings(root: Path) -> dict[str, list[tuple[float, float]]]:
    """{rule: [(wall s, CPU s) of each job]} from ``root/<rule>/**/*.tsv`` (Snakemake benchmark files)."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for path in sorted(root.glob("*/**/*.tsv")):
        with open(path, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                cpu = float(row["cpu_time"]) if row.get("cpu_time") not in (None, "", "NA") else 0.0
                out[path.relative_to(root).parts[0]].append((float(row["s"]), cpu))
    return dict(out)


def newest_log(folder: Path) -> Path:
    logs = sorted(folder.glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        raise FileNotFoundError(f"{folder}: no *.snakemake.log (run the workflow first, or give --log)")
    return logs[-1]


def render(log_jobs: dict[str, list[float]], bench: dict[str, list[tuple[float, float]]], wall: float,
           log: Path) -> str:
    total = sum(map(sum, log_jobs.values()))
    rows = sorted(set(log_jobs) | set(bench), key=lambda r: -sum(log_jobs.get(r, [])))
    lines = [f"{log}: wall {wall:.0f} s ({wall / 60:.1f} min), {sum(map(len, log_jobs.values()))} jobs, "
             f"{total:.0f} job-s from the log", "",
             f"{'rule':30} {'jobs':>5} {'job-s (log)':>12} {'mean s':>8} {'share':>6} {'bench wall s':>13} "
             f"{'bench CPU s':>12}"]
    for rule in rows:
        seconds, measured = log_jobs.get(rule, []), bench.get(rule, [])
        mean = sum(seconds) / len(seconds) if seconds else 0.0
        share = sum(seconds) / total if total else 0.0
        wall_s = f"{sum(w for w, _ in measured):.0f}" if measured else "-"
        cpu_s = f"{sum(c for _, c in measured):.0f}" if measured else "-"
        lines.append(f"{rule:30} {len(seconds):>5} {sum(seconds):>12.0f} {mean:>8.1f} {share:>6.1%} {wall_s:>13} "
                     f"{cpu_s:>12}")
    if bench:
        lines.append(f"{'(benchmark files, all rules)':30} {sum(map(len, bench.values())):>5} {'':>12} {'':>8} "
                     f"{'':>6} {sum(w for v in bench.values() for w, _ in v):>13.0f} "
                     f"{sum(c for v in bench.values() for _, c in v):>12.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, help="a Snakemake log (default: the newest in .snakemake/log)")
    parser.add_argument("--timings", type=Path, default=Path("results/timings"),
                        help="the run's benchmark: files, one folder per rule (default: %(default)s)")
    args = parser.parse_args(argv)
    log = args.log or newest_log(Path(".snakemake/log"))
    log_jobs, wall = parse_log(log)
    bench = read_timings(args.timings) if args.timings.is_dir() else {}
    print(render(log_jobs, bench, wall, log))


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"demo_profile: {err}")
