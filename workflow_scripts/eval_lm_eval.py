"""Score a causal-LM directory on some of the paper's lm-evaluation-harness tasks, loading the model once.

    python workflow_scripts/eval_lm_eval.py --model results/models/demo_llama --tasks mmlu piqa gsm8k \
        --source local --limit 4 --output-dir results/eval/demo_llama

--source local: the offline tasks in resources/eval/lm_eval (small slices, same prompts as the harness);
a task without shipped data gets status "not_shipped" (exit 0; the model is not loaded if no task is shipped).
--source harness: the standard harness tasks (their data come from the Hugging Face hub: needs network).
--num-fewshot TASK=N overrides the paper's shots of one task (repeatable).

Output: one JSON per task, <output-dir>/<task key>.json (lm_eval_tasks.result_path; the workflow copies it to
results/eval/<model>/<task>.json):
benchmark, kind ("lm_eval"), status ("scored" | "not_shipped"), value (the paper's fraction, TaskSpec scale
applied; null if not shipped), metric, source, lm_eval_task, num_fewshot, limit, n_samples, model, versions,
results (lm-eval's per-task/group rows); scored tasks add n_shot, device, dtype, lm_eval_stderr (lm-eval's own
standard error of value), items (the per-document scores, imrepro.eval.result_record.ItemScore) and, for local
tasks that differ from the harness, note; not_shipped adds reason.
"""

import argparse
import logging
import os
from pathlib import Path

from imrepro.core.cli import run_main
from imrepro.eval.lm_eval_tasks import SOURCES, SPECS, evaluate_tasks, result_path
from imrepro.eval.result_record import write_result


def _batch_size(text: str):
    return text if text.startswith("auto") else int(text)


def _shots(text: str) -> tuple[str, int]:
    key, sep, number = text.partition("=")
    if not sep or not number.isdigit():
        raise argparse.ArgumentTypeError(f"expected TASK=N, not {text!r}")
    return key, int(number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="HF model dir (config.json, weights, tokenizer)")
    parser.add_argument("--tasks", required=True, nargs="+", help=f"task keys: {', '.join(SPECS)}")
    parser.add_argument("--source", required=True, choices=SOURCES)
    parser.add_argument("--num-fewshot", type=_shots, action="append", default=[], metavar="TASK=N",
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
    parser.add_argument("--output-dir", required=True, type=Path, help="where <task key>.json files go")
    args = parser.parse_args()

    unknown = [key for key in args.tasks if key not in SPECS and key != "humaneval"]  # humaneval: says where
    if unknown:
        raise ValueError(f"unknown --tasks {', '.join(map(repr, unknown))}; valid keys: {', '.join(SPECS)}")
    if args.source == "local":  # before lm-eval/datasets are imported: they read these once
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    results = evaluate_tasks(args.model, args.tasks, source=args.source, num_fewshot=dict(args.num_fewshot),
                             limit=args.limit, batch_size=args.batch_size, device=args.device,
                             precision=args.precision, seed=args.seed, bootstrap_iters=args.bootstrap_iters,
                             gen_kwargs=args.gen_kwargs)
    log = logging.getLogger("eval_lm_eval")
    for key, result in results.items():
        write_result(result_path(args.output_dir, key), result)
        if result["status"] == "scored":
            log.info("%s (%s): %s = %.4f", key, result["lm_eval_task"], result["metric"], result["value"])
        else:
            log.info("%s: %s", key, result["reason"])


if __name__ == "__main__":
    run_main(main)
