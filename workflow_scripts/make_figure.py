"""One of the paper's figures from our runs, as PNG and PDF (matplotlib).

    python workflow_scripts/make_figure.py --figure fig2 --eval-long results/tables/eval_long.csv \
        --runs results/tables/runs.csv --paper resources/paper/paper_results.csv \
        --output-png results/figures/fig2.png --output-pdf results/figures/fig2.pdf \
        --label "DEMO-SCALE numbers: tiny random-init model, 64-example slices, demo judge"
    python workflow_scripts/make_figure.py --figure fig3 ... --loss results/eval/*/output_loss.json

Figures: fig1 (IT vs IM bars), fig2 (gain of IM over IT vs instruction/output ratio and vs #examples,
two panels), fig3 (output-loss distributions, needs --loss), fig4 / fig10 / fig11 (NLP mean / AlpacaEval
1.0 / output length vs epochs), fig5 (IT vs IM for LLaMA-2-13B and OPT-6.7B), fig6 (Tulu V2 fractions),
fig_sweep (each metric against a swept parameter), fig_weight_grid (the lambda_p x lambda_r heat map),
forest (paired differences with intervals, needs --comparisons).
A figure whose runs are missing says so.
"""

import argparse
import logging
from pathlib import Path

from imrepro.core.cli import run_main
from imrepro.report.comparisons import load_comparisons
from imrepro.report.figures import FIGURES, SIZE_PATTERN, Inputs, load_losses, make_figure, save
from imrepro.report.report_inputs import load_eval_long, load_paper, load_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figure", required=True, choices=FIGURES)
    parser.add_argument("--eval-long", required=True, type=Path, help="results/tables/eval_long.csv")
    parser.add_argument("--runs", required=True, type=Path, help="results/tables/runs.csv")
    parser.add_argument("--paper", required=True, type=Path, help="resources/paper/paper_results.csv")
    parser.add_argument("--loss", nargs="*", type=Path, default=[], help="output_loss.json files (fig3)")
    parser.add_argument("--comparisons", type=Path, help="results/tables/comparisons.csv (forest plot; the sweep "
                        "figures' intervals)")
    parser.add_argument("--output-png", required=True, type=Path)
    parser.add_argument("--output-pdf", required=True, type=Path)
    parser.add_argument("--label", help="shown under the title, e.g. DEMO-SCALE numbers")
    parser.add_argument("--model", help="model key or paper name (default: the model with the most runs)")
    parser.add_argument("--epochs", type=float, help="epoch count of fig1/2/3/6 runs (default: the most common)")
    parser.add_argument("--datasets", nargs="*", default=[], help="only these datasets (keys or paper names)")
    parser.add_argument("--size-pattern", default=SIZE_PATTERN,
                        help="regex on dataset keys of the Fig. 2 right size study (default: %(default)s)")
    args = parser.parse_args()

    inputs = Inputs(load_eval_long(args.eval_long), load_runs(args.runs), load_paper(args.paper),
                    losses=load_losses(args.loss), label=args.label, model=args.model, epochs=args.epochs,
                    datasets=args.datasets, size_pattern=args.size_pattern,
                    comparisons=load_comparisons(args.comparisons) if args.comparisons else None)
    save(make_figure(args.figure, inputs), args.output_png, args.output_pdf)
    logging.getLogger("make_figure").info("wrote %s and %s", args.output_png, args.output_pdf)


if __name__ == "__main__":
    run_main(main)
