# Helpers of the comparison stage, included by rules/compare.smk: the per-item files of a target and the
# comparison settings. Functions and rules are in separate files for `snakemake --lint`.
COMPARE = CHECKED_CONFIG["comparisons"]
COMPARE_LOGS = f"{LOGS}/compare"
# the tool's per-item file of each benchmark that has one (lm-eval results carry their items themselves)
RAW_ITEM_FILES = {
    "humaneval": HUMANEVAL_SAMPLES,
    "mt_bench": MT_BENCH_JUDGMENTS,
    "alpaca_eval_1": ALPACA_EVAL_ANNOTATIONS.replace("{version}", "1"),
    "alpaca_eval_2": ALPACA_EVAL_ANNOTATIONS.replace("{version}", "2"),
    "regen_bleu": MODEL_OUTPUTS["regen_bleu"]["regen_bleu_generations"],
}
COMPARED_TARGETS = [tid for tid, target in TARGETS.items() if target.run]  # arms are trained runs


def items_path(target_id):
    return f"{RESULTS}/eval/{target_id}/items.json"


def _raw_item_files(wildcards):
    target = get_target(wildcards)
    return {name: path.format(target=target.target_id) for name, path in RAW_ITEM_FILES.items()
            if name in target.benchmarks}


def get_items_inputs(wildcards):
    """The results and the rules' outputs holding the per-item files: a file of the model job lies in its
    folder (MODEL_OUTPUTS_DIR, a directory() output), which is then the input."""
    model_dir = MODEL_OUTPUTS_DIR.format(target=wildcards.target)
    raw = [model_dir if path.startswith(model_dir + "/") else path for path in _raw_item_files(wildcards).values()]
    return {"results": get_summary_inputs(wildcards), "raw": list(dict.fromkeys(raw))}


def get_raw_item_flags(wildcards):
    return [flag for name, path in _raw_item_files(wildcards).items() for flag in ("--raw", f"{name}={path}")]


def get_compare_flags(wildcards):
    flags = ["--against", COMPARE["against"], "--confidence", str(COMPARE["confidence"]), "--alpha",
             str(COMPARE["alpha"]), "--n-resamples", str(COMPARE["n_resamples"]), "--seed", str(COMPARE["seed"])]
    for baseline, method in COMPARE["pairs"]:
        flags += ["--pair", baseline, method]
    return flags
