# Helpers of the real-model study (rules/study.smk): which targets, datasets and shares it reads.
from types import SimpleNamespace

STUDY = CHECKED_CONFIG.get("study") or {}  # an optional section: empty outside profiles/study
STUDY_DIR = f"{RESULTS}/study"
STUDY_DOCS = "docs/STUDY.md"  # committed pages of the repository, rewritten by `make study`
STUDY_DOCS_FIGURE = "docs/study/fig_study_loss.png"


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
            method = CHECKED_CONFIG["methods"][target.run.method]
            out[tid] = {"dataset": target.run.dataset, "arm": method.get("paper_name", target.run.method),
                        "seed": method_seed(target.run.method)}
    return out


def study_results(wildcards):
    study_config()
    return [eval_path(tid, b) for tid, t in TARGETS.items() for b in t.benchmarks]


def study_datasets():
    return sorted({t.run.dataset for t in TARGETS.values() if t.run is not None})


def study_shares_datasets():
    return study_config()["token_shares"]["datasets"]
