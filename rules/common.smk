# Helpers shared by the stage files: the checked config and the path of every output kind.
# Only functions and constants live here.
import hashlib
import json
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from imrepro.core import workflow_config as wc  # noqa: E402
from imrepro.core.offline import go_offline  # noqa: E402
from imrepro.core.provenance import git_revision  # noqa: E402

CFG = wc.prepare(config)
REPO = Path(workflow.basedir)
RESULTS = CFG["results_dir"]
LOGS = CFG["logs_dir"]
MAX_LENGTH = CFG["training"]["max_length"]
if CFG.get("offline"):  # every job inherits the hub's offline switches (also on SLURM: sbatch exports them)
    go_offline()


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


def get_tokenizer_files(wildcards):
    """Local tokenizer files are inputs, so replacing one rebuilds the records."""
    path = Path(repo_path(get_tokenizer(wildcards)["path"]))
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
        prompt_weight=method.get("prompt_weight"),
        neftune_alpha=method.get("neftune_alpha"),
        kl_lambda=method.get("kl_lambda"),
        reference_logprobs=reference_path(run.model, run.dataset) if method.get("kl_lambda") else None,
        progress=True,
        run_info={"run_id": run.run_id, "model": run.model, "dataset": run.dataset, "method": run.method},
    )
    return json.dumps(settings, sort_keys=True)


# ---- evaluation (what the report stage reads too; the evaluation stage's helpers are in eval.smk) ----------

EVAL = CFG.get("evaluation") or {}
TARGETS = wc.eval_targets(CFG)
JUDGE = EVAL.get("judge") or {}


def eval_path(target_id, benchmark):
    return f"{RESULTS}/eval/{target_id}/{benchmark}.json"


GIT_REVISION = json.dumps(git_revision(REPO))  # a new revision reruns the provenance record
CONFIG_SHA256 = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()



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
