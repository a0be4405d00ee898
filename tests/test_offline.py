"""Offline means offline: the demo's lm-eval, generation and judge jobs of one model, run by Snakemake in a
network namespace of its own (only a loopback device: the hub, DNS and everything else are unreachable)."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, netns_works, snakemake

DEMO_CONFIG = REPO / "profiles" / "demo" / "demo_config.yaml"
BASE = "base__demo_llama"
OVERLAY = """
extra_datasets: []
run_groups:
  tiny: {models: [demo_llama], datasets: [lima_head64], methods: [it]}
use_run_groups: [tiny]
evaluation:
  benchmarks: [piqa, winogrande, hellaswag, mt_bench, alpaca_eval_1, alpaca_eval_2]
  lm_eval: {source: local, batch_size: 8, limit: 2}
  mt_bench: {max_new_tokens: 8, limit: 2}
  alpaca_eval: {max_new_tokens: 8, limit: 3}
"""


@pytest.mark.slow
@pytest.mark.skipif(not netns_works(), reason="needs `unshare -n` and `ip` (root or user namespaces)")
def test_demo_evaluation_jobs_run_with_the_network_cut(tmp_path):
    (tmp_path / "overlay.yaml").write_text(OVERLAY)
    proc = snakemake(f"results/eval/{BASE}/summary.json", "--directory", str(tmp_path), "--cores", "2",
                     "--configfile", str(DEMO_CONFIG), str(tmp_path / "overlay.yaml"), timeout=900, netns=True)
    assert proc.returncode == 0, proc.stdout[-5000:]
    eval_dir = tmp_path / "results" / "eval" / BASE
    for task in ("piqa", "winogrande"):
        assert json.loads((eval_dir / f"{task}.json").read_text())["status"] == "scored"
    ae2 = json.loads((eval_dir / "alpaca_eval_2.json").read_text())
    assert ae2["lc_win_rate"] is None and "not computed offline" in ae2["lc_note"]  # skipped, not retried
    assert json.loads((eval_dir / "mt_bench.json").read_text())["n_judgments"] > 0
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert "hellaswag" in json.dumps(summary)  # listed as not shipped
    # one lm-eval job for both tasks, one shared judge server per judge configuration (echo-score, hf)
    logs = tmp_path / "logs" / "eval"
    assert len(list((logs / "lm_eval").glob("*.log"))) == 1
    assert len(list((tmp_path / "scratch" / "judge_servers").glob("*.log"))) == 2
