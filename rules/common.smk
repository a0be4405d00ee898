# Helpers that two or more stages share: the checked config, repository paths, and the path of every
# output that one stage writes and another reads (the rule's pattern and the concrete paths come from
# the same function, called with "{wildcard}" for the pattern). A single stage's helpers live beside its
# rules, in rules/<stage>_helpers.smk (evaluation: rules/eval_helpers.smk). Only functions and constants here.
import hashlib
import json
from pathlib import Path

from imrepro import catalogue
from imrepro import workflow_config
from imrepro.core.cpu_malloc import reuse_freed_memory
from imrepro.core.offline import go_offline

CHECKED_CONFIG = workflow_config.prepare(config)
REPO = Path(workflow.basedir)
RESULTS = CHECKED_CONFIG["results_dir"]
LOGS = CHECKED_CONFIG["logs_dir"]
MAX_LENGTH = CHECKED_CONFIG["training"]["max_length"]
if CHECKED_CONFIG["offline"]:  # every job inherits the hub's offline switches (also on SLURM: sbatch exports them)
    go_offline()
if CHECKED_CONFIG["cpu_malloc_reuse"]:  # CPU profiles: jobs reuse freed memory (imrepro.core.cpu_malloc)
    reuse_freed_memory()


def script_path(name):
    """Absolute path of a workflow script (so `--directory` elsewhere works)."""
    return str(REPO / "workflow_scripts" / name)


def repo_path(path):
    """A path relative to the repository if it exists there, else as given (e.g. a hub id)."""
    candidate = REPO / path
    return str(candidate) if candidate.exists() else path


def canonical_path(dataset):
    return f"{RESULTS}/data/canonical/{dataset}.jsonl"


def tokenizer_path(tokenizer):
    """A tokenizers entry's file/id, or the directory of the model it comes from (``from_model``)."""
    if "from_model" in tokenizer:
        return base_model_dir(tokenizer["from_model"])
    return repo_path(tokenizer["path"])


def chat_template_setting(template):
    """A tokenizers entry's chat_template as a job reads it: "model", or the .jinja file's path."""
    return template if template == "model" else repo_path(template)


def chat_template_flags(tokenizer):
    """``--chat-template`` of a tokenizers entry (none for the Tulu format): records and prompts alike."""
    if "chat_template" not in tokenizer:
        return []
    return ["--chat-template", chat_template_setting(tokenizer["chat_template"])]


def stats_path(dataset):
    return f"{RESULTS}/data/stats/{dataset}.json"


def record_path(tokenizer, dataset, max_length=MAX_LENGTH):
    return f"{RESULTS}/data/records/{tokenizer}_ml{max_length}/{dataset}.parquet"


PAPER_CSV = repo_path("resources/paper/paper_results.csv")  # the paper's numbers (report, plan)


def table_path(stem, ext):
    return f"{RESULTS}/tables/{stem}.{ext}"


def model_tokenizer(model):
    return CHECKED_CONFIG["models"][model]["tokenizer"]


def prepared_model_dir(model):
    """Where the prepare_model rule puts a hub download or a seeded model."""
    return f"{RESULTS}/models/{model}"


def base_model_dir(model):
    spec = CHECKED_CONFIG["models"][model]
    return repo_path(spec["path"]) if "path" in spec else prepared_model_dir(model)


def base_model_config(model):
    return f"{base_model_dir(model)}/config.json"


def run_settings(run):
    """Labels policy, weights, seed, learning rate, ... of ``run`` (a workflow_config.Run), its sweep values applied."""
    return workflow_config.run_settings(CHECKED_CONFIG, run)


def timing_path(rule, job):
    """A rule's `benchmark:` file (Snakemake's wall/CPU/memory record of one job; not an evaluation benchmark)."""
    return f"{RESULTS}/timings/{rule}/{job}.tsv"


def train_dir(run):
    """The fine-tuned model of ``run`` (a workflow_config.Run, or a run id such as "{run}")."""
    return f"{RESULTS}/train/{getattr(run, 'run_id', run)}"


# ---- evaluation -------------------------------------------------------------------------------

EVAL = CHECKED_CONFIG["evaluation"]
TARGETS = workflow_config.eval_targets(CHECKED_CONFIG)
JUDGE = EVAL["judge"]


def eval_path(target_id, benchmark):
    return f"{RESULTS}/eval/{target_id}/{benchmark}.json"


