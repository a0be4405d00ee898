# Helpers that two or more stages share: the checked config, repository paths, and the path of every
# output that one stage writes and another reads (the rule's pattern and the concrete paths come from
# the same function, called with "{wildcard}" for the pattern). A single stage's helpers live beside its
# rules, in rules/<stage>_helpers.smk (evaluation: rules/eval_inputs.smk). Only functions and constants here.
import hashlib
import json
from pathlib import Path

from imrepro import catalogue as cat
from imrepro import workflow_config as wc
from imrepro.core.cpu_malloc import reuse_freed_memory
from imrepro.core.offline import go_offline

CFG = wc.prepare(config)
REPO = Path(workflow.basedir)
RESULTS = CFG["results_dir"]
LOGS = CFG["logs_dir"]
MAX_LENGTH = CFG["training"]["max_length"]
if CFG["offline"]:  # every job inherits the hub's offline switches (also on SLURM: sbatch exports them)
    go_offline()
if CFG["cpu_malloc_reuse"]:  # CPU profiles: jobs reuse freed memory (imrepro.core.cpu_malloc)
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


def run_settings(run):
    """Labels policy, weights, seed, learning rate, ... of ``run`` (a wc.Run), its sweep values applied."""
    return wc.run_settings(CFG, run)


def train_dir(run):
    """The fine-tuned model of ``run`` (a wc.Run, or a run id such as "{run}")."""
    return f"{RESULTS}/train/{getattr(run, 'run_id', run)}"


# ---- evaluation -------------------------------------------------------------------------------

EVAL = CFG["evaluation"]
TARGETS = wc.eval_targets(CFG)
JUDGE = EVAL["judge"]


def eval_path(target_id, benchmark):
    return f"{RESULTS}/eval/{target_id}/{benchmark}.json"


