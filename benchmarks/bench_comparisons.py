"""Wall time of the comparison stage's library call on demo-sized inputs (no demo run needed).

    python benchmarks/bench_comparisons.py [--runs-per-method 10] [--resamples 9999]

Synthetic per-item files shaped like the demo's (profiles/demo: lm-eval limit 4, MMLU's 8 subjects, HumanEval
4 problems, MT-Bench 4 questions x 2 turns, AlpacaEval 8, BLEU 8, output losses 64 + 64) for IT and IM runs
on as many training sets as ``--runs-per-method``; times ``imrepro.report.comparisons.compare`` (every IM arm
against its IT arm: the demo's comparisons) and prints the rows, wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np

from imrepro.eval.item_scores import BenchmarkItems, write_items
from imrepro.eval.result_record import ItemScore
from imrepro.report.comparisons import Settings, compare, load_items
from imrepro.report.report_inputs import load_runs

SHAPES = {  # (eval_long benchmark, metric): (items, clusters of 2, score draw)
    ("MMLU", "acc,none"): (32, False, "binary"), ("WinoGrande", "acc,none"): (4, False, "binary"),
    ("GSM8K", "exact_match,strict-match"): (4, False, "binary"), ("TruthfulQA", "acc,none"): (4, False, "unit"),
    ("HumanEval", "pass@1"): (4, False, "binary"), ("MT-Bench", "score"): (8, True, "score"),
    ("AlpacaEval 1.0", "win_rate"): (8, False, "binary"), ("AlpacaEval 2.0", "win_rate"): (8, False, "unit"),
    ("Regeneration BLEU", "bleu"): (8, False, "unit"), ("Output loss (train)", "mean_per_example_loss"): (64, False,
                                                                                                          "loss"),
    ("Output loss (held-out)", "mean_per_example_loss"): (64, False, "loss"),
}


def write_inputs(root: Path, datasets: int, rng: np.random.Generator) -> tuple[Path, list[Path]]:
    rows, paths = [], []
    for d in range(datasets):
        for method, name in (("it", "IT"), ("im_seed", "IM")):
            run = f"demo__set{d}__{method}__ep2"
            rows.append({"run": run, "model": "demo", "model_paper_name": "demo", "dataset": f"set{d}",
                         "dataset_paper_name": "", "method": method, "method_paper_name": name, "epochs": 2,
                         "is_base": "False", "n_examples": 64, "ratio_output_instruction": 1.0, "judge_label": ""})
            benchmarks = []
            for (benchmark, metric), (n, clustered, kind) in SHAPES.items():
                draw = {"binary": lambda: float(rng.integers(0, 2) * 100), "unit": lambda: float(rng.uniform(0, 100)),
                        "score": lambda: float(rng.integers(1, 11)), "loss": lambda: float(rng.uniform(1, 4))}[kind]
                items = [ItemScore(str(i), draw(), str(i // 2) if clustered else "") for i in range(n)]
                benchmarks.append(BenchmarkItems(benchmark, metric, benchmark, kind != "loss", items))
            path = root / f"{run}.json"
            write_items(path, run, benchmarks)
            paths.append(path)
    runs = root / "runs.csv"
    with open(runs, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return runs, paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-per-method", type=int, default=10, help="training sets (the demo: 10 IT/IM pairs)")
    parser.add_argument("--resamples", type=int, default=9999)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs, paths = write_inputs(Path(tmp), args.runs_per_method, np.random.default_rng(0))
        start, cpu = time.perf_counter(), time.process_time()
        frame = compare(load_runs(runs), load_items(paths), Settings(n_resamples=args.resamples))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{len(frame)} comparison rows ({args.runs_per_method} IM-vs-IT arms, {args.resamples} resamples): "
          f"{seconds:.2f} s wall, {cpu:.2f} s CPU (wall > CPU: the machine was shared)")


if __name__ == "__main__":
    main()
