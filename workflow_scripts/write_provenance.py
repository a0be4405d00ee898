"""Write results/provenance.json: git revision, software versions, machine and the workflow's config.

    python workflow_scripts/write_provenance.py --config '<json>' --output results/provenance.json
"""

import argparse
import json
from pathlib import Path

import _bootstrap
from imrepro import provenance
from imrepro.atomic import atomic_open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the workflow's config as JSON")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()
    record = {**provenance.collect(), "config": json.loads(args.config)}
    with atomic_open(args.output) as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    _bootstrap.run_main(main)
