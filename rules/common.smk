# Helpers shared by the stage files: the checked config and the path of every output kind.
# Only functions and constants live here.
import json
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from imrepro import workflow_config as wc  # noqa: E402

CFG = wc.prepare(config)
REPO = Path(workflow.basedir)
RESULTS = CFG["results_dir"]
LOGS = CFG["logs_dir"]
MAX_LENGTH = CFG["training"]["max_length"]


def script(name):
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
