"""The per-item scores of one target, from its result files and the stock tools' per-item files.

    python workflow_scripts/eval_items.py --target RUN --output results/eval/RUN/items.json \
        --raw mt_bench=results/eval/RUN/generations/mt_bench_judgments.jsonl \
        --raw alpaca_eval_1=results/eval/RUN/generations/alpaca_eval_1_annotations.json \
        results/eval/RUN/*.json

--raw BENCHMARK=FILE: humaneval (sandboxed samples), mt_bench (judgments), alpaca_eval_1/2 (annotations),
regen_bleu (generations). lm-eval results carry their items; output_loss.json its per-example losses.
Output: {target, benchmarks: [{benchmark, metric, key, higher_is_better, reported_stderr, items}]}
(imrepro.eval.item_scores.BenchmarkItems).
"""

import argparse
import logging
from pathlib import Path

from imrepro.core.cli import run_main
from imrepro.eval.item_scores import target_items, write_items


def _raw(text: str) -> tuple[str, Path]:
    key, sep, path = text.partition("=")
    if not sep or not key or not path:
        raise argparse.ArgumentTypeError(f"--raw {text!r}: expected BENCHMARK=FILE")
    return key, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True)
    parser.add_argument("--raw", type=_raw, action="append", default=[], metavar="BENCHMARK=FILE")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("results", nargs="*", type=Path, help="the target's result files")
    args = parser.parse_args()
    benchmarks = target_items(args.results, dict(args.raw))
    write_items(args.output, args.target, benchmarks)
    logging.getLogger("eval_items").info("%s: %d benchmark rows with per-item scores (%s)", args.target,
                                         len(benchmarks), ", ".join(b.benchmark for b in benchmarks))


if __name__ == "__main__":
    run_main(main)
