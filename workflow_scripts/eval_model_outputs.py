"""Everything one evaluated model writes itself, from one model load: output losses, regeneration BLEU,
AlpacaEval outputs, MT-Bench answers and HumanEval completions (see imrepro.eval.model_outputs).

    python workflow_scripts/eval_model_outputs.py --model results/train/<run> --model-id <run> \
        --tokenizer-model resources/tokenizers/llama2/tokenizer.model --jobs '{
          "alpaca_eval": {"questions": "resources/eval/alpaca_eval/text_davinci_003_outputs.json",
                          "output": "results/eval/<run>/model_outputs/alpaca_eval_outputs.json",
                          "max_new_tokens": 2048},
          "humaneval": {"output": "results/eval/<run>/model_outputs/humaneval_completions.jsonl"}}' \
        --stats-output results/eval/<run>/model_outputs/model_outputs.json

``--jobs`` is a JSON object, benchmark -> settings; the fields of each benchmark are those of its job class
(OutputLossJob, RegenBleuJob, AlpacaEvalJob, MtBenchJob, HumanEvalJob). The workflow builds it from config.

* mt_bench: FastChat ``gen_model_answer.py`` as the authors ran it (two turns, FastChat's per-category
  temperatures, or ``"temperature_policy": "greedy"``);
* alpaca_eval: open-instruct ``eval/alpaca_farm``: greedy, the raw completion, in the reference's order;
* humaneval: 20 samples per problem at T=0.1 and T=0.7, top-p 0.95, at most 512 new tokens, the Codex stop
  sequences, the bare prompt (scored in the sandbox by eval_humaneval.py);
* regen_bleu: greedy regeneration of the first assistant turn of each training example, mean sentence BLEU;
* output_loss: per-example loss on output tokens of the training and held-out role records.

Empty generations are not fatal: they are counted in the log, the results and the stats file.
"""

import argparse
import json
import logging
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.eval.generation import BACKENDS, DEFAULT_BATCH_SIZE, PRECISIONS
from imrepro.eval.model_outputs import parse_jobs, run_jobs

log = logging.getLogger("eval_model_outputs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--model-id", required=True, help="name written into the answer files (generator)")
    parser.add_argument("--jobs", required=True, help="JSON object: benchmark -> settings")
    parser.add_argument("--tokenizer-model", type=Path,
                        help="SentencePiece file the model was trained with (prompt ids as in training)")
    parser.add_argument("--chat-template",
                        help="'model' or a .jinja file: prompt conversations in that chat template, as training")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="prompts per generate call")
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--stats-output", required=True, type=Path,
                        help="JSON: per benchmark, counts (answers, empty, truncated prompts) and seconds")
    args = parser.parse_args()
    try:
        spec = json.loads(args.jobs)
    except json.JSONDecodeError as err:
        raise ValueError(f"--jobs: not JSON ({err})") from None
    jobs = parse_jobs(spec)
    if args.tokenizer_model is not None and not args.tokenizer_model.is_file():
        raise FileNotFoundError(f"{args.tokenizer_model}: SentencePiece tokenizer model not found")
    log.info("%s: %s", args.model_id, ", ".join(jobs))
    stats = run_jobs(args.model, jobs, model_id=args.model_id, backend=args.backend, batch_size=args.batch_size,
                     precision=args.precision, tokenizer_model=args.tokenizer_model,
                     chat_template=args.chat_template, seed=args.seed)
    with atomic_open(args.stats_output) as out:
        json.dump(stats, out, indent=2)
    for name, stat in stats["benchmarks"].items():
        level = logging.WARNING if stat.get("n_empty") else logging.INFO
        log.log(level, "%s: %s", name, ", ".join(f"{k} {v}" for k, v in stat.items()))


if __name__ == "__main__":
    run_main(main)
