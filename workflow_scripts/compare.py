"""Paired comparisons of methods on the same items (imrepro.report.comparisons).

    python workflow_scripts/compare.py --runs results/tables/runs.csv --against it --pair im im_seed \
        --confidence 0.95 --alpha 0.05 --n-resamples 9999 --seed 0 \
        --output-csv results/tables/comparisons.csv --output-md results/tables/comparisons.md \
        results/eval/*/items.json
"""

import argparse
import logging
import time
from pathlib import Path

from imrepro.core.cli import run_main
from imrepro.report.comparisons import Settings, compare, load_items, to_markdown, write_csv, write_markdown
from imrepro.report.report_inputs import load_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, type=Path, help="results/tables/runs.csv")
    parser.add_argument("--against", required=True, help="every method is compared with this one")
    parser.add_argument("--pair", nargs=2, action="append", default=[], metavar=("BASELINE", "METHOD"))
    parser.add_argument("--confidence", required=True, type=float)
    parser.add_argument("--alpha", required=True, type=float)
    parser.add_argument("--n-resamples", required=True, type=int)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--label", help="printed at the top of the Markdown, e.g. DEMO-SCALE numbers")
    parser.add_argument("--output-csv", required=True, type=Path)
    parser.add_argument("--output-md", required=True, type=Path)
    parser.add_argument("items", nargs="*", type=Path, help="results/eval/<target>/items.json files")
    args = parser.parse_args()
    start = time.perf_counter()
    settings = Settings(args.against, tuple(map(tuple, args.pair)), args.confidence, args.alpha, args.n_resamples,
                        args.seed)
    frame = compare(load_runs(args.runs), load_items(args.items), settings)
    write_csv(frame, args.output_csv)
    write_markdown(to_markdown(frame, settings, args.label), args.output_md)
    logging.getLogger("compare").info("%d comparison rows (%d significant) in %.1f s", len(frame),
                                      int(frame["significant"].sum()) if len(frame) else 0,
                                      time.perf_counter() - start)


if __name__ == "__main__":
    run_main(main)
