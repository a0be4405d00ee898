"""Print (and write) the cost plan of the active run groups: `snakemake plan` runs it.

    python workflow_scripts/plan.py --jobs jobs.json --throughput '{"source": ..., "models": ...,
        "tokens_per_s_per_gpu": ...}' --gpu h100_80gb --tokens-per-word 1.64 \
        --paper resources/paper/paper_results.csv --eval-jobs '{"lm_eval": 4}' --output results/plan/plan.json

`--jobs` and the other JSON arguments take JSON, or @file with JSON; the Markdown table goes to
stdout and, beside --output, to plan.md.
"""

import argparse
import json
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.train.cost_plan import TrainJob, paper_table5, plan, render


def json_arg(text: str):
    return json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=json_arg, required=True, help="list of TrainJob fields (JSON)")
    parser.add_argument("--throughput", type=json_arg, required=True, help="config plan.throughput (JSON)")
    parser.add_argument("--gpu", required=True, help="GPU kind: a column of the throughput table")
    parser.add_argument("--tokens-per-word", type=float, required=True)
    parser.add_argument("--paper", type=Path, required=True, help="paper_results.csv (its Table 5 rows)")
    parser.add_argument("--eval-jobs", type=json_arg, required=True, help="{evaluation rule: job count} (JSON)")
    parser.add_argument("--output", type=Path, required=True, help="plan.json (plan.md beside it)")
    args = parser.parse_args()
    result = plan([TrainJob(**job) for job in args.jobs], args.throughput, args.gpu, args.tokens_per_word,
                  paper_table5(args.paper), args.eval_jobs)
    text = render(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.output) as f:
        json.dump(result, f, indent=2)
    with atomic_open(args.output.with_suffix(".md")) as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    run_main(main)
