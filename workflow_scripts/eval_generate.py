"""Answers of a model for the judged benchmarks, with the Tulu chat prompt (``<|user|>\\n...\\n<|assistant|>\\n``).

    python workflow_scripts/eval_generate.py --benchmark mt_bench --model results/train/<run> --model-id <run> \
        --questions resources/eval/mt_bench/question.jsonl --max-new-tokens 1024 \
        --tokenizer-model resources/tokenizers/llama2/tokenizer.model --output results/eval/<run>/mt_bench_answers.jsonl
    python workflow_scripts/eval_generate.py --benchmark alpaca_eval --model results/train/<run> --model-id <run> \
        --questions <alpaca_eval reference outputs .json> --max-new-tokens 8192 \
        --tokenizer-model resources/tokenizers/llama2/tokenizer.model \
        --output results/eval/<run>/alpaca_eval_outputs.json

* mt_bench: FastChat ``gen_model_answer.py`` as the authors ran it, with the Tulu template: two turns per
  question, the turn-2 prompt holds turn 1 and the model's own turn-1 answer; answers stripped; by default
  FastChat's per-category temperatures (writing/roleplay 0.7, stem/humanities 0.1, others greedy; sampled
  turns with transformers' default top-k 50, as FastChat's ``model.generate`` call) -- ``--temperature-policy
  greedy`` decodes everything greedily. Output: a FastChat answer file (JSONL).
* alpaca_eval: open-instruct ``eval/alpaca_farm`` as the authors ran it: greedy, the raw completion. Output:
  alpaca_eval's model_outputs JSON list ``[{instruction, output, generator, dataset}]`` in the reference's order.

Empty generations are not fatal: they are counted in the log and in ``--stats-output``.
"""

import argparse
import json
import logging
import time
import uuid
from collections import defaultdict
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.eval.generation import BACKENDS, PRECISIONS, Sampling, chat_prompt, count_empty, load_generator
from imrepro.eval.judge import mt_bench

log = logging.getLogger("eval_generate")

# FastChat llm_judge/common.py temperature_config (gen_model_answer.py; 0.7 for unknown categories)
FASTCHAT_TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                         "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}
FASTCHAT_DEFAULT_TEMPERATURE = 0.7
FASTCHAT_TOP_K = 50  # transformers' GenerationConfig default, in force for FastChat's sampled turns


def generate_grouped(generator, prompts: list[str], temperatures: list[float], args, desc: str) -> list[str]:
    """One completion per prompt; prompts of one temperature share a generate call."""
    groups = defaultdict(list)
    for index, temperature in enumerate(temperatures):
        groups[temperature].append(index)
    out: list[str] = [""] * len(prompts)
    for temperature, indices in sorted(groups.items()):
        sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=temperature, seed=args.seed,
                            top_k=FASTCHAT_TOP_K if temperature > 0 else 0)
        texts = generator.generate([prompts[i] for i in indices], sampling, desc=f"{desc} T={temperature}")
        for i, samples in zip(indices, texts, strict=True):
            out[i] = samples[0]
    return out


def mt_bench_answers(generator, args) -> tuple[list[dict], dict]:
    questions = mt_bench.load_questions(args.questions)[:args.limit]
    if not questions:
        raise ValueError(f"{args.questions}: no questions")
    for q in questions:
        if not q.get("turns") or not all(isinstance(t, str) for t in q["turns"]):
            raise ValueError(f"{args.questions}: question {q.get('question_id')}: 'turns' must be a list of strings")
    if args.temperature_policy == "fastchat":
        temps = [FASTCHAT_TEMPERATURES.get(q.get("category"), FASTCHAT_DEFAULT_TEMPERATURE) for q in questions]
    else:
        temps = [0.0] * len(questions)
    histories = [[] for _ in questions]
    answers = [[] for _ in questions]
    for turn in range(max(len(q["turns"]) for q in questions)):
        active = [i for i, q in enumerate(questions) if turn < len(q["turns"])]
        for i in active:
            histories[i].append({"role": "user", "content": questions[i]["turns"][turn]})
        texts = generate_grouped(generator, [chat_prompt(histories[i]) for i in active], [temps[i] for i in active],
                                 args, desc=f"mt_bench turn {turn + 1}")
        for i, text in zip(active, texts, strict=True):
            text = text.strip()  # FastChat strips every answer
            histories[i].append({"role": "assistant", "content": text})
            answers[i].append(text)
    now = time.time()
    records = [{"question_id": q["question_id"], "answer_id": uuid.uuid4().hex, "model_id": args.model_id,
                "choices": [{"index": 0, "turns": turns}], "tstamp": now}
               for q, turns in zip(questions, answers, strict=True)]
    n_empty = count_empty(answers)
    return records, {"n_questions": len(questions), "n_answers": sum(map(len, answers)), "n_empty": n_empty,
                     "temperature_policy": args.temperature_policy}


def alpaca_eval_outputs(generator, args) -> tuple[list[dict], dict]:
    with open(args.questions, encoding="utf-8") as handle:
        reference = json.load(handle)
    if not isinstance(reference, list):
        raise ValueError(f"{args.questions}: expected a JSON list of {{instruction, ...}} records")
    reference = reference[:args.limit]
    if not reference:
        raise ValueError(f"{args.questions}: no instructions")
    for k, item in enumerate(reference):
        if not isinstance(item, dict) or not isinstance(item.get("instruction"), str):
            raise ValueError(f"{args.questions}: record {k} has no string 'instruction'")
    prompts = [chat_prompt([{"role": "user", "content": item["instruction"]}]) for item in reference]
    texts = generator.generate(prompts, Sampling(max_new_tokens=args.max_new_tokens, temperature=0.0,
                                                 seed=args.seed), desc="alpaca_eval")
    outputs = [{"instruction": item["instruction"], "output": samples[0], "generator": args.model_id,
                "dataset": item.get("dataset")} for item, samples in zip(reference, texts, strict=True)]
    return outputs, {"n_questions": len(outputs), "n_answers": len(outputs), "n_empty": count_empty(texts)}


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
    parser.add_argument("--temperature-policy", choices=["fastchat", "greedy"], default="fastchat",
                        help="mt_bench only: FastChat's per-category temperatures, or greedy throughout")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--batch-size", type=int, default=16)
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
    if args.benchmark == "mt_bench":
        records, stats = mt_bench_answers(generator, args)
        with atomic_open(args.output) as out:
            for record in records:
                out.write(json.dumps(record) + "\n")
    else:
        records, stats = alpaca_eval_outputs(generator, args)
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
