"""Answers of a model for the judged benchmarks, with the Tulu chat prompt (``<|user|>\\n...\\n<|assistant|>\\n``).

    python workflow_scripts/eval_generate.py --benchmark mt_bench --model results/train/<run> --model-id <run> \
        --questions resources/eval/mt_bench/question.jsonl --max-new-tokens 1024 \
        --tokenizer-model resources/tokenizers/llama2/tokenizer.model --output results/eval/<run>/mt_bench_answers.jsonl
    python workflow_scripts/eval_generate.py --benchmark alpaca_eval --model results/train/<run> --model-id <run> \
        --questions <alpaca_eval reference outputs .json> --max-new-tokens 8192 \
        --tokenizer-model resources/tokenizers/llama2/tokenizer.model \
        --output results/eval/<run>/alpaca_eval_outputs.json

* mt_bench: FastChat ``gen_model_answer.py`` as the authors ran it (two turns, FastChat's per-category
  temperatures; ``--temperature-policy greedy`` decodes everything greedily). Output: a FastChat answer file (JSONL).
* alpaca_eval: open-instruct ``eval/alpaca_farm`` as the authors ran it: greedy, the raw completion. Output:
  alpaca_eval's model_outputs JSON list ``[{instruction, output, generator, dataset}]`` in the reference's order.

The policy (prompts, temperatures, the two-turn loop) is :mod:`imrepro.eval.answers`.

Empty generations are not fatal: they are counted in the log and in ``--stats-output``.
"""

import argparse
import json
import logging
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.eval.answers import TEMPERATURE_POLICIES, alpaca_eval_outputs, mt_bench_answers
from imrepro.eval.generation import BACKENDS, DEFAULT_BATCH_SIZE, PRECISIONS, load_generator
from imrepro.eval.judge import mt_bench

log = logging.getLogger("eval_generate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", required=True, choices=["mt_bench", "alpaca_eval"])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--model-id", required=True, help="name written into the answer file (generator)")
    parser.add_argument("--questions", required=True, type=Path,
                        help="mt_bench: question.jsonl; alpaca_eval: reference outputs JSON list")
    parser.add_argument("--tokenizer-model", type=Path,
                        help="SentencePiece file the model was trained with (prompt ids as in training)")
    parser.add_argument("--max-new-tokens", type=int, required=True)
    parser.add_argument("--temperature-policy", choices=TEMPERATURE_POLICIES, default="fastchat",
                        help="mt_bench only: FastChat's per-category temperatures, or greedy throughout")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--stats-output", type=Path, help="JSON with counts (questions, answers, empty)")
    args = parser.parse_args()
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if not args.questions.is_file():
        raise FileNotFoundError(f"{args.questions}: questions file not found")

    generator = load_generator(args.model, backend=args.backend, batch_size=args.batch_size,
                               precision=args.precision, tokenizer_model=args.tokenizer_model)
    common = {"model_id": args.model_id, "max_new_tokens": args.max_new_tokens, "seed": args.seed,
              "source": str(args.questions)}
    if args.benchmark == "mt_bench":
        questions = mt_bench.load_questions(args.questions)[:args.limit]
        records, stats = mt_bench_answers(generator, questions, temperature_policy=args.temperature_policy, **common)
        with atomic_open(args.output) as out:
            for record in records:
                out.write(json.dumps(record) + "\n")
    else:
        with open(args.questions, encoding="utf-8") as handle:
            reference = json.load(handle)
        reference = reference[:args.limit] if isinstance(reference, list) else reference
        records, stats = alpaca_eval_outputs(generator, reference, **common)
        with atomic_open(args.output) as out:
            json.dump(records, out, indent=2)
    stats.update(benchmark=args.benchmark, model=str(args.model), model_id=args.model_id,
                 backend=generator.backend_name, max_new_tokens=args.max_new_tokens,
                 n_truncated_prompts=generator.n_truncated, limit=args.limit)
    if args.stats_output:
        with atomic_open(args.stats_output) as out:
            json.dump(stats, out, indent=2)
    level = logging.WARNING if stats["n_empty"] else logging.INFO
    log.log(level, "%s: %d answers to %d questions, %d empty -> %s", args.benchmark, stats["n_answers"],
            stats["n_questions"], stats["n_empty"], args.output)


if __name__ == "__main__":
    run_main(main)
