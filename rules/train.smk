# Training stage: base models -> one fine-tuned model per run (model x dataset x method x epochs).


localrules:
    prepare_model,


rule prepare_model:
    input:
        tokenizer_files=get_model_init_tokenizer,
    output:
        f"{RESULTS}/models/{{model}}/config.json",
    log:
        f"{LOGS}/train/prepare_model/{{model}}.log",
    params:
        script=script_path("prepare_model.py"),
        outdir=lambda w, output: str(Path(output[0]).parent),
        flags=get_prepare_model_flags,
    conda:
        "../envs/train.yaml"
    shell:
        "python {params.script} --output {params.outdir:q} {params.flags:q} > {log} 2>&1"


rule reference_logprobs:
    input:
        record=lambda w: record_path(model_tokenizer(w.model), w.dataset),
        model=lambda w: base_model_config(w.model),
    output:
        f"{RESULTS}/kl_ref/{{model}}/{{dataset}}.npy",
    log:
        f"{LOGS}/train/reference_logprobs/{{model}}/{{dataset}}.log",
    params:
        script=script_path("reference_logprobs.py"),
        model_dir=lambda w: base_model_dir(w.model),
        token_budget=CFG["training"].get("token_budget", 8192),
        precision=CFG["training"].get("precision", "bf16"),
    threads: 2
    resources:
        gpu=lambda w: min(1, train_resources(w.model)["gpu"]),
        nodes=1,
        tasks_per_gpu=0,
        mem_mb=lambda w: train_resources(w.model)["mem_mb"],
        runtime=lambda w: train_resources(w.model)["runtime"],
    conda:
        "../envs/train.yaml"
    shell:
        "python {params.script} --model {params.model_dir:q} --record {input.record:q} "
        "--token-budget {params.token_budget} --precision {params.precision} --output {output:q} > {log} 2>&1"


rule train_model:
    input:
        unpack(get_train_inputs),
    output:
        directory(f"{RESULTS}/train/{{run}}"),
    log:
        f"{LOGS}/train/train_model/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model/{{run}}.tsv"
    params:
        script=script_path("train.py"),
        launcher=get_train_launcher,
        settings=get_train_settings,
    threads: lambda w: train_resources(run_of(w).model)["cpus_per_task"]
    resources:
        gpu=lambda w: train_resources(run_of(w).model)["gpu"],
        nodes=1,
        tasks_per_gpu=0,
        cpus_per_task=lambda w: train_resources(run_of(w).model)["cpus_per_task"],
        mem_mb=lambda w: train_resources(run_of(w).model)["mem_mb"],
        runtime=lambda w: train_resources(run_of(w).model)["runtime"],
    conda:
        "../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} {params.script} --settings {params.settings:q} > {log} 2>&1"


rule train:
    input:
        lambda w: [train_dir(run) for run in wc.runs(CFG)],
