"""Build results/report.html with `snakemake --report` for this same workflow and config.

Run by the `report` rule as a Snakemake script: a second, read-only (`--nolock`) Snakemake renders
the report from the finished outputs, with the running workflow's config (written to a temporary
file next to the output, never printed). By hand, simply: `snakemake --profile ... --report results/report.html`.
"""

import json
import subprocess
import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # set by Snakemake's `script:` directive
output = Path(snakemake.output[0])
config_file = output.with_name(f".{output.name}.config.json")
config_file.write_text(json.dumps(dict(snakemake.config), default=str))
try:
    with open(snakemake.log[0], "w") as log:
        command = [sys.executable, "-m", "snakemake", "--snakefile", snakemake.params.snakefile, "--directory", ".",
                   "--nolock", "--configfile", str(config_file), "--report", str(output)]
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)
finally:
    config_file.unlink(missing_ok=True)
