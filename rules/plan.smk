# Cost plan: what the active run groups would cost, before launch (`snakemake plan`, `make plan`).
# Reads role records where they are built (never builds them: they are params, not inputs), so it
# runs in seconds on a fresh checkout; the table goes to stdout and to results/plan/plan.{json,md}.


include: "plan_helpers.smk"


localrules:
    plan,


rule plan:
    output:
        json=f"{RESULTS}/plan/plan.json",
        md=f"{RESULTS}/plan/plan.md",
    log:
        f"{LOGS}/plan/plan.log",
    params:
        script=script_path("plan.py"),
        jobs=json.dumps(get_plan_jobs()),
        throughput=json.dumps(CHECKED_CONFIG["plan"]["throughput"]),
        gpu=CHECKED_CONFIG["plan"]["gpu"],
        tokens_per_word=CHECKED_CONFIG["plan"]["tokens_per_word"],
        paper=PAPER_CSV,
        eval_jobs=json.dumps(get_plan_eval_jobs()),
        # a record built since the last plan changes the numbers: rerun then
        built=sorted(job["record"] for job in get_plan_jobs() if Path(job["record"]).is_file()),
    conda:
        "../envs/data.yaml"
    shell:
        "python {params.script} --jobs {params.jobs:q} --throughput {params.throughput:q} --gpu {params.gpu} "
        "--tokens-per-word {params.tokens_per_word} --paper {params.paper:q} --eval-jobs {params.eval_jobs:q} "
        "--output {output.json:q} 2> {log} | tee -a {log}"
