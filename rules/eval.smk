# Evaluation stage: every fine-tuned run and every base model (target "base__<model>") on the
# paper's benchmarks, one result file per (target, benchmark): results/eval/<target>/<benchmark>.json.
# A model is loaded twice: all lm-eval tasks of a target run in one job (rule lm_eval), and one model job
# (rule model_outputs) writes everything else the model itself produces (output losses, regeneration BLEU, the
# answers the judges score, HumanEval completions, which rule humaneval runs in the sandbox). Rule names are
# fixed: which tasks a target gets comes from input and params functions, and each per-model job writes a
# folder (results/eval/<target>/lm_eval/, .../model_outputs/) from which the local rule eval_result copies
# each result to results/eval/<target>/<benchmark>.json (so `snakemake results/eval/<target>/mmlu.json` works).
# Model jobs share one resources block (EVAL_MODEL_RESOURCES) and declare a GPU; judge, summary
# and table jobs are local (they call an endpoint or only read JSON).


include: "eval_helpers.smk"


localrules:
    judge_mt_bench,
    judge_alpaca_eval,
    eval_summary,
    eval_long_table,
    runs_table,
    eval_result,


wildcard_constraints:
    target=r"[A-Za-z0-9_.-]+",
    version="1|2",


# ---- rules ---------------------------------------------------------------------------------------------
rule lm_eval:  # one job per model: all of its lm-eval tasks, one model load
    input:
        model=get_model_input(list(catalogue.LM_EVAL_TASKS)),
    output:
        directory(LM_EVAL_DIR),
    log:
        f"{EVAL_LOGS}/lm_eval/{{target}}.log",
    benchmark:
        timing_path("lm_eval", "{target}")
    params:
        script=script_path("eval_lm_eval.py"),
        model_dir=get_model_dir,
        tasks=get_lm_eval_tasks,
        flags=get_lm_eval_flags,
    threads: get_eval_threads
    resources:
        **EVAL_MODEL_RESOURCES,
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --model {params.model_dir:q} --tasks {params.tasks:q} "
        "{params.flags:q} --output-dir {output:q} > {log} 2>&1"


rule model_outputs:  # one job per model: everything the model itself writes (MODEL_OUTPUTS)
    input:
        unpack(get_model_output_inputs),
    output:
        directory(MODEL_OUTPUTS_DIR),
    log:
        f"{EVAL_LOGS}/model_outputs/{{target}}.log",
    benchmark:
        timing_path("model_outputs", "{target}")
    params:
        script=script_path("eval_model_outputs.py"),
        model_dir=get_model_dir,
        flags=get_generation_flags,
        jobs=get_model_jobs_spec,
        stats=MODEL_OUTPUTS_STATS,
    threads: get_eval_threads
    resources:
        **EVAL_MODEL_RESOURCES,
    conda:
        "../envs/eval.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python {params.script} --model {params.model_dir:q} "
        "--model-id {wildcards.target} {params.flags:q} --jobs {params.jobs:q} "
        "--stats-output {params.stats:q} > {log} 2>&1"


rule eval_result:  # a result of a per-model job at its own path, eval_path(target, benchmark)
    input:
        get_copied_result,
    output:
        eval_path("{target}", "{benchmark}"),
    log:
        f"{EVAL_LOGS}/eval_result/{{target}}/{{benchmark}}.log",
    params:
        source=get_copied_result_file,
    wildcard_constraints:
        benchmark="|".join(COPIED_RESULTS),
    conda:
        "../envs/analysis.yaml"
    shell:
        "cp {params.source:q} {output:q} > {log} 2>&1"


rule humaneval:  # the model job's completions, run in the sandbox (no model, no GPU)
    input:
        MODEL_OUTPUTS_DIR,
    output:
        result=eval_path("{target}", "humaneval"),
        samples=HUMANEVAL_SAMPLES,
    log:
        f"{EVAL_LOGS}/humaneval/{{target}}.log",
    benchmark:
        timing_path("humaneval", "{target}")
    params:
        script=script_path("eval_humaneval.py"),
        completions=MODEL_OUTPUTS["humaneval"]["humaneval"],
        stats=MODEL_OUTPUTS_STATS,
        flags=get_humaneval_score_flags,
    threads: EVAL["humaneval"]["workers"]
    resources:
        mem_mb=lambda w: 1024 * EVAL["humaneval"]["workers"] + 2048,  # each sandboxed program: RLIMIT_AS 1 GiB
        runtime=240,  # minutes; the paper's 2 x 164 x 20 programs all at the 10 s timeout on 8 workers: 137
    conda:
        "../envs/eval.yaml"
    shell:
        "python {params.script} --completions {params.completions:q} --stats {params.stats:q} --workers {threads} "
        "{params.flags:q} "
        "--output {output.result:q} --samples-output {output.samples:q} > {log} 2>&1"


rule judge_mt_bench:
    input:
        model_outputs=MODEL_OUTPUTS_DIR,
        questions=MT_BENCH_QUESTIONS,
        reference=repo_path("resources/eval/mt_bench/reference_answer/gpt-4.jsonl"),
        judge_prompts=repo_path("resources/eval/mt_bench/judge_prompts.jsonl"),
        judge=get_judge_inputs,
    output:
        result=eval_path("{target}", "mt_bench"),
        judgments=MT_BENCH_JUDGMENTS,
    log:
        f"{EVAL_LOGS}/judge/{{target}}/mt_bench.log",
    benchmark:
        timing_path("judge_mt_bench", "{target}")
    params:
        script=script_path("eval_mt_bench_judge.py"),
        answers=MODEL_OUTPUTS["mt_bench"]["mt_bench"],
        flags=lambda w: judge_flags("mt_bench") + limit_flag("mt_bench"),
        cache=f"{RESULTS}/judge_cache/mt_bench.jsonl",
    conda:
        "../envs/eval.yaml"
    shell:
        "python {params.script} --answers {params.answers:q} --questions {input.questions:q} "
        "--reference {input.reference:q} --judge-prompts {input.judge_prompts:q} {params.flags:q} "
        "--cache {params.cache:q} --output {output.result:q} --judgments-output {output.judgments:q} > {log} 2>&1"


rule judge_alpaca_eval:
    input:
        model_outputs=MODEL_OUTPUTS_DIR,
        reference=lambda w: alpaca_eval_reference(w.version),
        judge=get_judge_inputs,
    output:
        result=eval_path("{target}", "alpaca_eval_{version}"),
        annotations=ALPACA_EVAL_ANNOTATIONS,
    log:
        f"{EVAL_LOGS}/judge/{{target}}/alpaca_eval_{{version}}.log",
    benchmark:
        timing_path("judge_alpaca_eval", "{target}_{version}")
    params:
        script=script_path("eval_alpaca_eval.py"),
        outputs=MODEL_OUTPUTS["alpaca_eval"]["alpaca_eval"],
        flags=lambda w: judge_flags(f"alpaca_eval_{w.version}") + limit_flag("alpaca_eval"),
        cache=lambda w: f"{RESULTS}/judge_cache/{w.target}/alpaca_eval_{w.version}.jsonl",
    conda:
        "../envs/eval.yaml"
    shell:
        "python {params.script} --version {wildcards.version} --outputs {params.outputs:q} "
        "--reference {input.reference:q} {params.flags:q} --cache {params.cache:q} "
        "--output {output.result:q} --annotations-output {output.annotations:q} > {log} 2>&1"


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
        table_path("eval_long", "csv"),
    log:
        f"{EVAL_LOGS}/eval_long.log",
    params:
        script=script_path("eval_summary.py"),
        seeds=json.dumps({tid: t.run and run_settings(t.run)["seed"] for tid, t in TARGETS.items()}),
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {params.script} long --seeds {params.seeds:q} --output {output:q} {input:q} > {log} 2>&1"


rule runs_table:
    input:
        [stats_path(dataset) for dataset in sorted({t.run.dataset for t in TARGETS.values() if t.run})],
    output:
        table_path("runs", "csv"),
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
