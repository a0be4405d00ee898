# Helpers of the reporting stage, included by rules/report.smk: its input and params functions, the figure
# paths, captions and provenance stamps. Functions and rules are in separate files for `snakemake --lint`.
from imrepro.core.provenance import git_revision

GIT_REVISION = json.dumps(git_revision(REPO))  # a new revision reruns the provenance record
CONFIG_SHA256 = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
LABEL = CHECKED_CONFIG["evaluation"]["label"]


def figure_path(name, ext):
    return f"{RESULTS}/figures/{name}.{ext}"


def caption_text(name):
    """The caption of one table or figure (report/captions/<name>.rst), its label filled in: the report
    renders captions per rule, so every table and figure rule passes its own through params."""
    text = (REPO / "report" / "captions" / f"{name}.rst").read_text()
    return text.replace("{{ snakemake.params.label }}", f"**{LABEL}**" if LABEL else "")


def get_table_inputs(wildcards):
    inputs = {"eval_long": rules.eval_long_table.output[0], "runs": rules.runs_table.output[0], "paper": PAPER_CSV,
              "comparisons": rules.comparisons.output.csv}
    if catalogue.TABLE_OF_STEM[wildcards.table_stem] == "table5":
        inputs["table5"] = rules.table5.output.csv
    return inputs


def get_loss_files(wildcards):
    """Fig. 3 reads every output_loss.json; the other figures none."""
    if wildcards.figure != "fig3":
        return []
    return [eval_path(t.target_id, "output_loss") for t in TARGETS.values() if "output_loss" in t.benchmarks]


def get_comparisons_input(wildcards):
    """The forest plot and the sweep figures (their intervals) read comparisons.csv; the paper's figures do not."""
    return [rules.comparisons.output.csv] if wildcards.figure in catalogue.COMPARISON_FIGURES else []
