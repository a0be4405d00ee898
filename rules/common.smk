# Helpers shared by the stage files: the checked config and the path of every output kind.
# Only functions and constants live here.
import hashlib
import json
import sys
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from urllib.parse import urlparse

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from imrepro.eval import catalogue as cat  # noqa: E402
from imrepro.core import workflow_config as wc  # noqa: E402
from imrepro.eval.lm_eval_tasks import LOCAL_TASKS  # noqa: E402
from imrepro.core.provenance import git_revision  # noqa: E402

CFG = wc.prepare(config)
REPO = Path(workflow.basedir)
RESULTS = CFG["results_dir"]
LOGS = CFG["logs_dir"]
MAX_LENGTH = CFG["training"]["max_length"]


def script_path(name):
    """Absolute path of a workflow script (so `--directory` elsewhere works)."""
    return str(REPO / "workflow_scripts" / name)


def source_filename(source):
    return PurePosixPath(urlparse(CFG["sources"][source]["url"]).path).name


def raw_path(source):
    return f"{RESULTS}/data/raw/{source}/{source_filename(source)}"


def canonical_path(dataset):
    return f"{RESULTS}/data/canonical/{dataset}.jsonl"


def record_path(tokenizer, dataset, max_length=MAX_LENGTH):
    return f"{RESULTS}/data/records/{tokenizer}_ml{max_length}/{dataset}.parquet"


def get_download_params(wildcards):
    spec = CFG["sources"][wildcards.source]
    use_shipped = "shipped" in spec and (CFG.get("prefer_shipped_sources") or CFG.get("offline"))
    flags = []
    for key, flag in (("sha256", "--sha256"), ("git_sha1", "--git-sha1")):
        if key in spec:
            flags += [flag, spec[key]]
    if use_shipped:
        flags += ["--shipped", str(REPO / spec["shipped"])]
    download = CFG.get("download", {})
    flags += ["--retries", str(download.get("retries", 4)),
              "--backoff", str(download.get("backoff_seconds", 2.0)),
              "--timeout", str(download.get("timeout_seconds", 60))]
    return flags


def get_dataset_inputs(wildcards):
    entry = CFG["datasets"][wildcards.dataset]
    if "from" in entry:
        return [canonical_path(entry["from"])]
    return [raw_path(source) for source in entry["sources"]]


def get_converter_args(wildcards):
    return json.dumps(CFG["datasets"][wildcards.dataset].get("args", {}), sort_keys=True)


def get_tokenizer(wildcards):
    return CFG["tokenizers"][wildcards.tokenizer]


def repo_path(path):
    """A path relative to the repository if it exists there, else as given (e.g. a hub id)."""
    candidate = REPO / path
    return str(candidate) if candidate.exists() else path


def tokenizer_path(tokenizer):
    """A tokenizers entry's file/id, or the directory of the model it comes from (``from_model``)."""
    if "from_model" in tokenizer:
        return base_model_dir(tokenizer["from_model"])
    return repo_path(tokenizer["path"])


def get_tokenizer_files(wildcards):
    """Local tokenizer files are inputs, so replacing one rebuilds the records; a ``from_model``
    tokenizer needs that model prepared first."""
    tokenizer = get_tokenizer(wildcards)
    if "from_model" in tokenizer:
        return [base_model_config(tokenizer["from_model"])]
    path = Path(tokenizer_path(tokenizer))
    return [str(path)] if path.is_file() else []


# ---- training ---------------------------------------------------------------------------------
RUNS = {run.run_id: run for run in wc.runs(CFG)}


def run_of(wildcards):
    if wildcards.run not in RUNS:
        raise ValueError(f"unknown run '{wildcards.run}': not in the active run groups (use_run_groups)")
    return RUNS[wildcards.run]


def train_dir(run):
    return f"{RESULTS}/train/{run.run_id}"


def model_tokenizer(model):
    return CFG["models"][model]["tokenizer"]


def base_model_dir(model):
    spec = CFG["models"][model]
    return repo_path(spec["path"]) if "path" in spec else f"{RESULTS}/models/{model}"


def base_model_config(model):
    return f"{base_model_dir(model)}/config.json"


def get_model_init_tokenizer(wildcards):
    spec = CFG["models"][wildcards.model]
    return [repo_path(CFG["tokenizers"][spec["tokenizer"]]["path"])] if "init" in spec else []


def get_prepare_model_flags(wildcards):
    spec = CFG["models"][wildcards.model]
    if "init" in spec:
        return ["--init", json.dumps(spec["init"]), "--tokenizer-model",
                repo_path(CFG["tokenizers"][spec["tokenizer"]]["path"])]
    if "package" in spec:
        return ["--package", json.dumps(spec["package"], sort_keys=True),
                "--cache-dir", f"{RESULTS}/models/.package_cache"]
    return ["--hf-id", spec["hf_id"], "--revision", spec.get("revision", "main")]


DEFAULT_RESOURCES = {"gpu": 0, "cpus_per_task": 1, "mem_mb": 8000, "runtime": 60}


def train_resources(model):
    return {**DEFAULT_RESOURCES, **CFG["training"].get("resources", {}),
            **CFG["models"][model].get("train_resources", {})}


def get_train_launcher(wildcards, resources):
    """`python` on CPU or one GPU; `accelerate launch` with DeepSpeed over all GPUs of the job,
    or on one GPU when the model names its own DeepSpeed config (e.g. ZeRO-3 + CPU offload)."""
    run = run_of(wildcards)
    gpus = int(resources.gpu)
    model_ds = CFG["models"][run.model].get("deepspeed_config")
    if gpus <= 1 and not model_ds:
        return "python"
    ds_config = repo_path(model_ds or CFG["training"]["deepspeed_config"])
    precision = {"fp32": "no"}.get(CFG["training"]["precision"], CFG["training"]["precision"])
    port = 29500 + int(hashlib.sha1(run.run_id.encode()).hexdigest(), 16) % 2000  # jobs sharing a node
    return (f"accelerate launch --num_machines 1 --num_processes {max(gpus, 1)} --mixed_precision {precision} "
            f"--main_process_port {port} --use_deepspeed --deepspeed_config_file {ds_config}")


TRAIN_SETTING_KEYS = ("epochs", "learning_rate", "lr_scheduler", "warmup_ratio", "weight_decay",
                      "adam_betas", "adam_epsilon", "max_grad_norm", "effective_batch_size", "packing",
                      "token_budget", "per_device_batch_size", "loss_normalisation", "precision",
                      "attn_implementation", "gradient_checkpointing", "seed", "checkpoint_every")


def reference_path(model, dataset):
    return f"{RESULTS}/kl_ref/{model}/{dataset}.npy"


def get_train_inputs(wildcards):
    run = run_of(wildcards)
    inputs = {"record": record_path(model_tokenizer(run.model), run.dataset),
              "model": base_model_config(run.model)}
    if CFG["methods"][run.method].get("kl_lambda"):
        inputs["reference"] = reference_path(run.model, run.dataset)
    return inputs


def get_train_settings(wildcards):
    run = run_of(wildcards)
    training = CFG["training"]
    method = CFG["methods"][run.method]
    settings = {key: training[key] for key in TRAIN_SETTING_KEYS if key in training}
    settings.update(
        epochs=run.epochs,
        model_path=base_model_dir(run.model),
        record_path=record_path(model_tokenizer(run.model), run.dataset),
        output_dir=train_dir(run),
        scratch_dir=f"{training.get('scratch_dir', 'scratch')}/train/{run.run_id}",
        log_dir=f"{LOGS}/train/tensorboard/{run.run_id}",
        labels=method["labels"],
        seed=method.get("seed", training.get("seed", 42)),
        prompt_weight=method.get("prompt_weight"),
        neftune_alpha=method.get("neftune_alpha"),
        kl_lambda=method.get("kl_lambda"),
        reference_logprobs=reference_path(run.model, run.dataset) if method.get("kl_lambda") else None,
        progress=True,
        run_info={"run_id": run.run_id, "model": run.model, "dataset": run.dataset, "method": run.method},
    )
    return json.dumps(settings, sort_keys=True)


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


GIT_REVISION = json.dumps(git_revision(REPO))  # a new revision reruns the provenance record
CONFIG_SHA256 = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def alpaca_eval_reference(version):
    return repo_path(f"resources/eval/alpaca_eval/{cat.ALPACA_EVAL_REFERENCE[f'alpaca_eval_{version}']}_outputs.json")


# ---- tables, figures, report -------------------------------------------------------------------
TABLES = {  # table key -> file stem under results/tables (imrepro.report.tables)
    "table1": "table1_main_results",
    "table2": "table2_regeneration_bleu",
    "table3": "table3_kl_regularised_it",
    "table4": "table4_im_neftune",
    "table5": "table5_dataset_stats_vs_paper",
    "table7": "table7_kl_lambda",
}
TABLE_OF_STEM = {stem: key for key, stem in TABLES.items()}
FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig6", "fig10", "fig11")
LABEL = EVAL.get("label", "")
PAPER_CSV = repo_path("resources/paper/paper_results.csv")


def caption_text(name):
    """The caption of one table or figure (report/captions/<name>.rst), its label filled in: the report
    renders captions per rule, so every table and figure rule passes its own through params."""
    text = (REPO / "report" / "captions" / f"{name}.rst").read_text()
    return text.replace("{{ snakemake.params.label }}", f"**{LABEL}**" if LABEL else "")


def table_inputs(wildcards):
    inputs = {"eval_long": f"{RESULTS}/tables/eval_long.csv", "runs": f"{RESULTS}/tables/runs.csv",
              "paper": PAPER_CSV}
    if TABLE_OF_STEM[wildcards.table_stem] == "table5":
        inputs["table5"] = rules.table5.output.csv
    return inputs


def loss_files(wildcards):
    return [eval_path(t.target_id, "output_loss") for t in TARGETS.values() if "output_loss" in t.benchmarks]


# ---- the real-model study (rules/study.smk) --------------------------------------------------
STUDY = CFG.get("study") or {}


def study_config():
    if not STUDY:
        raise ValueError("the study rules need a `study:` config section: snakemake --profile profiles/study")
    return STUDY


def study_targets():
    """Target id -> {dataset, arm, seed}: arm = the method's paper_name, seed = its seed."""
    out = {}
    for tid, target in TARGETS.items():
        if target.run is None:
            out[tid] = {"dataset": None, "arm": "base", "seed": None}
        else:
            method = CFG["methods"][target.run.method]
            out[tid] = {"dataset": target.run.dataset, "arm": method.get("paper_name", target.run.method),
                        "seed": method.get("seed", CFG["training"].get("seed", 42))}
    return out


def study_results(wildcards):
    study_config()
    return [f"{RESULTS}/eval/{tid}/{b}.json" for tid, t in TARGETS.items() for b in t.benchmarks]


def study_datasets():
    return sorted({t.run.dataset for t in TARGETS.values() if t.run is not None})


def study_shares_datasets():
    return study_config()["token_shares"]["datasets"]
