"""Per-dataset length statistics (paper Table 5 units) and the Table 5 CSV/Markdown.

    python workflow_scripts/dataset_stats.py row --dataset lima \
        --input results/data/canonical/lima.jsonl --output results/data/stats/lima.json
    python workflow_scripts/dataset_stats.py table \
        --output results/tables/table5_dataset_stats.csv results/data/stats/*.json
"""

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.data.messages import read_messages_jsonl
from imrepro.data.stats import TABLE5_COLUMNS, table5_row

log = logging.getLogger("dataset_stats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    row = sub.add_parser("row", help="statistics of one canonical dataset")
    row.add_argument("--dataset", required=True)
    row.add_argument("--input", required=True, type=Path)
    row.add_argument("--output", required=True, type=Path)
    table = sub.add_parser("table", help="collect rows into Table 5 (CSV + Markdown)")
    table.add_argument("--output", required=True, type=Path)
    table.add_argument("--markdown", type=Path)
    table.add_argument("rows", nargs="+", type=Path)
    args = parser.parse_args()

    if args.command == "row":
        stats = table5_row(args.dataset, read_messages_jsonl(args.input))
        with atomic_open(args.output) as out:
            json.dump(stats, out, indent=2)
        log.info("%s", stats)
    else:
        frame = pd.DataFrame([json.loads(p.read_text()) for p in args.rows], columns=TABLE5_COLUMNS)
        with atomic_open(args.output) as out:
            frame.to_csv(out, index=False)
        if args.markdown:
            with atomic_open(args.markdown) as out:
                out.write(frame.to_markdown(index=False) + "\n")
        log.info("wrote %d rows to %s", len(frame), args.output)


if __name__ == "__main__":
    run_main(main)
