# Training stage: base models -> one fine-tuned model per run (model x dataset x method x epochs).


include: "train_helpers.smk"


localrules:
    prepare_model,


rule prepare_model:
    input:
        tokenizer_files=get_model_init_tokenizer,
    output:
        f"{prepared_model_dir('{model}')}/config.json",
    log:
        f"{LOGS}/train/prepare_model/{{model}}.log",
    params:
        script=script_path("prepare_model.py"),
        outdir=lambda w: prepared_model_dir(w.model),
        flags=get_prepare_model_flags,
    conda:
        "../envs/train.yaml"
    shell:
        "python {params.script} --output {params.outdir:q} {params.flags:q} > {log} 2>&1"


rule reference_logprobs:
    input:
        unpack(get_reference_inputs),
    output:
        reference_path("{model}", "{dataset}"),
    log:
        f"{LOGS}/train/reference_logprobs/{{model}}/{{dataset}}.log",
    params:
        script=script_path("reference_logprobs.py"),
        model_dir=lambda w: base_model_dir(w.model),
        token_budget=CHECKED_CONFIG["training"]["token_budget"],
        precision=CHECKED_CONFIG["training"]["precision"],
    threads: 2
    resources:
        gpu=get_train_resource("gpu", at_most=1),
        nodes=1,
        tasks_per_gpu=0,
        mem_mb=get_train_resource("mem_mb"),
        runtime=get_train_resource("runtime"),
    conda:
        "../envs/train.yaml"
    shell:
        "python {params.script} --model {params.model_dir:q} --record {input.record:q} "
        "--token-budget {params.token_budget} --precision {params.precision} --output {output:q} > {log} 2>&1"


rule train_model:
    input:
        unpack(get_train_inputs),
    output:
        trained_model_output("{run}"),
    log:
        f"{LOGS}/train/train_model/{{run}}.log",
    benchmark:
        timing_path("train_model", "{run}")
    params:
        script=script_path("train.py"),
        launcher=get_train_launcher,
        settings=get_train_settings,
    threads: get_train_resource("cpus_per_task")
    resources:
        gpu=get_train_resource("gpu"),
        nodes=1,
        tasks_per_gpu=0,
        cpus_per_task=get_train_resource("cpus_per_task"),
        mem_mb=get_train_resource("mem_mb"),
        runtime=get_train_resource("runtime"),
    conda:
        "../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} {params.script} --settings {params.settings:q} > {log} 2>&1"


rule train:
    input:
        [train_dir(run) for run in RUNS.values()],
