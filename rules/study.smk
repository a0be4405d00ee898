# The real-model study's report (profiles/study, docs/STUDY.md): tables and figure from the
# evaluation results, trained-token shares with the model's tokenizer, and the docs page.
# Active only with a `study:` section in the config (profiles/study/study_config.yaml).


include: "study_helpers.smk"


localrules:
    study_tables,
    study_token_shares,
    study_docs,
    study,


rule study_tables:
    input:
        results=study_results,
        stats=lambda w: [stats_path(d) for d in study_datasets()],
        paper=repo_path("resources/paper/paper_results.csv"),
    output:
        table=f"{STUDY_DIR}/study_table.md",
        csv=f"{STUDY_DIR}/study_table.csv",
        summary=f"{STUDY_DIR}/study_summary.csv",
        long=f"{STUDY_DIR}/study_long.csv",
        png=f"{STUDY_DIR}/fig_study_loss.png",
        pdf=f"{STUDY_DIR}/fig_study_loss.pdf",
        curves=f"{STUDY_DIR}/study_curves.md",
        curves_csv=f"{STUDY_DIR}/study_curves.csv",
        curves_png=f"{STUDY_DIR}/fig_study_curves.png",
        curves_pdf=f"{STUDY_DIR}/fig_study_curves.pdf",
    log:
        f"{LOGS}/study/study_tables.log",
    params:
        script=script_path("study_report.py"),
        targets=lambda w: json.dumps(study_targets(), sort_keys=True),
        stats=lambda w: [f"--stats={d}={stats_path(d)}" for d in study_datasets()],
        arm_order=lambda w: study_config()["arm_order"],
        curves=lambda w: json.dumps(study_config()["curves"], sort_keys=True),
        label=LABEL,
        outputs=lambda w, output: [f"--output={name}={path}" for name, path in output.items()],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {params.script} tables --targets {params.targets:q} {params.stats:q} "
        "--arm-order {params.arm_order:q} --label {params.label:q} {params.outputs:q} "
        "--curves {params.curves:q} --paper {input.paper:q} "
        "{input.results:q} > {log} 2>&1"


rule study_token_shares:
    input:
        data=lambda w: [canonical_path(d) for d in study_shares_datasets().values()],
        tokenizer=lambda w: get_tokenizer_files(SimpleNamespace(tokenizer=study_config()["token_shares"]["tokenizer"])),
    output:
        f"{STUDY_DIR}/token_shares.md",
    log:
        f"{LOGS}/study/token_shares.log",
    params:
        script=script_path("study_report.py"),
        tokenizer=lambda w: tokenizer_path(CHECKED_CONFIG["tokenizers"][study_config()["token_shares"]["tokenizer"]]),
        max_length=lambda w: study_config()["token_shares"]["max_length"],
        datasets=lambda w: [f"--dataset={name}={canonical_path(d)}" for name, d in study_shares_datasets().items()],
        policies=lambda w: [f"--policy={c}={p}" for c, p in study_config()["token_shares"]["policies"].items()],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {params.script} shares --tokenizer {params.tokenizer:q} --max-length {params.max_length} "
        "{params.datasets:q} {params.policies:q} --output {output:q} > {log} 2>&1"


rule study_docs:
    input:
        template=lambda w: repo_path(study_config()["template"]),
        table=rules.study_tables.output.table,
        shares=rules.study_token_shares.output[0],
        png=rules.study_tables.output.png,
        curves=rules.study_tables.output.curves,
        curves_png=rules.study_tables.output.curves_png,
    output:
        docs=STUDY_DOCS,
        figure=STUDY_DOCS_FIGURE,
        curves_figure=STUDY_DOCS_CURVES_FIGURE,
    log:
        f"{LOGS}/study/study_docs.log",
    params:
        script=script_path("study_report.py"),
    conda:
        "../envs/analysis.yaml"
    shell:
        "(cp {input.png:q} {output.figure:q} && cp {input.curves_png:q} {output.curves_figure:q} && "
        "python {params.script} docs --template {input.template:q} "
        "--insert study_table={input.table:q} --insert token_shares={input.shares:q} --insert curves={input.curves:q} "
        "--output {output.docs:q}) > {log} 2>&1"


rule study:  # the results too: a fresh clone has docs/STUDY.md (committed) but no results/study
    input:
        rules.study_tables.output,
        rules.study_docs.output,
