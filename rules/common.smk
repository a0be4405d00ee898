# Helpers that two or more stages share: the checked config, repository paths, and the path of every
# output that one stage writes and another reads (the rule's pattern and the concrete paths come from
# the same function, called with "{wildcard}" for the pattern). A single stage's helpers live beside its
# rules, in rules/<stage>_helpers.smk (the evaluation helpers below are still to move). Only functions
# and constants here.
import hashlib
import json
from pathlib import Path

from imrepro import catalogue as cat
from imrepro.core import workflow_config as wc
from imrepro.eval.lm_eval_tasks import LOCAL_TASKS

CFG = wc.prepare(config)
REPO = Path(workflow.basedir)
RESULTS = CFG["results_dir"]
LOGS = CFG["logs_dir"]
MAX_LENGTH = CFG["training"]["max_length"]


def script_path(name):
    """Absolute path of a workflow script (so `--directory` elsewhere works)."""
    return str(REPO / "workflow_scripts" / name)


def repo_path(path):
    """A path relative to the repository if it exists there, else as given (e.g. a hub id)."""
    candidate = REPO / path
    return str(candidate) if candidate.exists() else path


def canonical_path(dataset):
    return f"{RESULTS}/data/canonical/{dataset}.jsonl"


def stats_path(dataset):
    return f"{RESULTS}/data/stats/{dataset}.json"


def record_path(tokenizer, dataset, max_length=MAX_LENGTH):
    return f"{RESULTS}/data/records/{tokenizer}_ml{max_length}/{dataset}.parquet"


def table_path(stem, ext):
    return f"{RESULTS}/tables/{stem}.{ext}"


def model_tokenizer(model):
    return CFG["models"][model]["tokenizer"]


def prepared_model_dir(model):
    """Where the prepare_model rule puts a hub download or a seeded model."""
    return f"{RESULTS}/models/{model}"


def base_model_dir(model):
    spec = CFG["models"][model]
    return repo_path(spec["path"]) if "path" in spec else prepared_model_dir(model)


def base_model_config(model):
    return f"{base_model_dir(model)}/config.json"


def train_dir(run):
    """The fine-tuned model of ``run`` (a wc.Run, or a run id such as "{run}")."""
    return f"{RESULTS}/train/{getattr(run, 'run_id', run)}"


# The schema's evaluation.resources defaults hold these values too; the evaluation helpers below merge them
# until they read CFG["evaluation"]["resources"] directly.
DEFAULT_RESOURCES = {"gpu": 0, "cpus_per_task": 1, "mem_mb": 8000, "runtime": 60}


# ---- evaluation -------------------------------------------------------------------------------

EVAL = CFG.get("evaluation") or {}
TARGETS = wc.eval_targets(CFG)
JUDGE = EVAL.get("judge") or {}


def target_of(wildcards):
    if wildcards.target not in TARGETS:
        raise ValueError(f"unknown evaluation target '{wildcards.target}': not a run of the active run groups "
                         f"(use_run_groups) nor base__<model> of one (known: {', '.join(sorted(TARGETS))})")
    return TARGETS[wildcards.target]


def eval_path(target_id, benchmark):
    return f"{RESULTS}/eval/{target_id}/{benchmark}.json"


def require_benchmark(wildcards, benchmark):
    """The target, after checking that the config asks for this benchmark on it."""
    target = target_of(wildcards)
    if benchmark not in target.benchmarks:
        raise ValueError(f"benchmark '{benchmark}' is not configured for '{target.target_id}' "
                         f"(its benchmarks: {', '.join(target.benchmarks)}); add it to evaluation.benchmarks "
                         f"or to the run group's benchmarks")
    return target


def target_model_dir(target):
    return train_dir(target.run) if target.run else base_model_dir(target.model)


def target_model_input(benchmark):
    """Input function: the evaluated model (the training output directory, or the base config.json)."""
    def inputs(wildcards):
        target = require_benchmark(wildcards, benchmark)
        return train_dir(target.run) if target.run else base_model_config(target.model)
    return inputs


def target_model_param(wildcards):
    return target_model_dir(target_of(wildcards))


def eval_resources(key):
    return {**DEFAULT_RESOURCES, **EVAL.get("resources", {})}[key]


def limit_flag(section):
    limit = (EVAL.get(section) or {}).get("limit")
    return ["--limit", str(limit)] if limit else []


def get_lm_eval_flags(wildcards):
    spec = EVAL.get("lm_eval") or {}
    flags = ["--source", spec.get("source", "harness"), "--batch-size", str(spec.get("batch_size", "auto"))]
    if spec.get("gen_kwargs"):
        flags += ["--gen-kwargs", spec["gen_kwargs"]]
    shots = (spec.get("num_fewshot") or {}).get(wildcards.task)
    if shots is not None:
        flags += ["--num-fewshot", str(shots)]
    return flags + limit_flag("lm_eval")


def tokenizer_flags(wildcards):
    """Generation tokenises prompts exactly as training did: with the SentencePiece model itself
    where the model's tokenizer is one (the tokenizer saved with the model differs in BOS/spaces)."""
    tokenizer = CFG["tokenizers"][model_tokenizer(target_of(wildcards).model)]
    return ["--tokenizer-model", repo_path(tokenizer["path"])] if tokenizer["backend"] == "sentencepiece" else []


def generation_flags(section):
    """Input function: backend, batch size, max new tokens, limit and tokenizer of one generating benchmark."""
    return lambda wildcards: _generation_flags(section) + tokenizer_flags(wildcards)


def _generation_flags(section):
    generation = EVAL.get("generation") or {}
    flags = ["--backend", generation.get("backend", "auto"), "--batch-size", str(generation.get("batch_size", 32))]
    max_new = (EVAL.get(section) or {}).get("max_new_tokens")
    return flags + (["--max-new-tokens", str(max_new)] if max_new else []) + limit_flag(section)


def get_humaneval_flags(wildcards):
    spec = EVAL.get("humaneval") or {}
    flags = generation_flags("humaneval")(wildcards)
    for key, flag in (("n_samples", "--n-samples"), ("top_p", "--top-p"), ("timeout_seconds", "--timeout")):
        if key in spec:
            flags += [flag, str(spec[key])]
    if "temperatures" in spec:
        flags += ["--temperatures", *map(str, spec["temperatures"])]
    return flags


def judge_inputs(wildcards):
    serve = JUDGE.get("serve")
    return [base_model_config(serve["model"])] if serve else []


def judge_flags(benchmark):
    """Endpoint flags of one judged benchmark: a served local judge, or base URL + key variable name."""
    serve = JUDGE.get("serve")
    model = (JUDGE.get("models") or {}).get(benchmark, "gpt-4")
    label = JUDGE.get("label", model)
    if serve:
        backend = (serve.get("backends") or {}).get(benchmark, "hf")
        label += f" ({serve['model']}, {backend} backend)"
        flags = ["--judge-model", model, "--label", label,
                 "--serve-model", base_model_dir(serve["model"]), "--serve-backend", backend]
        if serve.get("max_new_tokens"):
            flags += ["--serve-max-new-tokens", str(serve["max_new_tokens"])]
    else:
        flags = ["--judge-model", model, "--label", label,
                 "--base-url", JUDGE.get("base_url", "https://api.openai.com/v1"),
                 "--api-key-env", JUDGE.get("api_key_env", "OPENAI_API_KEY")]
    return flags


def get_output_loss_inputs(wildcards):
    target = require_benchmark(wildcards, "output_loss")
    tokenizer = model_tokenizer(target.model)
    inputs = {"model": target_model_input("output_loss")(wildcards)}
    if target.run:
        inputs["train"] = record_path(tokenizer, target.run.dataset)
    if CFG.get("heldout_dataset"):
        inputs["heldout"] = record_path(tokenizer, CFG["heldout_dataset"])
    return inputs


def lm_eval_unavailable(task):
    """Offline (lm_eval.source local) a task without a shipped slice has no job: the summary lists it."""
    return (EVAL.get("lm_eval") or {}).get("source", "harness") == "local" and LOCAL_TASKS[task] is None


def get_summary_inputs(wildcards):
    target = target_of(wildcards)
    return [eval_path(target.target_id, name) for name in target.benchmarks
            if not (name in cat.LM_EVAL_TASKS and lm_eval_unavailable(name))]


def get_not_shipped(wildcards):
    names = [name for name in target_of(wildcards).benchmarks if name in cat.LM_EVAL_TASKS and lm_eval_unavailable(name)]
    return ["--not-shipped", *names] if names else []


def all_summaries():
    return [f"{RESULTS}/eval/{tid}/summary.json" for tid in TARGETS]


def runs_table_rows():
    """What results/tables/runs.csv says of each target, besides its training set's statistics."""
    rows = []
    for target in TARGETS.values():
        run, model = target.run, CFG["models"][target.model]
        row = {"run": target.target_id, "model": target.model, "model_paper_name": model.get("paper_name", target.model),
               "is_base": run is None, "judge_label": JUDGE.get("label", "")}
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


def alpaca_eval_reference(version):
    return repo_path(f"resources/eval/alpaca_eval/{cat.ALPACA_EVAL_REFERENCE[f'alpaca_eval_{version}']}_outputs.json")
