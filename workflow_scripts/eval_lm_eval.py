"""Score a causal-LM directory on one of the paper's lm-evaluation-harness tasks (lm-eval 0.4.13 Python API).

    python workflow_scripts/eval_lm_eval.py --model results/models/demo_llama --task piqa --source local \
        --limit 4 --output results/eval/demo_llama/lm_eval/piqa.json

--source local: the offline tasks in resources/eval/lm_eval (small slices, same prompts as the harness);
a task without shipped data gets status "not_shipped" (exit 0, the model is not loaded).
--source harness: the standard harness tasks (their data come from the Hugging Face hub: needs network).

Output JSON: benchmark, kind ("lm_eval"), status ("scored" | "not_shipped"), value (the paper's fraction,
TaskSpec scale applied; null if not shipped), metric, source, lm_eval_task, num_fewshot, limit, n_samples,
model, versions, results (lm-eval's per-task/group rows); scored runs add n_shot, device, dtype and, for
local tasks that differ from the harness, note; not_shipped adds reason.
"""

import argparse
import json
import logging
import os
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.eval.lm_eval_tasks import SOURCES, SPECS, evaluate_task


def _batch_size(text: str):
    return text if text.startswith("auto") else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="HF model dir (config.json, weights, tokenizer)")
    parser.add_argument("--task", required=True, help=f"task key: {', '.join(SPECS)}")
    parser.add_argument("--source", required=True, choices=SOURCES)
    parser.add_argument("--num-fewshot", type=int, default=None,
                        help="default: the paper's shots (imrepro.eval.lm_eval_tasks.default_num_fewshot)")
    parser.add_argument("--limit", type=int, default=None, help="first N docs of each (sub)task (smoke runs)")
    parser.add_argument("--batch-size", type=_batch_size, default=8, help="int or 'auto' (default: %(default)s)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="auto: bf16 on a bf16-capable GPU, else fp32")
    parser.add_argument("--seed", type=int, default=None, help="all of lm-eval's seeds (default: lm-eval's own)")
    parser.add_argument("--bootstrap-iters", type=int, default=100000,
                        help="lm-eval's bootstrap for stderrs of non-mean metrics (0: skip; default: %(default)s)")
    parser.add_argument("--gen-kwargs", default=None,
                        help="lm-eval override for generation tasks, e.g. max_gen_toks=64 (changes the task)")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()

    if args.task not in SPECS and args.task != "humaneval":  # humaneval: evaluate_task says where it is scored
        raise ValueError(f"unknown --task {args.task!r}; valid keys: {', '.join(SPECS)}")
    if args.source == "local":  # before lm-eval/datasets are imported: they read these once
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    result = evaluate_task(args.model, args.task, source=args.source, num_fewshot=args.num_fewshot, limit=args.limit,
                           batch_size=args.batch_size, device=args.device, precision=args.precision, seed=args.seed,
                           bootstrap_iters=args.bootstrap_iters, gen_kwargs=args.gen_kwargs)
    with atomic_open(args.output) as handle:
        json.dump(result, handle, indent=1, allow_nan=False)
        handle.write("\n")
    log = logging.getLogger("eval_lm_eval")
    if result["status"] == "scored":
        log.info("%s (%s): %s = %.4f", args.task, result["lm_eval_task"], result["metric"], result["value"])
    else:
        log.info("%s: %s", args.task, result["reason"])


if __name__ == "__main__":
    run_main(main)
