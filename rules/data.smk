# Data stage: download -> canonical messages JSONL -> Table 5 statistics -> role records.


include: "data_helpers.smk"


localrules:
    download_source,
    dataset_stats,
    table5,


rule download_source:
    output:
        raw_path("{source}", "{filename}"),
    log:
        f"{LOGS}/data/download_source/{{source}}/{{filename}}.log",
    params:
        script=script_path("download_source.py"),
        url=lambda w: CHECKED_CONFIG["sources"][w.source]["url"],
        flags=get_download_params,
    retries: 1
    conda:
        "../envs/data.yaml"
    shell:
        "python {params.script} --url {params.url:q} --dest {output:q} "
        "{params.flags:q} > {log} 2>&1"


rule convert_dataset:
    input:
        get_dataset_inputs,
    output:
        canonical_path("{dataset}"),
    log:
        f"{LOGS}/data/convert_dataset/{{dataset}}.log",
    params:
        script=script_path("convert_dataset.py"),
        converter=lambda w: CHECKED_CONFIG["datasets"][w.dataset]["converter"],
        args=get_converter_args,
    resources:
        mem_mb=8000,
    conda:
        "../envs/data.yaml"
    shell:
        "python {params.script} --converter {params.converter} "
        "--args {params.args:q} --output {output:q} {input:q} > {log} 2>&1"


rule dataset_stats:
    input:
        canonical_path("{dataset}"),
    output:
        stats_path("{dataset}"),
    log:
        f"{LOGS}/data/dataset_stats/{{dataset}}.log",
    params:
        script=script_path("dataset_stats.py"),
    conda:
        "../envs/data.yaml"
    shell:
        "python {params.script} row --dataset {wildcards.dataset} "
        "--input {input:q} --output {output:q} > {log} 2>&1"


rule table5:
    input:
        [stats_path(dataset) for dataset in workflow_config.needed_datasets(CHECKED_CONFIG)],
    output:
        csv=table_path("table5_dataset_stats", "csv"),
        md=table_path("table5_dataset_stats", "md"),
    log:
        f"{LOGS}/data/table5.log",
    params:
        script=script_path("dataset_stats.py"),
    conda:
        "../envs/data.yaml"
    shell:
        "python {params.script} table --output {output.csv:q} "
        "--markdown {output.md:q} {input:q} > {log} 2>&1"


rule role_record:
    input:
        data=canonical_path("{dataset}"),
        tokenizer_files=get_tokenizer_files,
        chat_template=get_chat_template_files,
    output:
        record_path("{tokenizer}", "{dataset}", "{max_length}"),
    log:
        f"{LOGS}/data/role_record/{{tokenizer}}_ml{{max_length}}/{{dataset}}.log",
    params:
        script=script_path("build_role_record.py"),
        backend=lambda w: get_tokenizer(w)["backend"],
        path=lambda w: tokenizer_path(get_tokenizer(w)),
        revision=get_tokenizer_revision,
        chat_template=get_chat_template_flags,
    threads: 2
    resources:
        mem_mb=16000,
    conda:
        "../envs/data.yaml"
    shell:
        "python {params.script} --input {input.data:q} "
        "--tokenizer-name {wildcards.tokenizer} --tokenizer-backend {params.backend} "
        "--tokenizer-path {params.path:q} {params.revision:q} {params.chat_template:q} "
        "--max-length {wildcards.max_length} "
        "--output {output:q} > {log} 2>&1"


rule data:
    input:
        [canonical_path(dataset) for dataset in workflow_config.needed_datasets(CHECKED_CONFIG)],
        rules.table5.output,
        [record_path(tokenizer, dataset) for tokenizer, dataset in workflow_config.record_targets(CHECKED_CONFIG)],
