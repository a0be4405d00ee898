# Evaluation stage: every fine-tuned run and every base model (target "base__<model>") on the
# paper's benchmarks, one result file per (target, benchmark): results/eval/<target>/<benchmark>.json.
# Model jobs declare a GPU; judge, summary and table jobs are local (they call an endpoint or
# only read JSON).


localrules:
    judge_mt_bench,
    judge_alpaca_eval,
    eval_summary,
    eval_long_table,
    runs_table,


wildcard_constraints:
    target=r"[A-Za-z0-9_.-]+",
    task="|".join(cat.LM_EVAL_TASKS),
    version="1|2",


rule lm_eval_task:
    input:
        model=lambda w: target_model_input(w.task)(w),
    output:
        f"{RESULTS}/eval/{{target}}/{{task}}.json",
    log:
        f"{LOGS}/eval/lm_eval/{{target}}/{{task}}.log",
    params:
        script=script_path("eval_lm_eval.py"),
        model_dir=target_model_param,
        flags=get_lm_eval_flags,
    threads: lambda w: eval_resources("cpus_per_task")
    resources:
        gpu=lambda w: min(1, eval_resources("gpu")),
        mem_mb=lambda w: eval_resources("mem_mb"),
        runtime=lambda w: eval_resources("runtime"),
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --model {params.model_dir:q} --task {wildcards.task} "
        "{params.flags:q} --output {output:q} > {log} 2>&1"


rule humaneval:
    input:
        model=target_model_input("humaneval"),
    output:
        result=f"{RESULTS}/eval/{{target}}/humaneval.json",
        samples=f"{RESULTS}/eval/{{target}}/generations/humaneval_samples.jsonl",
    log:
        f"{LOGS}/eval/humaneval/{{target}}.log",
    params:
        script=script_path("eval_humaneval.py"),
        model_dir=target_model_param,
        flags=get_humaneval_flags,
    threads: lambda w: eval_resources("cpus_per_task")
    resources:
        gpu=lambda w: min(1, eval_resources("gpu")),
        mem_mb=lambda w: eval_resources("mem_mb"),
        runtime=lambda w: eval_resources("runtime"),
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --model {params.model_dir:q} {params.flags:q} "
        "--output {output.result:q} --samples-output {output.samples:q} > {log} 2>&1"


rule generate_mt_bench_answers:
    input:
        model=target_model_input("mt_bench"),
        questions=repo_path("resources/eval/mt_bench/question.jsonl"),
    output:
        f"{RESULTS}/eval/{{target}}/generations/mt_bench_answers.jsonl",
    log:
        f"{LOGS}/eval/generate/{{target}}/mt_bench.log",
    params:
        script=script_path("eval_generate.py"),
        model_dir=target_model_param,
        flags=generation_flags("mt_bench"),
    threads: lambda w: eval_resources("cpus_per_task")
    resources:
        gpu=lambda w: min(1, eval_resources("gpu")),
        mem_mb=lambda w: eval_resources("mem_mb"),
        runtime=lambda w: eval_resources("runtime"),
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --benchmark mt_bench --model {params.model_dir:q} "
        "--model-id {wildcards.target} --questions {input.questions:q} {params.flags:q} --output {output:q} > {log} 2>&1"


rule generate_alpaca_eval_outputs:
    input:
        model=lambda w: target_model_input(
            "alpaca_eval_1" if "alpaca_eval_1" in target_of(w).benchmarks else "alpaca_eval_2")(w),
        questions=repo_path("resources/eval/alpaca_eval/text_davinci_003_outputs.json"),
    output:
        f"{RESULTS}/eval/{{target}}/generations/alpaca_eval_outputs.json",
    log:
        f"{LOGS}/eval/generate/{{target}}/alpaca_eval.log",
    params:
        script=script_path("eval_generate.py"),
        model_dir=target_model_param,
        flags=generation_flags("alpaca_eval"),
    threads: lambda w: eval_resources("cpus_per_task")
    resources:
        gpu=lambda w: min(1, eval_resources("gpu")),
        mem_mb=lambda w: eval_resources("mem_mb"),
        runtime=lambda w: eval_resources("runtime"),
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --benchmark alpaca_eval --model {params.model_dir:q} "
        "--model-id {wildcards.target} --questions {input.questions:q} {params.flags:q} --output {output:q} > {log} 2>&1"


rule judge_mt_bench:
    input:
        answers=f"{RESULTS}/eval/{{target}}/generations/mt_bench_answers.jsonl",
        questions=repo_path("resources/eval/mt_bench/question.jsonl"),
        reference=repo_path("resources/eval/mt_bench/reference_answer/gpt-4.jsonl"),
        judge_prompts=repo_path("resources/eval/mt_bench/judge_prompts.jsonl"),
        judge=judge_inputs,
    output:
        result=f"{RESULTS}/eval/{{target}}/mt_bench.json",
        judgments=f"{RESULTS}/eval/{{target}}/generations/mt_bench_judgments.jsonl",
    log:
        f"{LOGS}/eval/judge/{{target}}/mt_bench.log",
    params:
        script=script_path("eval_mt_bench_judge.py"),
        flags=lambda w: judge_flags("mt_bench") + limit_flag("mt_bench"),
        cache=f"{RESULTS}/judge_cache/mt_bench.jsonl",
    conda:
        "../envs/eval.yaml"
    shell:
        "python {params.script} --answers {input.answers:q} --questions {input.questions:q} "
        "--reference {input.reference:q} --judge-prompts {input.judge_prompts:q} {params.flags:q} "
        "--cache {params.cache:q} --output {output.result:q} --judgments-output {output.judgments:q} > {log} 2>&1"


rule judge_alpaca_eval:
    input:
        outputs=f"{RESULTS}/eval/{{target}}/generations/alpaca_eval_outputs.json",
        reference=lambda w: alpaca_eval_reference(w.version),
        judge=judge_inputs,
    output:
        result=f"{RESULTS}/eval/{{target}}/alpaca_eval_{{version}}.json",
        annotations=f"{RESULTS}/eval/{{target}}/generations/alpaca_eval_{{version}}_annotations.json",
    log:
        f"{LOGS}/eval/judge/{{target}}/alpaca_eval_{{version}}.log",
    params:
        script=script_path("eval_alpaca_eval.py"),
        flags=lambda w: judge_flags(f"alpaca_eval_{w.version}") + limit_flag("alpaca_eval"),
        cache=lambda w: f"{RESULTS}/judge_cache/{w.target}/alpaca_eval_{w.version}.jsonl",
    conda:
        "../envs/eval.yaml"
    shell:
        "python {params.script} --version {wildcards.version} --outputs {input.outputs:q} "
        "--reference {input.reference:q} {params.flags:q} --cache {params.cache:q} "
        "--output {output.result:q} --annotations-output {output.annotations:q} > {log} 2>&1"


rule regen_bleu:
    input:
        model=target_model_input("regen_bleu"),
        dataset=lambda w: canonical_path(target_of(w).run.dataset),
    output:
        result=f"{RESULTS}/eval/{{target}}/regen_bleu.json",
        generations=f"{RESULTS}/eval/{{target}}/generations/regen_bleu.jsonl",
    log:
        f"{LOGS}/eval/regen_bleu/{{target}}.log",
    params:
        script=script_path("eval_regen_bleu.py"),
        model_dir=target_model_param,
        flags=generation_flags("regen_bleu"),
    threads: lambda w: eval_resources("cpus_per_task")
    resources:
        gpu=lambda w: min(1, eval_resources("gpu")),
        mem_mb=lambda w: eval_resources("mem_mb"),
        runtime=lambda w: eval_resources("runtime"),
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --model {params.model_dir:q} --dataset {input.dataset:q} "
        "{params.flags:q} --output {output.result:q} --generations-output {output.generations:q} > {log} 2>&1"


rule output_loss:
    input:
        unpack(get_output_loss_inputs),
    output:
        f"{RESULTS}/eval/{{target}}/output_loss.json",
    log:
        f"{LOGS}/eval/output_loss/{{target}}.log",
    params:
        script=script_path("eval_output_loss.py"),
        model_dir=target_model_param,
        record_flags=lambda w, input: [x for name in ("train", "heldout") if name in input.keys()
                                       for x in (f"--{name}", input[name])],
        token_budget=(EVAL.get("output_loss") or {}).get("token_budget", 8192),
        limit=lambda w: limit_flag("output_loss"),
    threads: lambda w: eval_resources("cpus_per_task")
    resources:
        gpu=lambda w: min(1, eval_resources("gpu")),
        mem_mb=lambda w: eval_resources("mem_mb"),
        runtime=lambda w: eval_resources("runtime"),
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --model {params.model_dir:q} --run {wildcards.target} "
        "{params.record_flags:q} --token-budget {params.token_budget} {params.limit:q} --output {output:q} > {log} 2>&1"


rule eval_summary:
    input:
        get_summary_inputs,
    output:
        f"{RESULTS}/eval/{{target}}/summary.json",
    log:
        f"{LOGS}/eval/summary/{{target}}.log",
    params:
        script=script_path("eval_summary.py"),
        partial=["--allow-partial"] if EVAL.get("allow_partial") else [],
        not_shipped=get_not_shipped,
        judge_label=JUDGE.get("label", "gpt-4"),
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {params.script} summary --target {wildcards.target} {params.partial} {params.not_shipped} "
        "--judge-label {params.judge_label:q} --output {output:q} {input:q} > {log} 2>&1"


rule eval_long_table:
    input:
        all_summaries(),
    output:
        f"{RESULTS}/tables/eval_long.csv",
    log:
        f"{LOGS}/eval/eval_long.log",
    params:
        script=script_path("eval_summary.py"),
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {params.script} long --output {output:q} {input:q} > {log} 2>&1"


rule runs_table:
    input:
        [f"{RESULTS}/data/stats/{dataset}.json" for dataset in sorted({t.run.dataset for t in TARGETS.values() if t.run})],
    output:
        f"{RESULTS}/tables/runs.csv",
    log:
        f"{LOGS}/eval/runs_table.log",
    params:
        script=script_path("eval_summary.py"),
        runs=json.dumps(runs_table_rows()),
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {params.script} runs --runs {params.runs:q} --output {output:q} {input:q} > {log} 2>&1"


rule evaluate:
    input:
        rules.eval_long_table.output,
        rules.runs_table.output,
