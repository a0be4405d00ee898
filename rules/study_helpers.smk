# Helpers of the real-model study (rules/study.smk): which targets, datasets and shares it reads.
from types import SimpleNamespace

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
                        "seed": method_seed(target.run.method)}
    return out


def study_results(wildcards):
    study_config()
    return [f"{RESULTS}/eval/{tid}/{b}.json" for tid, t in TARGETS.items() for b in t.benchmarks]


def study_datasets():
    return sorted({t.run.dataset for t in TARGETS.values() if t.run is not None})


def study_shares_datasets():
    return study_config()["token_shares"]["datasets"]
