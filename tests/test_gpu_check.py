"""benchmarks/gpu_check.py --tiny: the prepared GPU command runs end to end on CPU, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_gpu_check_tiny_runs_and_writes_json_and_markdown(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--tiny", "--out",
                             str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={"PATH": "", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    table = report["train_throughput"]["table"]
    assert {"bs1", "bs1 tl", "dense512", "varlen512 tl"} <= set(table)
    assert table["varlen512 tl"]["attn"] == "sdpa_varlen" and table["varlen512 tl"]["logits"] == "trained"
    assert table["bs1"]["logits"] == "all" and table["bs1"]["median_ratio_vs_bs1"] == 1.0
    steps = report["step_7b"]
    assert [s["gradient_checkpointing"] for s in steps] == [True, False]
    assert all(s["tokens"] > 0 and s["loss"] > 0 and "error" not in s for s in steps)
    generation = report["generation"]
    assert generation["identical_outputs"] == f"{generation['prompts']}/{generation['prompts']}"
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "## (a) training throughput" in markdown and "## (c) generation" in markdown
