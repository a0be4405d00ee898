# Instruction Modelling reproduction: data -> training -> evaluation -> tables/figures.
# Shi et al., "Instruction Tuning With Loss Over Instructions", NeurIPS 2024.
#
#   snakemake --profile profiles/demo          # the CPU demo (make demo)
#   snakemake --profile profiles/local data    # one target of the paper's grid
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: Path(workflow.basedir) / "config.yaml"


report: "report/workflow.rst"


validate(config, "schemas/config.schema.yaml", set_default=True)  # the schema's defaults fill the config


include: "rules/common.smk"


wildcard_constraints:
    source=r"[A-Za-z0-9_.-]+",
    dataset=r"[A-Za-z0-9_]+",
    tokenizer=r"[A-Za-z0-9_.-]+",
    max_length=r"\d+",
    model=r"[A-Za-z0-9_.-]+",
    run=workflow_config.RUN_ID_PATTERN,


include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/eval.smk"
include: "rules/compare.smk"
include: "rules/report.smk"
include: "rules/plan.smk"
include: "rules/study.smk"


rule all:
    input:
        rules.data.input,
        rules.train.input,
        rules.evaluate.input,
        rules.report.output,
    default_target: True
