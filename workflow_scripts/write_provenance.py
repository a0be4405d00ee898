"""Write results/provenance.json: git revision, software versions, machine and the workflow's config.

Run by the `provenance` rule as a Snakemake script (it reads the config from the `snakemake`
object, so the config never appears on a command line or in a log), or by hand:

    python workflow_scripts/write_provenance.py --config config.yaml --output results/provenance.json
"""

import argparse
import json
from pathlib import Path

from imrepro.core import provenance
from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main


def write(config: dict, output: Path) -> None:
    record = {**provenance.collect(), "config": config}
    with atomic_open(output) as handle:
        json.dump(record, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="a YAML or JSON config file")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()
    import yaml

    write(yaml.safe_load(args.config.read_text()), args.output)


if "snakemake" in globals():  # the workflow's `script:` directive
    write(dict(snakemake.config), Path(snakemake.output[0]))  # noqa: F821
elif __name__ == "__main__":
    run_main(main)
