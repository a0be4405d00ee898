# Evaluation stage: every fine-tuned run and every base model (target "base__<model>") on the
# paper's benchmarks, one result file per (target, benchmark): results/eval/<target>/<benchmark>.json.
# All lm-eval tasks of a target run in one job (one model load) that writes every per-task file.
# Model jobs share one resources block (EVAL_MODEL_RESOURCES) and declare a GPU; judge, summary
# and table jobs are local (they call an endpoint or only read JSON).


include: "eval_inputs.smk"


localrules:
    judge_mt_bench,
    judge_alpaca_eval,
    eval_summary,
    eval_long_table,
    runs_table,


wildcard_constraints:
    target=r"[A-Za-z0-9_.-]+",
    version="1|2",


# ---- rules ---------------------------------------------------------------------------------------------
for _name, _tasks, _targets in lm_eval_groups():  # one job per model, all of its lm-eval tasks

    rule:
        name:
            _name
        input:
            model=get_model_input(*_tasks),
        output:
            **{task: eval_path("{target}", task) for task in _tasks},
        log:
            f"{EVAL_LOGS}/lm_eval/{{target}}.log",
        benchmark:
            f"{EVAL_BENCHMARKS}/lm_eval/{{target}}.tsv"
        params:
            script=script_path("eval_lm_eval.py"),
            model_dir=get_model_dir,
            tasks=list(_tasks),
            flags=get_lm_eval_flags,
            output_dir=EVAL_DIR,
        threads: get_eval_threads
        resources:
            **EVAL_MODEL_RESOURCES,
        wildcard_constraints:
            target=_targets,
        conda:
            "../envs/eval.yaml"
        shell:
            "OMP_NUM_THREADS={threads} python {params.script} --model {params.model_dir:q} --tasks {params.tasks:q} "
            "{params.flags:q} --output-dir {params.output_dir:q} > {log} 2>&1"


rule humaneval:
    input:
        model=get_model_input("humaneval"),
    output:
        result=eval_path("{target}", "humaneval"),
        samples=f"{GENERATIONS}/humaneval_samples.jsonl",
    log:
        f"{EVAL_LOGS}/humaneval/{{target}}.log",
    benchmark:
        f"{EVAL_BENCHMARKS}/humaneval/{{target}}.tsv"
    params:
        script=script_path("eval_humaneval.py"),
        model_dir=get_model_dir,
        flags=get_humaneval_flags,
    threads: get_eval_threads
    resources:
        **EVAL_MODEL_RESOURCES,
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --model {params.model_dir:q} {params.flags:q} "
        "--output {output.result:q} --samples-output {output.samples:q} > {log} 2>&1"


rule generate_mt_bench_answers:
    input:
        model=get_model_input("mt_bench"),
        questions=repo_path("resources/eval/mt_bench/question.jsonl"),
    output:
        f"{GENERATIONS}/mt_bench_answers.jsonl",
    log:
        f"{EVAL_LOGS}/generate/{{target}}/mt_bench.log",
    benchmark:
        f"{EVAL_BENCHMARKS}/generate_mt_bench_answers/{{target}}.tsv"
    params:
        script=script_path("eval_generate.py"),
        model_dir=get_model_dir,
        flags=get_generation_flags("mt_bench"),
    threads: get_eval_threads
    resources:
        **EVAL_MODEL_RESOURCES,
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --benchmark mt_bench --model {params.model_dir:q} "
        "--model-id {wildcards.target} --questions {input.questions:q} {params.flags:q} --output {output:q} > {log} 2>&1"


rule generate_alpaca_eval_outputs:  # AlpacaEval 1.0 and 2.0 judge the same outputs
    input:
        model=get_model_input("alpaca_eval_1", "alpaca_eval_2"),
        questions=repo_path("resources/eval/alpaca_eval/text_davinci_003_outputs.json"),
    output:
        f"{GENERATIONS}/alpaca_eval_outputs.json",
    log:
        f"{EVAL_LOGS}/generate/{{target}}/alpaca_eval.log",
    benchmark:
        f"{EVAL_BENCHMARKS}/generate_alpaca_eval_outputs/{{target}}.tsv"
    params:
        script=script_path("eval_generate.py"),
        model_dir=get_model_dir,
        flags=get_generation_flags("alpaca_eval"),
    threads: get_eval_threads
    resources:
        **EVAL_MODEL_RESOURCES,
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --benchmark alpaca_eval --model {params.model_dir:q} "
        "--model-id {wildcards.target} --questions {input.questions:q} {params.flags:q} --output {output:q} > {log} 2>&1"


rule judge_mt_bench:
    input:
        answers=rules.generate_mt_bench_answers.output[0],
        questions=repo_path("resources/eval/mt_bench/question.jsonl"),
        reference=repo_path("resources/eval/mt_bench/reference_answer/gpt-4.jsonl"),
        judge_prompts=repo_path("resources/eval/mt_bench/judge_prompts.jsonl"),
        judge=get_judge_inputs,
    output:
        result=eval_path("{target}", "mt_bench"),
        judgments=f"{GENERATIONS}/mt_bench_judgments.jsonl",
    log:
        f"{EVAL_LOGS}/judge/{{target}}/mt_bench.log",
    benchmark:
        f"{EVAL_BENCHMARKS}/judge_mt_bench/{{target}}.tsv"
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
        outputs=rules.generate_alpaca_eval_outputs.output[0],
        reference=lambda w: alpaca_eval_reference(w.version),
        judge=get_judge_inputs,
    output:
        result=eval_path("{target}", "alpaca_eval_{version}"),
        annotations=f"{GENERATIONS}/alpaca_eval_{{version}}_annotations.json",
    log:
        f"{EVAL_LOGS}/judge/{{target}}/alpaca_eval_{{version}}.log",
    benchmark:
        f"{EVAL_BENCHMARKS}/judge_alpaca_eval/{{target}}_{{version}}.tsv"
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
        model=get_model_input("regen_bleu"),
        dataset=lambda w: canonical_path(get_target(w).run.dataset),
    output:
        result=eval_path("{target}", "regen_bleu"),
        generations=f"{GENERATIONS}/regen_bleu.jsonl",
    log:
        f"{EVAL_LOGS}/regen_bleu/{{target}}.log",
    benchmark:
        f"{EVAL_BENCHMARKS}/regen_bleu/{{target}}.tsv"
    params:
        script=script_path("eval_regen_bleu.py"),
        model_dir=get_model_dir,
        flags=get_generation_flags("regen_bleu"),
    threads: get_eval_threads
    resources:
        **EVAL_MODEL_RESOURCES,
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --model {params.model_dir:q} --dataset {input.dataset:q} "
        "{params.flags:q} --output {output.result:q} --generations-output {output.generations:q} > {log} 2>&1"


rule output_loss:
    input:
        unpack(get_output_loss_inputs),
    output:
        eval_path("{target}", "output_loss"),
    log:
        f"{EVAL_LOGS}/output_loss/{{target}}.log",
    benchmark:
        f"{EVAL_BENCHMARKS}/output_loss/{{target}}.tsv"
    params:
        script=script_path("eval_output_loss.py"),
        model_dir=get_model_dir,
        record_flags=lambda w, input: [x for name in ("train", "heldout") if name in input.keys()
                                       for x in (f"--{name}", input[name])],
        token_budget=EVAL["output_loss"]["token_budget"],
        limit=lambda w: limit_flag("output_loss"),
    threads: get_eval_threads
    resources:
        **EVAL_MODEL_RESOURCES,
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --model {params.model_dir:q} --run {wildcards.target} "
        "{params.record_flags:q} --token-budget {params.token_budget} {params.limit:q} --output {output:q} > {log} 2>&1"


rule eval_summary:
    input:
        get_summary_inputs,
    output:
        eval_path("{target}", "summary"),
    log:
        f"{EVAL_LOGS}/summary/{{target}}.log",
    params:
        script=script_path("eval_summary.py"),
        partial=["--allow-partial"] if EVAL["allow_partial"] else [],
        not_shipped=get_not_shipped,
        judge_label=JUDGE["label"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {params.script} summary --target {wildcards.target} {params.partial} {params.not_shipped} "
        "--judge-label {params.judge_label:q} --output {output:q} {input:q} > {log} 2>&1"


rule eval_long_table:
    input:
        [eval_path(tid, "summary") for tid in TARGETS],
    output:
        f"{RESULTS}/tables/eval_long.csv",
    log:
        f"{EVAL_LOGS}/eval_long.log",
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
        f"{EVAL_LOGS}/runs_table.log",
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
