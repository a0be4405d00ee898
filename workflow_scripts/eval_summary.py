"""Evaluation summaries and tables.

    eval_summary.py summary --target RUN [--allow-partial] --judge-label L --output results/eval/RUN/summary.json \
        results/eval/RUN/*.json
    eval_summary.py long --seeds '{"RUN": 1, ...}' --output results/tables/eval_long.csv results/eval/*/summary.json
    eval_summary.py runs --runs '<json rows>' --output results/tables/runs.csv results/data/stats/*.json
"""

import argparse
import json
from pathlib import Path

from imrepro.core import provenance
from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.eval import aggregate
from imrepro.eval import summary as eval_summary

RUNS_COLUMNS = ["run", "model", "model_paper_name", "dataset", "dataset_paper_name", "compare_as", "method",
                "method_paper_name", "epochs", "is_base", "n_examples", "ratio_output_instruction", "judge_label",
                # the run's axes and declared method settings (imrepro.workflow_config.run_settings)
                "subset_family", "seed", "seed_draws_data", "swept", "labels", "prompt_weight", "response_weight",
                "weight_normalisation", "neftune_alpha", "kl_lambda", "learning_rate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary")
    summary.add_argument("--target", required=True)
    summary.add_argument("--allow-partial", action="store_true")
    summary.add_argument("--judge-label", default="")
    summary.add_argument("--not-shipped", nargs="*", default=[], help="configured lm-eval tasks with no local data")
    long = sub.add_parser("long")
    runs = sub.add_parser("runs")
    runs.add_argument("--runs", required=True, help="JSON list of run rows (from the workflow's config)")
    long.add_argument("--seeds", required=True, help="JSON: target id -> training seed (null: a base model)")
    for command in (summary, long, runs):
        command.add_argument("--output", required=True, type=Path)
        command.add_argument("inputs", nargs="*", type=Path)
    args = parser.parse_args()

    if args.command == "summary":
        results = [eval_summary.load_result(path) for path in args.inputs]
        data = eval_summary.summarize_target(args.target, results, allow_partial=args.allow_partial,
                                             judge_label=args.judge_label, not_shipped=args.not_shipped)
        data["provenance"] = provenance.collect(devices=False)  # no model runs here (each model job records its own)
        aggregate.write_summary(args.output, data)
    elif args.command == "long":
        summaries = [json.loads(path.read_text()) for path in args.inputs]
        aggregate.write_long_csv(args.output, eval_summary.long_rows(summaries, json.loads(args.seeds)),
                                 eval_summary.LONG_COLUMNS)
    else:
        stats = {json.loads(p.read_text())["dataset"]: json.loads(p.read_text()) for p in args.inputs}
        rows = []
        for row in json.loads(args.runs):
            dataset_stats = stats.get(row.get("dataset"), {})
            rows.append({**row, "n_examples": dataset_stats.get("n_examples"),
                         "ratio_output_instruction": dataset_stats.get("ratio_output_instruction")})
        import pandas as pd  # only here: the per-model summary jobs do not pay for it

        with atomic_open(args.output) as handle:
            frame = pd.DataFrame(rows, columns=RUNS_COLUMNS).astype({"seed": "Int64"})  # "42", not "42.0"
            frame.to_csv(handle, index=False)


if __name__ == "__main__":
    run_main(main)
