"""Convert downloaded source files (or another canonical dataset) into canonical messages JSONL.

    python workflow_scripts/convert_dataset.py --converter instruction_json \
        --args '{"dataset": "alpagasus_claude_t45_alpaca", "id_prefix": "alpagasus_", "skip_draws": 0}' \
        --output results/data/canonical/alpagasus_alpaca_5k_rebuilt.jsonl results/data/raw/.../claude_t45.json
"""

import argparse
import json
import logging
from pathlib import Path

from imrepro.core.cli import run_main
from imrepro.data.converters import CONVERTERS, run_converter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--converter", required=True, choices=sorted(CONVERTERS))
    parser.add_argument("--args", default="{}", help="converter keyword arguments as JSON")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("inputs", nargs="+", type=Path)
    args = parser.parse_args()
    n = run_converter(args.converter, args.inputs, args.output, json.loads(args.args))
    logging.getLogger("convert_dataset").info("wrote %d examples to %s", n, args.output)


if __name__ == "__main__":
    run_main(main)
