# The evaluation stage's paths, input functions and parameters (functions only: rules/eval.smk includes it;
# what the report stage reads too, TARGETS, EVAL and eval_path, is in common.smk).
from imrepro.eval.lm_eval_tasks import LOCAL_TASKS, result_path


# ---- paths: every output of the stage, defined once ---------------------------------------------
EVAL_DIR = f"{RESULTS}/eval/{{target}}"
GENERATIONS = f"{EVAL_DIR}/generations"  # what the judges and the sandbox write beside their results
LM_EVAL_DIR = f"{EVAL_DIR}/lm_eval"  # the lm-eval job's folder: <task>.json
MODEL_OUTPUTS_DIR = f"{EVAL_DIR}/model_outputs"  # the model job's folder (MODEL_OUTPUTS below)
ALPACA_EVAL_QUESTIONS = repo_path("resources/eval/alpaca_eval/text_davinci_003_outputs.json")
MT_BENCH_QUESTIONS = repo_path("resources/eval/mt_bench/question.jsonl")
EVAL_LOGS = f"{LOGS}/eval"
# the stock tools' per-item files (read again by the comparison stage's eval_items)
HUMANEVAL_SAMPLES = f"{GENERATIONS}/humaneval_samples.jsonl"
MT_BENCH_JUDGMENTS = f"{GENERATIONS}/mt_bench_judgments.jsonl"
ALPACA_EVAL_ANNOTATIONS = f"{GENERATIONS}/alpaca_eval_{{version}}_annotations.json"


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


def get_model_input(benchmarks):
    """The evaluated model (the training output directory, or the base config.json), after checking that the
    target has one of ``benchmarks`` (the names its job serves)."""
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
    return [name for name in target.benchmarks if name in catalogue.LM_EVAL_TASKS and not lm_eval_unavailable(name)]


def get_lm_eval_tasks(wildcards):
    return lm_eval_tasks_of(get_target(wildcards))


# ---- the model job: what the evaluated model writes itself, one job (one model load) per model ------------
# The job writes into one folder per target (MODEL_OUTPUTS_DIR, a directory() output: which files depend on the
# target's benchmarks); per job kind (imrepro.eval.model_outputs.JOB_TYPES, in its run order): output name -> path.
MODEL_OUTPUTS = {
    "output_loss": {"output_loss": f"{MODEL_OUTPUTS_DIR}/output_loss.json"},
    "regen_bleu": {"regen_bleu": f"{MODEL_OUTPUTS_DIR}/regen_bleu.json",
                   "regen_bleu_generations": f"{MODEL_OUTPUTS_DIR}/regen_bleu.jsonl"},
    "alpaca_eval": {"alpaca_eval": f"{MODEL_OUTPUTS_DIR}/alpaca_eval_outputs.json"},  # judged by AlpacaEval 1.0 and 2.0
    "mt_bench": {"mt_bench": f"{MODEL_OUTPUTS_DIR}/mt_bench_answers.jsonl"},
    "humaneval": {"humaneval": f"{MODEL_OUTPUTS_DIR}/humaneval_completions.jsonl"},  # run in the sandbox by humaneval
}
MODEL_OUTPUTS_STATS = f"{MODEL_OUTPUTS_DIR}/model_outputs.json"
MODEL_JOB_OF = {"alpaca_eval_1": "alpaca_eval", "alpaca_eval_2": "alpaca_eval"}  # benchmark -> job kind, if not itself
MODEL_JOB_BENCHMARKS = [name for name in catalogue.ALL_BENCHMARKS if MODEL_JOB_OF.get(name, name) in MODEL_OUTPUTS]
# the results the per-model jobs write into their folders, which rule eval_result copies to eval_path
COPIED_RESULTS = {**{task: LM_EVAL_DIR for task in catalogue.LM_EVAL_TASKS}, "output_loss": MODEL_OUTPUTS_DIR,
                  "regen_bleu": MODEL_OUTPUTS_DIR}


def model_output(job, name, target_id):
    """The path of one file the model job of ``target_id`` writes (MODEL_OUTPUTS[job][name])."""
    return MODEL_OUTPUTS[job][name].format(target=target_id)


def model_jobs_of(target):
    wanted = {MODEL_JOB_OF.get(name, name) for name in target.benchmarks}
    return [job for job in MODEL_OUTPUTS if job in wanted]


def get_model_output_inputs(wildcards):
    """Input function: the model and what each of its jobs reads."""
    target = get_target(wildcards)
    jobs = model_jobs_of(target)
    found = {"model": get_model_input(MODEL_JOB_BENCHMARKS)(wildcards)}
    if "output_loss" in jobs:
        found.update(output_loss_records(target))
    if "regen_bleu" in jobs:
        if target.run is None:
            raise ValueError(f"regen_bleu needs a training set: '{target.target_id}' is a base model")
        found["regen_dataset"] = canonical_path(target.run.train_dataset)
    if "alpaca_eval" in jobs:
        found["alpaca_eval_questions"] = ALPACA_EVAL_QUESTIONS
    if "mt_bench" in jobs:
        found["mt_bench_questions"] = MT_BENCH_QUESTIONS
    tokenizer = CHECKED_CONFIG["tokenizers"][model_tokenizer(target.model)]
    if "chat_template" in tokenizer and tokenizer["chat_template"] != "model":  # a file: prompts follow it
        found["chat_template"] = chat_template_setting(tokenizer["chat_template"])
    return found


def get_model_jobs_spec(wildcards, input):
    """Params function: the --jobs JSON of eval_model_outputs.py, settings from config, paths from MODEL_OUTPUTS."""
    jobs = model_jobs_of(get_target(wildcards))

    def path(job, name=None):
        return model_output(job, name or job, wildcards.target)

    def generation(section):
        return {"max_new_tokens": EVAL[section]["max_new_tokens"], "limit": EVAL[section]["limit"]}

    out = {}
    if "output_loss" in jobs:
        out["output_loss"] = {"output": path("output_loss"), "run": wildcards.target,
                              "token_budget": EVAL["output_loss"]["token_budget"],
                              "limit": EVAL["output_loss"]["limit"],
                              **{split: input[split] for split in ("train", "heldout", "reference")
                                 if split in input.keys()}}
    if "regen_bleu" in jobs:
        out["regen_bleu"] = {"dataset": input.regen_dataset, "output": path("regen_bleu"),
                             "generations_output": path("regen_bleu", "regen_bleu_generations"),
                             **generation("regen_bleu")}
    for job in ("alpaca_eval", "mt_bench"):
        if job in jobs:
            out[job] = {"questions": input[f"{job}_questions"], "output": path(job), **generation(job)}
    if "humaneval" in jobs:
        settings = EVAL["humaneval"]
        out["humaneval"] = {"output": path("humaneval"),
                            **{k: settings[k] for k in ("n_samples", "temperatures", "top_p", "max_new_tokens", "limit")}}
    return json.dumps(out)


def get_copied_result(wildcards):
    """Input function (eval_result): the folder of the per-model job that wrote this result."""
    target = require_benchmark(wildcards, wildcards.benchmark)
    if wildcards.benchmark in catalogue.LM_EVAL_TASKS and lm_eval_unavailable(wildcards.benchmark):
        raise ValueError(f"'{wildcards.benchmark}' has no shipped data (evaluation.lm_eval.source: local): "
                         f"{target.target_id}'s summary lists it as not shipped")
    return COPIED_RESULTS[wildcards.benchmark].format(target=wildcards.target)


def get_copied_result_file(wildcards):
    """Params function (eval_result): the result file in that folder."""
    if wildcards.benchmark in catalogue.LM_EVAL_TASKS:
        return str(result_path(LM_EVAL_DIR.format(target=wildcards.target), wildcards.benchmark))
    return model_output(wildcards.benchmark, wildcards.benchmark, wildcards.target)


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
    where the model's tokenizer is one (the tokenizer saved with the model differs in BOS/spaces),
    and in the tokenizer's chat template where it has one."""
    tokenizer = CHECKED_CONFIG["tokenizers"][model_tokenizer(get_target(wildcards).model)]
    flags = ["--tokenizer-model", repo_path(tokenizer["path"])] if tokenizer["backend"] == "sentencepiece" else []
    return flags + chat_template_flags(tokenizer)


def get_generation_flags(wildcards):
    """Backend, batch size and prompt tokenizer of a model job."""
    generation = EVAL["generation"]
    return ["--backend", generation["backend"], "--batch-size", str(generation["batch_size"]),
            *get_tokenizer_flags(wildcards)]


def get_humaneval_score_flags(wildcards):
    spec = EVAL["humaneval"]
    return ["--timeout", str(spec["timeout_seconds"])] if "timeout_seconds" in spec else []


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
        backend = serve["backends"][benchmark]
        label += f" ({serve['model']}, {backend} backend)"
        flags = ["--judge-model", model, "--label", label,
                 "--serve-model", base_model_dir(serve["model"]), "--serve-backend", backend,
                 "--serve-shared", f"{CHECKED_CONFIG['training']['scratch_dir']}/judge_servers"]
        if serve.get("max_new_tokens"):
            flags += ["--serve-max-new-tokens", str(serve["max_new_tokens"])]
    else:
        flags = ["--judge-model", model, "--label", label,
                 "--base-url", JUDGE["base_url"], "--api-key-env", JUDGE["api_key_env"]]
    return flags


def alpaca_eval_reference(version):
    reference = catalogue.ALPACA_EVAL_REFERENCE[f"alpaca_eval_{version}"]
    return repo_path(f"resources/eval/alpaca_eval/{reference}_outputs.json")


def output_loss_records(target):
    """The role records an output-loss job scores: the training set (runs) and the held-out set (if configured)."""
    tokenizer = model_tokenizer(target.model)
    records = {}
    if target.run:
        records["train"] = record_path(tokenizer, target.run.train_dataset)
    if CHECKED_CONFIG.get("heldout_dataset"):  # optional: no held-out loss without it
        records["heldout"] = record_path(tokenizer, CHECKED_CONFIG["heldout_dataset"])
    if CHECKED_CONFIG.get("reference_dataset"):  # optional: good answers (AlpacaEval's reference), a quality proxy
        records["reference"] = record_path(tokenizer, CHECKED_CONFIG["reference_dataset"])
    return records


def get_summary_inputs(wildcards):
    target = get_target(wildcards)
    return [eval_path(target.target_id, name) for name in target.benchmarks
            if not (name in catalogue.LM_EVAL_TASKS and lm_eval_unavailable(name))]


def get_not_shipped(wildcards):
    names = [name for name in get_target(wildcards).benchmarks
             if name in catalogue.LM_EVAL_TASKS and lm_eval_unavailable(name)]
    return ["--not-shipped", *names] if names else []


def runs_table_rows():
    """What results/tables/runs.csv says of each target, besides its training set's statistics."""
    rows = []
    for target in TARGETS.values():
        run, model = target.run, CHECKED_CONFIG["models"][target.model]
        row = {"run": target.target_id, "model": target.model, "model_paper_name": model.get("paper_name", target.model),
               "is_base": run is None, "judge_label": JUDGE["label"]}
        if run:
            dataset, method = CHECKED_CONFIG["datasets"][run.dataset], CHECKED_CONFIG["methods"][run.method]
            row.update(dataset=run.dataset, dataset_paper_name=dataset.get("paper_name", run.dataset),
                       compare_as=dataset.get("compare_as", dataset.get("paper_name", "")), method=run.method,
                       method_paper_name=method.get("paper_name", run.method), epochs=run.epochs,
                       seed_draws_data=run.data_seed is not None, swept=" ".join(name for name, _ in run.sweep),
                       subset_family=next((f for f, names in CHECKED_CONFIG["_subset_families"].items() if run.dataset in names),
                                          ""),
                       **run_settings(run))
        else:
            row.update(dataset="", dataset_paper_name="none (base)", compare_as="none (base)", method="",
                       method_paper_name="none", epochs="", seed_draws_data=False, swept="", subset_family="",
                       **dict.fromkeys(workflow_config.RUN_SETTING_KEYS))
        rows.append(row)
    return rows
