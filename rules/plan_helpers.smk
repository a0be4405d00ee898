# Input functions of the cost plan (rules/plan.smk).


def get_plan_jobs():
    """One TrainJob (imrepro.train.cost_plan) per training run of the active run groups."""
    training = CFG["training"]
    jobs = []
    for run in wc.runs(CFG):
        entry = CFG["datasets"][run.dataset]
        parent = CFG["datasets"].get(entry.get("from", ""), {})
        args = entry.get("args") or {}
        jobs.append({
            "run_id": run.run_id, "model": run.model, "dataset": run.dataset, "epochs": run.epochs,
            "effective_batch_size": training["effective_batch_size"], "max_length": MAX_LENGTH,
            "gpus": int(train_resources(run.model)["gpu"]),
            "record": record_path(model_tokenizer(run.model), run.dataset),
            "stats": stats_path(run.dataset), "paper_name": entry.get("paper_name"),
            "parent_paper_name": parent.get("paper_name"), "subset_size": args.get("size", args.get("count")),
        })
    return jobs


def get_plan_eval_jobs():
    """{benchmark: number of (model, benchmark) evaluation jobs}."""
    counts = {}
    for target in TARGETS.values():
        for benchmark in target.benchmarks:
            counts[benchmark] = counts.get(benchmark, 0) + 1
    return counts
