# Reporting stage: the paper's tables (ours / paper / difference) and figures from eval_long.csv,
# and the HTML report (snakemake --report) that collects them with provenance.


include: "report_helpers.smk"


localrules:
    paper_table,
    paper_figure,
    provenance,
    report,


wildcard_constraints:
    table_stem="|".join(catalogue.TABLE_STEMS.values()),
    figure="|".join(catalogue.FIGURES),


rule paper_table:
    input:
        unpack(get_table_inputs),
    output:
        csv=report(table_path("{table_stem}", "csv"), category="Tables", labels={"table": "{table_stem}", "format": "csv"}),
        md=report(table_path("{table_stem}", "md"), caption="../report/captions/item.rst", category="Tables",
                  labels={"table": "{table_stem}", "format": "markdown"}),
    log:
        f"{LOGS}/report/tables/{{table_stem}}.log",
    params:
        script=script_path("make_tables.py"),
        table=lambda w: catalogue.TABLE_OF_STEM[w.table_stem],
        table5=lambda w, input: ["--table5", input.table5] if "table5" in input.keys() else [],
        label=LABEL,
        caption=lambda w: caption_text(catalogue.TABLE_OF_STEM[w.table_stem]),
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {params.script} --eval-long {input.eval_long:q} --runs {input.runs:q} --paper {input.paper:q} "
        "--comparisons {input.comparisons:q} {params.table5:q} --tables {params.table} --label {params.label:q} "
        "--outdir $(dirname {output.csv:q}) > {log} 2>&1"


rule paper_figure:
    input:
        eval_long=rules.eval_long_table.output[0],
        runs=rules.runs_table.output[0],
        paper=PAPER_CSV,
        loss=get_loss_files,
        comparisons=get_comparisons_input,
    output:
        png=report(figure_path("{figure}", "png"), caption="../report/captions/item.rst", category="Figures",
                   labels={"figure": "{figure}"}),
        pdf=figure_path("{figure}", "pdf"),
    log:
        f"{LOGS}/report/figures/{{figure}}.log",
    params:
        script=script_path("make_figure.py"),
        loss=lambda w, input: ["--loss", *input.loss] if input.loss else [],
        comparisons=lambda w, input: ["--comparisons", *input.comparisons] if input.comparisons else [],
        label=LABEL,
        caption=lambda w: caption_text(w.figure),
    conda:
        "../envs/analysis.yaml"
    shell:
        "MPLBACKEND=Agg python {params.script} --figure {wildcards.figure} --eval-long {input.eval_long:q} "
        "--runs {input.runs:q} --paper {input.paper:q} {params.loss:q} {params.comparisons:q} --label {params.label:q} "
        "--output-png {output.png:q} --output-pdf {output.pdf:q} > {log} 2>&1"


rule provenance:
    output:
        report(f"{RESULTS}/provenance.json", caption="../report/captions/provenance.rst", category="Provenance"),
    log:
        f"{LOGS}/report/provenance.log",
    params:
        config_sha256=CONFIG_SHA256,  # a changed config or revision reruns the record
        revision=GIT_REVISION,
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/write_provenance.py"


rule tables:
    input:
        expand(table_path("{stem}", "{ext}"), stem=catalogue.TABLE_STEMS.values(), ext=("csv", "md")),
        rules.comparisons.output,


rule figures:
    input:
        expand(figure_path("{figure}", "{ext}"), figure=catalogue.FIGURES, ext=("png", "pdf")),


rule report:
    input:
        rules.tables.input,
        rules.figures.input,
        rules.provenance.output,
    output:
        f"{RESULTS}/report.html",
    log:
        f"{LOGS}/report/report.log",
    params:
        snakefile=workflow.main_snakefile,
        config_sha256=CONFIG_SHA256,
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/build_report.py"
