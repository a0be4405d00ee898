# Comparison stage: per-item scores of every trained run (results/eval/<run>/items.json, read from the result
# files and the stock tools' per-item files), then paired comparisons of the configured method pairs:
# results/tables/comparisons.{csv,md} (imrepro.report.comparisons), which Tables 1, 2, 4, the forest plot
# and the report read.


include: "compare_helpers.smk"


localrules:
    eval_items,
    comparisons,


rule eval_items:
    input:
        unpack(get_items_inputs),
    output:
        items_path("{target}"),
    log:
        f"{COMPARE_LOGS}/items/{{target}}.log",
    params:
        script=script_path("eval_items.py"),
        raw=get_raw_item_flags,
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {params.script} --target {wildcards.target} {params.raw:q} --output {output:q} "
        "{input.results:q} > {log} 2>&1"


rule comparisons:
    input:
        runs=rules.runs_table.output[0],
        per_item=[items_path(tid) for tid in COMPARED_TARGETS],
    output:
        csv=report(table_path("comparisons", "csv"), category="Comparisons", labels={"table": "comparisons"}),
        md=report(table_path("comparisons", "md"), caption="../report/captions/comparisons.rst",
                  category="Comparisons", labels={"table": "comparisons (in words)"}),
    log:
        f"{COMPARE_LOGS}/comparisons.log",
    benchmark:
        timing_path("comparisons", "comparisons")
    params:
        script=script_path("compare.py"),
        flags=get_compare_flags,
        label=CHECKED_CONFIG["evaluation"]["label"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {params.script} --runs {input.runs:q} {params.flags:q} --label {params.label:q} "
        "--output-csv {output.csv:q} --output-md {output.md:q} {input.per_item:q} > {log} 2>&1"
