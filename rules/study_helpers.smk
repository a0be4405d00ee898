# Helpers of the real-model study (rules/study.smk): which targets, datasets and shares it reads.
from types import SimpleNamespace

STUDY = CHECKED_CONFIG.get("study") or {}  # an optional section: empty outside profiles/study
STUDY_DIR = f"{RESULTS}/study"
STUDY_DOCS = "docs/STUDY.md"  # committed pages of the repository, rewritten by `make study`
STUDY_DOCS_FIGURE = "docs/study/fig_study_loss.png"
STUDY_DOCS_CURVES_FIGURE = "docs/study/fig_study_curves.png"


def study_config():
    if not STUDY:
        raise ValueError("the study rules need a `study:` config section: snakemake --profile profiles/study")
    return STUDY


def study_targets():
    """Target id -> {dataset, arm, labels, seed, label}: arm = the method id, labels its policy (the report
    compares arms by policy), seed the run's, label the method's paper_name (display only)."""
    out = {}
    for tid, target in TARGETS.items():
        if target.run is None:
            out[tid] = {"dataset": None, "arm": "base", "labels": None, "seed": None, "label": "base"}
        else:
            run = target.run
            settings = run_settings(run)
            # a swept method is one arm per value (plw at prompt_weight 0.01, 0.1, ...)
            swept = "".join(f"__{name}{value:g}" for name, value in run.sweep)
            label = CHECKED_CONFIG["methods"][run.method].get("paper_name", run.method)
            label += "".join(f" ({name} {value:g})" for name, value in run.sweep)
            out[tid] = {"dataset": run.dataset, "arm": run.method + swept, "labels": settings["labels"],
                        "seed": settings["seed"], "label": label, "prompt_weight": dict(run.sweep).get("prompt_weight")}
    return out


def study_results(wildcards):
    study_config()
    return [eval_path(tid, b) for tid, t in TARGETS.items() for b in t.benchmarks]


def study_datasets():
    return sorted({t.run.dataset for t in TARGETS.values() if t.run is not None})


def study_shares_datasets():
    return study_config()["token_shares"]["datasets"]
