# The evaluation stage's paths, input functions and parameters (functions only: rules/eval.smk includes it;
# what the report stage reads too, TARGETS, EVAL and eval_path, is in common.smk).
import re

from imrepro.eval.lm_eval_tasks import LOCAL_TASKS


# ---- paths: every output of the stage, defined once ---------------------------------------------
EVAL_DIR = f"{RESULTS}/eval/{{target}}"
GENERATIONS = f"{EVAL_DIR}/generations"
EVAL_LOGS = f"{LOGS}/eval"
EVAL_BENCHMARKS = f"{RESULTS}/benchmarks"  # <rule>/<job>.tsv, as training


# ---- input functions and parameters ---------------------------------------------------------------
def get_target(wildcards):
    if wildcards.target not in TARGETS:
        raise ValueError(f"unknown evaluation target '{wildcards.target}': not a run of the active run groups "
                         f"(use_run_groups) nor base__<model> of one (known: {', '.join(sorted(TARGETS))})")
    return TARGETS[wildcards.target]


def require_benchmark(wildcards, benchmark):
    """The target, after checking that the config asks for this benchmark on it."""
    target = get_target(wildcards)
    if benchmark not in target.benchmarks:
        raise ValueError(f"benchmark '{benchmark}' is not configured for '{target.target_id}' "
                         f"(its benchmarks: {', '.join(target.benchmarks)}); add it to evaluation.benchmarks "
                         f"or to the run group's benchmarks")
    return target


def target_model_dir(target):
    return train_dir(target.run) if target.run else base_model_dir(target.model)


def get_model_input(*benchmarks):
    """Input function: the evaluated model (the training output directory, or the base config.json), after
    checking that the target has one of ``benchmarks``."""
    def inputs(wildcards):
        target = get_target(wildcards)
        configured = [name for name in benchmarks if name in target.benchmarks]
        require_benchmark(wildcards, configured[0] if configured else benchmarks[0])
        return train_dir(target.run) if target.run else base_model_config(target.model)
    return inputs


def get_model_dir(wildcards):
    return target_model_dir(get_target(wildcards))


def eval_resources(key):
    return EVAL["resources"][key]


def get_eval_threads(wildcards):
    return eval_resources("cpus_per_task")


# One block for every job that runs the evaluated model (with threads: get_eval_threads).
EVAL_MODEL_RESOURCES = dict(
    gpu=lambda w: min(1, eval_resources("gpu")),
    mem_mb=lambda w: eval_resources("mem_mb"),
    runtime=lambda w: eval_resources("runtime"),
)


def limit_flag(section):
    limit = EVAL[section]["limit"]
    return ["--limit", str(limit)] if limit else []


def lm_eval_unavailable(task):
    """Offline (lm_eval.source local) a task without a shipped slice has no job: the summary lists it."""
    return EVAL["lm_eval"]["source"] == "local" and LOCAL_TASKS[task] is None


def lm_eval_tasks_of(target):
    """The lm-eval task keys a target is scored on (config order), those without data left out."""
    return [name for name in target.benchmarks if name in cat.LM_EVAL_TASKS and not lm_eval_unavailable(name)]


def lm_eval_groups():
    """One (name, task keys, target regex) per distinct task list of the targets, for the lm_eval rules
    (usually one, "lm_eval"; a run group that narrows its NLP tasks adds "lm_eval_2", ...), so that one job
    per model writes every per-task file of that model as its declared outputs."""
    groups = {}
    for target in TARGETS.values():
        tasks = tuple(lm_eval_tasks_of(target))
        if tasks:
            groups.setdefault(tasks, []).append(target.target_id)
    # one rule needs no constraint, so a request for an unconfigured (model, task) gets require_benchmark's message
    any_target = r"[A-Za-z0-9_.-]+"
    return [("lm_eval" if k == 0 else f"lm_eval_{k + 1}", tasks,
             "|".join(map(re.escape, ids)) if len(groups) > 1 else any_target)
            for k, (tasks, ids) in enumerate(groups.items())]


def get_lm_eval_flags(wildcards):
    spec = EVAL["lm_eval"]
    flags = ["--source", spec["source"], "--batch-size", str(spec["batch_size"])]
    if spec["gen_kwargs"]:
        flags += ["--gen-kwargs", spec["gen_kwargs"]]
    for task in lm_eval_tasks_of(get_target(wildcards)):
        shots = spec["num_fewshot"].get(task)
        if shots is not None:
            flags += ["--num-fewshot", f"{task}={shots}"]
    return flags + limit_flag("lm_eval")


def get_tokenizer_flags(wildcards):
    """Generation tokenises prompts exactly as training did: with the SentencePiece model itself
    where the model's tokenizer is one (the tokenizer saved with the model differs in BOS/spaces)."""
    tokenizer = CFG["tokenizers"][model_tokenizer(get_target(wildcards).model)]
    return ["--tokenizer-model", repo_path(tokenizer["path"])] if tokenizer["backend"] == "sentencepiece" else []


def get_generation_flags(section):
    """Input function: backend, batch size, max new tokens, limit and tokenizer of one generating benchmark."""
    def flags(wildcards):
        generation = EVAL["generation"]
        out = ["--backend", generation["backend"], "--batch-size", str(generation["batch_size"])]
        max_new = EVAL[section].get("max_new_tokens")  # humaneval: the script's default unless set
        out += ["--max-new-tokens", str(max_new)] if max_new else []
        return out + limit_flag(section) + get_tokenizer_flags(wildcards)
    return flags


def get_humaneval_flags(wildcards):
    spec = EVAL["humaneval"]
    flags = get_generation_flags("humaneval")(wildcards)
    for key, flag in (("n_samples", "--n-samples"), ("top_p", "--top-p"), ("timeout_seconds", "--timeout")):
        if key in spec:
            flags += [flag, str(spec[key])]
    if "temperatures" in spec:
        flags += ["--temperatures", *map(str, spec["temperatures"])]
    return flags


def get_judge_inputs(wildcards):
    serve = JUDGE["serve"]
    return [base_model_config(serve["model"])] if serve else []


def judge_flags(benchmark):
    """Endpoint flags of one judged benchmark: a served local judge (shared by the judge jobs of a run), or
    base URL + key variable name."""
    serve = JUDGE["serve"]
    model = JUDGE["models"][benchmark]
    label = JUDGE["label"]
    if serve:
        backend = (serve.get("backends") or {}).get(benchmark, "hf")  # no schema default under a nullable object
        label += f" ({serve['model']}, {backend} backend)"
        flags = ["--judge-model", model, "--label", label,
                 "--serve-model", base_model_dir(serve["model"]), "--serve-backend", backend,
                 "--serve-shared", f"{CFG['training']['scratch_dir']}/judge_servers"]
        if serve.get("max_new_tokens"):
            flags += ["--serve-max-new-tokens", str(serve["max_new_tokens"])]
    else:
        flags = ["--judge-model", model, "--label", label,
                 "--base-url", JUDGE["base_url"], "--api-key-env", JUDGE["api_key_env"]]
    return flags


def alpaca_eval_reference(version):
    return repo_path(f"resources/eval/alpaca_eval/{cat.ALPACA_EVAL_REFERENCE[f'alpaca_eval_{version}']}_outputs.json")


def get_output_loss_inputs(wildcards):
    target = require_benchmark(wildcards, "output_loss")
    tokenizer = model_tokenizer(target.model)
    inputs = {"model": get_model_input("output_loss")(wildcards)}
    if target.run:
        inputs["train"] = record_path(tokenizer, target.run.dataset)
    if CFG.get("heldout_dataset"):  # optional: no held-out loss without it
        inputs["heldout"] = record_path(tokenizer, CFG["heldout_dataset"])
    return inputs


def get_summary_inputs(wildcards):
    target = get_target(wildcards)
    return [eval_path(target.target_id, name) for name in target.benchmarks
            if not (name in cat.LM_EVAL_TASKS and lm_eval_unavailable(name))]


def get_not_shipped(wildcards):
    names = [name for name in get_target(wildcards).benchmarks
             if name in cat.LM_EVAL_TASKS and lm_eval_unavailable(name)]
    return ["--not-shipped", *names] if names else []


def runs_table_rows():
    """What results/tables/runs.csv says of each target, besides its training set's statistics."""
    rows = []
    for target in TARGETS.values():
        run, model = target.run, CFG["models"][target.model]
        row = {"run": target.target_id, "model": target.model, "model_paper_name": model.get("paper_name", target.model),
               "is_base": run is None, "judge_label": JUDGE["label"]}
        if run:
            dataset, method = CFG["datasets"][run.dataset], CFG["methods"][run.method]
            row.update(dataset=run.dataset, dataset_paper_name=dataset.get("paper_name", run.dataset),
                       compare_as=dataset.get("compare_as", dataset.get("paper_name", "")), method=run.method,
                       method_paper_name=method.get("paper_name", run.method), epochs=run.epochs)
        else:
            row.update(dataset="", dataset_paper_name="none (base)", compare_as="none (base)", method="",
                       method_paper_name="none", epochs="")
        rows.append(row)
    return rows
