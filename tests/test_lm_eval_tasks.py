"""The offline lm-eval tasks (resources/eval/lm_eval) and the one-task evaluation CLI.

The local tasks must render exactly what the harness' own YAMLs render on the same docs: each local
task is built next to a "twin" made from the installed harness YAML with only its dataset swapped to
our files, and prompts, targets, choices and few-shot contexts are compared doc by doc.
"""

from __future__ import annotations

import filecmp
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from imrepro.eval import lm_eval_tasks as let
from imrepro.eval.aggregate import PAPER_TASKS, task_scores_from_lm_eval

ROOT = let.LOCAL_ROOT
LOCAL_YAMLS = sorted((ROOT / "tasks").glob("*/*.yaml"))  # tasks/_imrepro_data.yaml: included, not a task
TASK_YAMLS = [p for p in LOCAL_YAMLS if not p.name.startswith("_")]
GROUP_YAMLS = [p for p in LOCAL_YAMLS if p.name.startswith("_")]
SCRIPT = REPO / "workflow_scripts" / "eval_lm_eval.py"
NAME_KEYS = {"task", "tag", "group"}
DATA_KEYS = {"dataset_path", "dataset_name", "dataset_kwargs", "custom_dataset"}  # custom: _imrepro_data
SPLIT_KEYS = {"training_split", "validation_split", "test_split", "fewshot_split"}


def harness_yaml(local: Path) -> Path:
    """The harness YAML a local one was generated from (named on its second header line)."""
    from lm_eval.tasks import __file__ as tasks_init

    line = local.read_text(encoding="utf-8").splitlines()[1]
    assert line.startswith("# lm_eval/tasks/"), local
    return Path(tasks_init).parent / line.removeprefix("# lm_eval/tasks/").split(" ")[0]


def load_flat(path: Path, resolve: bool) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=resolve)


def _same_function(a, b) -> bool:
    return a.__name__ == b.__name__ and inspect.getsource(a) == inspect.getsource(b)


# ---------------------------------------------------------------------------------------------
# (a) same prompts, targets, choices and few-shot contexts as the harness task, doc by doc
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def task_pairs():
    """{local task name: (local Task, harness twin)} for every local leaf task."""
    from lm_eval.api.task import ConfigurableTask

    manager = let.local_task_manager()
    names = [load_flat(p, False)["task"] for p in TASK_YAMLS]
    local = manager.load(names)["tasks"]  # from the tests' folder: data files resolve from anywhere
    pairs = {}
    for path, name in zip(TASK_YAMLS, names, strict=True):
        mine = local[name]
        cfg = load_flat(harness_yaml(path), True)
        for key in ("tag", "group", "task_list", "dataset_name"):
            cfg.pop(key, None)
        files = mine.config.dataset_kwargs["data_files"]
        cfg |= {"dataset_path": "json", "dataset_kwargs": {"data_files": {s: str(ROOT / f) for s, f in files.items()}}}
        cfg |= {key: getattr(mine.config, key) for key in SPLIT_KEYS}
        pairs[name] = (mine, ConfigurableTask(config=cfg))
    return pairs


def test_every_local_task_has_a_twin(task_pairs):
    assert len(task_pairs) == 8 + 1 + 1 + 1 + 1 + 1 + 27 + 1 + 5


@pytest.mark.parametrize("path", TASK_YAMLS, ids=lambda p: p.stem)
def test_local_task_renders_like_the_harness(task_pairs, path):
    mine, twin = task_pairs[load_flat(path, False)["task"]]
    docs = list(mine.eval_docs)
    assert docs and docs == list(twin.eval_docs)
    for doc in docs:
        assert mine.doc_to_text(doc) == twin.doc_to_text(doc)
        assert mine.doc_to_target(doc) == twin.doc_to_target(doc)
        if twin.config.doc_to_choice is not None:
            assert mine.doc_to_choice(doc) == twin.doc_to_choice(doc)
    key = {"truthfulqa": "truthfulqa_mc2"}.get(path.parent.name, path.parent.name)
    paper = let.default_num_fewshot(key)
    for n in sorted({1, twin.config.num_fewshot or 0 if paper is None else paper}):
        for task in (mine, twin):
            task.set_fewshot_seed(seed=1234)
        for doc in docs[:3]:
            assert mine.fewshot_context(doc=doc, num_fewshot=n) == twin.fewshot_context(doc=doc, num_fewshot=n)


# ---------------------------------------------------------------------------------------------
# (b) same configuration (metrics, filters, generation, few-shot settings) apart from names and data
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", LOCAL_YAMLS, ids=lambda p: p.stem)
def test_local_config_is_the_harness_config_renamed(path):
    mine, theirs = load_flat(path, True), load_flat(harness_yaml(path), True)
    assert set(mine) - DATA_KEYS == set(theirs) - DATA_KEYS
    for key, value in theirs.items():
        if key in NAME_KEYS:
            names = value if isinstance(value, list) else [value]
            assert mine[key] == (["imrepro_" + v for v in names] if isinstance(value, list) else "imrepro_" + value)
        elif key in SPLIT_KEYS:
            assert mine[key] in (value, None)
            if mine[key] is not None:
                assert value in mine["dataset_kwargs"]["data_files"]
        elif key not in DATA_KEYS:
            if callable(value):
                assert _same_function(mine[key], value), key
            else:
                assert mine[key] == value, key
    if "group" not in mine:
        assert mine["dataset_path"] == "json"
        assert all((ROOT / f).is_file() for f in mine["dataset_kwargs"]["data_files"].values())


def test_metric_lists_equal_the_harness(task_pairs):
    for mine, twin in task_pairs.values():
        assert mine.config.metric_list == twin.config.metric_list
        assert mine.config.filter_list == twin.config.filter_list
        assert mine.config.generation_kwargs == twin.config.generation_kwargs
        assert mine.config.output_type == twin.config.output_type


@pytest.mark.parametrize("path", sorted((ROOT / "tasks").glob("*/*.py")), ids=lambda p: p.parent.name)
def test_copied_modules_are_unchanged(path):
    header, _, body = path.read_text(encoding="utf-8").partition("# Copyright (c) 2020 EleutherAI, MIT License")
    source = header.splitlines()[0].split("lm_eval/tasks/")[1]
    from lm_eval.tasks import __file__ as tasks_init

    assert body.split("\n", 1)[1] == (Path(tasks_init).parent / source).read_text(encoding="utf-8")


def test_generator_reproduces_the_committed_files(tmp_path):
    shared = REPO.parent / "shared" / "data"
    if not (shared / "SOURCES.md").is_file() or not Path("/usr/share/common-licenses/Apache-2.0").is_file():
        pytest.skip("needs the shared eval data and the system license texts")
    subprocess.run([sys.executable, str(ROOT / "build_local_tasks.py"), "--shared-data", str(shared),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert filecmp.cmp(path, ROOT / path.relative_to(tmp_path), shallow=False), path


def test_catalogue_matches_the_local_index():
    manager = let.local_task_manager()
    for key, local in let.LOCAL_TASKS.items():
        if local is None:
            continue
        assert local.name in manager.all_tasks, key
        for sub in local.subtasks:
            assert sub in manager.all_subtasks
    shipped = {k for k, v in let.LOCAL_TASKS.items() if v is not None}
    assert shipped == {"mmlu", "piqa", "openbookqa", "winogrande", "lambada", "gsm8k", "bbh", "truthfulqa_mc2",
                       "hendrycks_ethics"}
    assert set(let.LOCAL_TASKS) == {t.key for t in PAPER_TASKS} - {"humaneval"}


@pytest.mark.slow
def test_harness_names_resolve_in_the_installed_registry():
    """--source harness asks for these names; the tags' members are the TaskSpec subtasks."""
    from lm_eval.tasks import TaskManager

    index = TaskManager().task_index
    for key, spec in let.SPECS.items():
        entry = index[spec.lm_eval_task]
        if entry.kind.name == "TAG":
            assert entry.tags == set(spec.subtasks), key


def test_harness_source_builds_the_harness_call(monkeypatch, tmp_path):
    """No network here: capture the call lm-eval would get and feed back a results dict of its shape."""
    import lm_eval
    import lm_eval.models.huggingface
    import lm_eval.tasks

    calls = {}
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", lambda: "default-index")
    monkeypatch.setattr(lm_eval.models.huggingface, "HFLM", lambda **kw: calls.setdefault("model", kw))

    def fake_evaluate(**kwargs):
        calls["evaluate"] = kwargs
        return {"results": {"gsm8k_cot": {"exact_match,strict-match": 0.25}}, "n-samples": {}, "n-shot": {}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake_evaluate)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    result = let.evaluate_task(model, "gsm8k", source="harness", limit=3, device="cpu")
    assert calls["evaluate"]["tasks"] == ["gsm8k_cot"] and calls["evaluate"]["task_manager"] == "default-index"
    assert calls["evaluate"]["num_fewshot"] == 8 and calls["evaluate"]["limit"] == 3
    assert calls["model"] == {"pretrained": str(model), "device": "cpu", "dtype": "float32", "batch_size": 8}
    assert result["value"] == 0.25 and result["lm_eval_task"] == "gsm8k_cot" and result["source"] == "harness"


def test_all_tasks_of_a_model_share_one_model_load(monkeypatch, tmp_path):
    """evaluate_tasks: one HFLM for every task, one simple_evaluate per task with that task's shots."""
    import lm_eval
    import lm_eval.models.huggingface
    import lm_eval.tasks

    models, evaluations = [], []
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", lambda: "default-index")
    monkeypatch.setattr(lm_eval.models.huggingface, "HFLM", lambda **kw: models.append(kw) or "the-model")

    def fake_evaluate(**kwargs):
        evaluations.append(kwargs)
        assert kwargs["model"] == "the-model"
        return {"results": {"gsm8k_cot": {"exact_match,strict-match": 0.25}, "mmlu": {"acc,none": 0.5}},
                "n-samples": {}, "n-shot": {}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake_evaluate)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    results = let.evaluate_tasks(model, ["mmlu", "gsm8k"], source="harness", num_fewshot={"gsm8k": 2}, device="cpu")
    assert len(models) == 1 and [e["tasks"] for e in evaluations] == [["mmlu"], ["gsm8k_cot"]]
    assert [e["num_fewshot"] for e in evaluations] == [5, 2]
    assert list(results) == ["mmlu", "gsm8k"] and results["gsm8k"]["value"] == 0.25 and results["mmlu"]["value"] == 0.5
    with pytest.raises(ValueError, match="num_fewshot names tasks that are not evaluated: piqa"):
        let.evaluate_tasks(model, ["mmlu"], source="harness", num_fewshot={"piqa": 1})


def test_only_unshipped_tasks_load_nothing(fake_model, tmp_path):
    """Offline, a model whose tasks are all unshipped gets its not_shipped results without lm-eval loading it."""
    results = let.evaluate_tasks(fake_model, ["hellaswag", "wmt16"], source="local")
    assert [r["status"] for r in results.values()] == ["not_shipped", "not_shipped"]


@pytest.mark.slow
def test_stock_lm_eval_cli_runs_the_shipped_tasks_from_any_folder(tiny_model, tmp_path):
    """`lm_eval --include_path resources/eval/lm_eval/tasks` from an unrelated folder, offline (and with the
    network namespace cut where unshare works): the tasks find their data files."""
    from imrepro.core.offline import OFFLINE_ENV

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    command = [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf", "--model_args",
               f"pretrained={tiny_model},dtype=float32", "--include_path", str(ROOT / "tasks"),
               "--tasks", "imrepro_piqa,imrepro_hendrycks_ethics", "--limit", "2", "--batch_size", "4",
               "--device", "cpu", "--output_path", str(cwd / "out")]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        command = ["unshare", "-n", *command]
    proc = subprocess.run(command, cwd=cwd, env={**os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next((cwd / "out").rglob("results_*.json")).read_text())["results"]
    assert {"imrepro_piqa", "imrepro_ethics_cm", "imrepro_ethics_virtue"} <= set(results)
    assert all(row["acc,none"] is not None for row in results.values() if "acc,none" in row)


def test_default_shots():
    assert let.default_num_fewshot("mmlu") == 5 and let.default_num_fewshot("piqa") == 10
    assert let.default_num_fewshot("openbookqa") == 0 and let.default_num_fewshot("gsm8k") == 8
    assert let.default_num_fewshot("bbh") is None and let.default_num_fewshot("truthfulqa_mc2") is None


# ---------------------------------------------------------------------------------------------
# (c) end to end with a tiny random model
# ---------------------------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def _check_scored(result: dict, key: str, limit: int) -> None:
    assert result["status"] == "scored" and result["benchmark"] == key and result["kind"] == "lm_eval"
    assert 0.0 <= result["value"] <= 1.0
    spec = let.score_spec(key, "local")
    expected = task_scores_from_lm_eval({"results": result["results"], "n-samples": result["n_samples"]},
                                        tasks=[spec])[key]
    assert result["value"] == expected
    assert all(n["effective"] == limit for n in result["n_samples"].values())
    assert set(result["versions"]) >= {"lm_eval", "transformers"}
    # log_samples: one item per document (and the metric's filter), their mean is the value
    items = result["items"]
    assert len(items) == sum(n["effective"] for n in result["n_samples"].values())
    assert sum(i["score"] for i in items) / len(items) == pytest.approx(100 * result["value"])
    assert all(i["doc_hash"] and i["filter"] == result["metric"].split(",")[1] for i in items)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["piqa", "gsm8k"])
def test_cli_scores_a_local_task(tiny_model, tmp_path, key):
    proc = run_cli("--model", str(tiny_model), "--tasks", key, "--source", "local", "--limit", "2",
                   "--batch-size", "4", "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / f"{key}.json").read_text())
    _check_scored(result, key, limit=2)
    task = let.LOCAL_TASKS[key].name
    assert result["lm_eval_task"] == task and result["value"] == result["results"][task][result["metric"]]
    assert result["num_fewshot"] == let.default_num_fewshot(key) and result["n_shot"][task] == result["num_fewshot"]
    assert result["source"] == "local" and result["limit"] == 2 and result["model"] == str(tiny_model)


@pytest.mark.slow
def test_groups_and_tags_score_in_process(tiny_model):
    mmlu = let.evaluate_task(tiny_model, "mmlu", source="local", limit=2, batch_size=4, device="cpu")
    _check_scored(mmlu, "mmlu", limit=2)
    assert mmlu["value"] == mmlu["results"]["imrepro_mmlu"]["acc,none"]  # the group's own (size-weighted) row
    assert len(mmlu["n_samples"]) == 8 and set(mmlu["n_shot"].values()) == {5}

    ethics = let.evaluate_task(tiny_model, "hendrycks_ethics", source="local", limit=2, batch_size=4, device="cpu")
    _check_scored(ethics, "hendrycks_ethics", limit=2)
    subtasks = let.LOCAL_TASKS["hendrycks_ethics"].subtasks
    assert set(ethics["n_samples"]) == set(subtasks)  # a tag: no row of its own, equal sizes -> plain mean
    assert ethics["value"] == pytest.approx(sum(ethics["results"][s]["acc,none"] for s in subtasks) / 5)


# ---------------------------------------------------------------------------------------------
# (d) not shipped, bad input
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def fake_model(tmp_path) -> Path:
    """config.json only: any attempt to load it as a model would fail."""
    model = tmp_path / "not_a_real_model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return model


@pytest.mark.parametrize("key", ["hellaswag", "toxigen", "wmt16"])
def test_not_shipped_is_reported_without_loading_the_model(fake_model, tmp_path, key):
    proc = run_cli("--model", str(fake_model), "--tasks", key, "--source", "local", "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / f"{key}.json").read_text())
    assert result["status"] == "not_shipped" and result["value"] is None and result["benchmark"] == key
    assert key in result["reason"] and result["metric"] == let.SPECS[key].metric
    assert set(result) >= {"kind", "source", "lm_eval_task", "num_fewshot", "limit", "n_samples", "model",
                           "versions", "results"}
    if key == "toxigen":
        assert "annotated" in result["reason"]


def test_unknown_task_lists_the_valid_keys(fake_model, tmp_path):
    proc = run_cli("--model", str(fake_model), "--tasks", "piqa", "hellaswagg", "--source", "local",
                   "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 1 and "unknown --tasks 'hellaswagg'" in proc.stderr
    assert "mmlu" in proc.stderr and "hendrycks_ethics" in proc.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="valid keys"):
        let.evaluate_task(fake_model, "nope", source="local")
    with pytest.raises(ValueError, match="humaneval is not an lm-eval task"):
        let.evaluate_task(fake_model, "humaneval", source="local")
    with pytest.raises(ValueError, match="source must be"):
        let.evaluate_task(fake_model, "piqa", source="hub")


def test_missing_model_dir_is_named(tmp_path):
    missing = tmp_path / "no_model"
    proc = run_cli("--model", str(missing), "--tasks", "piqa", "--source", "local",
                   "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 1 and f"{missing}: not a model directory (no config.json)" in proc.stderr
    with pytest.raises(FileNotFoundError, match="no config.json"):
        let.evaluate_task(missing, "hellaswag", source="local")
