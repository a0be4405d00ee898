"""benchmarks/demo_profile.py: job-seconds per rule from a Snakemake log."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

LOG = """Building DAG of jobs...
[Fri Dec  4 04:01:10 2026]
localrule model_outputs:
    input: results/train/a
    jobid: 7
[Fri Dec  4 04:01:20 2026]
rule model_outputs:
    input: results/train/b
    jobid: 8
[Fri Dec  4 04:01:24 2026]
Finished jobid: 7 (Rule: model_outputs)
[Fri Dec  4 04:01:30 2026]
Finished jobid: 8 (Rule: model_outputs)
[Fri Dec  4 04:01:31 2026]
rule table5:
    jobid: 9
[Fri Dec  4 04:01:33 2026]
Finished jobid: 9 (Rule: table5)
"""


def test_profile_counts_job_seconds_per_rule(tmp_path):
    log = tmp_path / "run.snakemake.log"
    log.write_text(LOG)
    bench = tmp_path / "timings" / "model_outputs"
    bench.mkdir(parents=True)
    (bench / "a.tsv").write_text("s\th:m:s\tcpu_time\n13.5\t0:00:13\t12.0\n")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "demo_profile.py"), "--log", str(log),
                             "--timings", str(tmp_path / "timings")], capture_output=True, text=True, check=True)
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[3:] if line.strip()}
    assert "wall 23 s" in result.stdout and "3 jobs, 26 job-s" in result.stdout
    assert lines["model_outputs"][1:5] == ["2", "24", "12.0", "92.3%"]  # 14 s + 10 s, both jobs of the rule
    assert lines["model_outputs"][5:] == ["14", "12"]  # the benchmark file's wall and CPU seconds
    assert lines["table5"][1:3] == ["1", "2"]
