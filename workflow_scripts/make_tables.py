"""The paper's Tables 1-5 and 7 with our numbers, the paper's and the difference (CSV + Markdown).

    python workflow_scripts/make_tables.py --eval-long results/tables/eval_long.csv \
        --runs results/tables/runs.csv --paper resources/paper/paper_results.csv \
        --table5 results/tables/table5_dataset_stats.csv --outdir results/tables \
        --label "DEMO-SCALE numbers: tiny random-init model, 64-example slices, demo judge" \
        --tables table1 table2

Writes, per table, <outdir>/tableN_<name>.csv (one row per cell: ours, paper, diff, status) and .md:
table1_main_results, table2_regeneration_bleu, table3_kl_regularised_it, table4_im_neftune,
table5_dataset_stats_vs_paper, table7_kl_lambda.
"""

import argparse
import logging
from pathlib import Path

from imrepro.core.cli import run_main
from imrepro.report.comparisons import load_comparisons
from imrepro.report.report_inputs import load_eval_long, load_paper, load_runs
from imrepro.report.tables import ALL_TABLES, load_table5_stats, make_tables


def _dataset_name(text: str) -> tuple[str, str]:
    key, sep, name = text.partition("=")
    if not sep or not key or not name:
        raise argparse.ArgumentTypeError(f"--dataset-name {text!r}: expected KEY=PAPER NAME")
    return key, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-long", required=True, type=Path, help="results/tables/eval_long.csv")
    parser.add_argument("--runs", required=True, type=Path, help="results/tables/runs.csv")
    parser.add_argument("--paper", required=True, type=Path, help="resources/paper/paper_results.csv")
    parser.add_argument("--table5", type=Path, help="table5_dataset_stats.csv of the data stage (needed for table5)")
    parser.add_argument("--comparisons", type=Path, help="comparisons.csv: the 'vs IT' intervals of Tables 1-4, 7")
    parser.add_argument("--outdir", required=True, type=Path)
    parser.add_argument("--label", help="printed at the top of every Markdown table, e.g. DEMO-SCALE numbers")
    parser.add_argument("--tables", nargs="+", choices=ALL_TABLES, default=list(ALL_TABLES))
    parser.add_argument("--epochs", type=float,
                        help="epoch count of the runs shown in Tables 1-4, 7 (default: the most common one)")
    parser.add_argument("--dataset-name", type=_dataset_name, action="append", default=[], metavar="KEY=NAME",
                        help="Table 5: our dataset key -> the paper's dataset name (repeatable)")
    args = parser.parse_args()

    eval_long, runs, paper = load_eval_long(args.eval_long), load_runs(args.runs), load_paper(args.paper)
    stats = load_table5_stats(args.table5) if "table5" in args.tables else None
    written = make_tables(args.tables, eval_long, runs, paper, stats, args.outdir, label=args.label,
                          epochs=args.epochs, dataset_names=dict(args.dataset_name),
                          comparisons=load_comparisons(args.comparisons) if args.comparisons else None)
    for path in written:
        logging.getLogger("make_tables").info("wrote %s", path)


if __name__ == "__main__":
    run_main(main)
