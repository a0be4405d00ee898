# Input functions of the cost plan (rules/plan.smk).


def get_plan_jobs():
    """One TrainJob (imrepro.train.cost_plan) per training run of the active run groups."""
    training = CHECKED_CONFIG["training"]
    jobs = []
    for run in workflow_config.runs(CHECKED_CONFIG):
        entry = CHECKED_CONFIG["datasets"][run.dataset]
        parent = CHECKED_CONFIG["datasets"].get(entry.get("from", ""), {})
        args = entry["args"]  # the schema default: {}
        jobs.append({
            "run_id": run.run_id, "model": run.model, "dataset": run.dataset, "epochs": run.epochs,
            "effective_batch_size": training["effective_batch_size"], "max_length": MAX_LENGTH,
            "gpus": int(train_resources(run.model)["gpu"]),
            "record": record_path(model_tokenizer(run.model), run.train_dataset),
            "stats": stats_path(run.train_dataset), "paper_name": entry.get("paper_name"),
            "parent_paper_name": parent.get("paper_name"), "subset_size": args.get("size", args.get("count")),
            "lora": CHECKED_CONFIG["methods"][run.method].get("lora"),
            "gradient_checkpointing": training["gradient_checkpointing"],
        })
    return jobs


def get_plan_eval_jobs():
    """{evaluation rule: jobs it plans}: the two model-loading jobs per model, then the jobs that only read
    their outputs (sandbox, judges)."""
    targets = list(TARGETS.values())
    counts = {
        "lm_eval (GPU: all lm-eval tasks of a model)": sum(bool(lm_eval_tasks_of(t)) for t in targets),
        "model_outputs (GPU: losses, BLEU, answers, completions of a model)": sum(bool(model_jobs_of(t))
                                                                                 for t in targets),
        "humaneval (CPU sandbox)": sum("humaneval" in t.benchmarks for t in targets),
        "judge_mt_bench": sum("mt_bench" in t.benchmarks for t in targets),
        "judge_alpaca_eval": sum(f"alpaca_eval_{v}" in t.benchmarks for t in targets for v in (1, 2)),
    }
    return {rule: n for rule, n in counts.items() if n}
