# Helpers of the data stage, included by rules/data.smk: its input and params functions and the path of
# the downloads (only this stage reads them). Functions and rules are in separate files for `snakemake --lint`.
from pathlib import PurePosixPath
from urllib.parse import urlparse


def source_filename(source):
    return PurePosixPath(urlparse(CHECKED_CONFIG["sources"][source]["url"]).path).name


def raw_path(source, filename=None):
    """A downloaded file: results/data/raw/<source>/<the URL's file name> (``filename`` for the pattern)."""
    return f"{RESULTS}/data/raw/{source}/{filename or source_filename(source)}"


def get_download_params(wildcards):
    spec = CHECKED_CONFIG["sources"][wildcards.source]
    use_shipped = "shipped" in spec and (CHECKED_CONFIG["prefer_shipped_sources"] or CHECKED_CONFIG["offline"])
    flags = []
    for key, flag in (("sha256", "--sha256"), ("git_sha1", "--git-sha1")):
        if key in spec:
            flags += [flag, spec[key]]
    if use_shipped:
        flags += ["--shipped", str(REPO / spec["shipped"])]
    download = CHECKED_CONFIG["download"]
    flags += ["--retries", str(download["retries"]), "--backoff", str(download["backoff_seconds"]),
              "--timeout", str(download["timeout_seconds"])]
    return flags


def get_dataset_inputs(wildcards):
    entry = CHECKED_CONFIG["datasets"][wildcards.dataset]
    if "from" in entry:
        return [canonical_path(entry["from"])]
    return [raw_path(source) for source in entry["sources"]]


def get_converter_args(wildcards):
    return json.dumps(CHECKED_CONFIG["datasets"][wildcards.dataset]["args"], sort_keys=True)


def get_tokenizer(wildcards):
    return CHECKED_CONFIG["tokenizers"][wildcards.tokenizer]


def get_tokenizer_files(wildcards):
    """Local tokenizer files are inputs, so replacing one rebuilds the records; a ``from_model``
    tokenizer needs that model prepared first."""
    tokenizer = get_tokenizer(wildcards)
    if "from_model" in tokenizer:
        return [base_model_config(tokenizer["from_model"])]
    path = Path(tokenizer_path(tokenizer))
    return [str(path)] if path.is_file() else []


def get_chat_template_files(wildcards):
    """A chat template file is an input: editing it rebuilds the records."""
    tokenizer = get_tokenizer(wildcards)
    if "chat_template" not in tokenizer or tokenizer["chat_template"] == "model":  # absent: the Tulu format
        return []
    return [chat_template_setting(tokenizer["chat_template"])]


def get_tokenizer_revision(wildcards):
    tokenizer = get_tokenizer(wildcards)
    return ["--tokenizer-revision", tokenizer["revision"]] if "revision" in tokenizer else []


def get_chat_template_flags(wildcards):
    return chat_template_flags(get_tokenizer(wildcards))
