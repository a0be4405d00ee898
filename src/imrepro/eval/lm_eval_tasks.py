"""The paper's 17 lm-evaluation-harness tasks through lm-eval 0.4.13's Python API, all tasks of a model
in one process (:func:`evaluate_tasks`: the model is loaded once).

Two sources of task definitions:

- ``harness``: the standard harness tasks (:data:`imrepro.eval.aggregate.PAPER_TASKS` names); their data
  come from the Hugging Face hub, so this needs network (a networked cluster).
- ``local``: ``resources/eval/lm_eval`` (see its README): the harness YAMLs renamed ``imrepro_*``
  over small slices of the shipped eval data, same prompts and metrics.  Only the tasks whose data
  ship exist there (:data:`LOCAL_TASKS`); the others are reported ``not_shipped`` without loading
  the model.

The score is the paper's value, taken from lm-eval's results by
:func:`imrepro.eval.aggregate.task_scores_from_lm_eval` (a fraction, with the TaskSpec scale). lm-eval runs
with ``log_samples=True``: the result keeps its per-document scores (``items``, see
:func:`imrepro.eval.item_scores.lm_eval_items`) and lm-eval's own standard error (``lm_eval_stderr``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from imrepro.core.models import check_model_dir
from imrepro.eval.aggregate import PAPER_TASKS, TaskSpec, task_scores_from_lm_eval
from imrepro.eval.item_scores import lm_eval_items, lm_eval_stderr
from imrepro.eval.result_record import BenchmarkResult

LOCAL_ROOT = Path(__file__).resolve().parents[3] / "resources" / "eval" / "lm_eval"
SOURCES = ("local", "harness")
log = logging.getLogger(__name__)
SPECS = {spec.key: spec for spec in PAPER_TASKS if spec.lm_eval_task is not None}  # humaneval is scored elsewhere


@dataclass(frozen=True)
class LocalTask:
    name: str  # task, group or tag in resources/eval/lm_eval/tasks
    subtasks: tuple[str, ...] = ()  # leaf tasks when ``name`` is a tag (lm-eval reports no row for a tag)
    note: str = ""


_NOT_SHIPPED = ("no local slice ships with this repository (resources/eval/lm_eval/README.md); "
                "evaluation.lm_eval.source: harness scores it on a networked machine")
LOCAL_TASKS: dict[str, LocalTask | None] = {
    "mmlu": LocalTask("imrepro_mmlu", note="8 of the 57 subjects (per category the 2 with the shortest prompts)"),
    "piqa": LocalTask("imrepro_piqa", note="shots drawn from held-out validation rows (PIQA train is not shipped)"),
    "openbookqa": LocalTask("imrepro_openbookqa"),
    "hellaswag": None,
    "lambada": LocalTask("imrepro_lambada", ("imrepro_lambada_openai",),
                         note="only lambada_openai ships: the harness' lambada also averages in lambada_standard"),
    "lambada_multilingual": None,
    "wmt14": None,
    "wmt16": None,
    "wsc273": None,
    "winogrande": LocalTask("imrepro_winogrande", note="shots drawn from train_xs (the harness: winogrande_xl train)"),
    "arc": None,
    "coqa": None,
    "gsm8k": LocalTask("imrepro_gsm8k_cot"),
    "bbh": LocalTask("imrepro_bbh_cot_fewshot", note="27 subtasks x 20 docs"),
    "truthfulqa_mc2": LocalTask("imrepro_truthfulqa_mc2"),
    "toxigen": None,
    "hendrycks_ethics": LocalTask("imrepro_hendrycks_ethics",
                                  tuple(f"imrepro_{sub}" for sub in SPECS["hendrycks_ethics"].subtasks)),
}
NOT_SHIPPED_REASONS = {
    "toxigen": ("the harness' toxigen task scores the human-annotated skg/toxigen-data 'annotated' test split; the "
                "shipped ToxiGen files are unlabelled generation prompts (prompts/hate_<group>_1k.txt, all from the "
                "hateful prompt sets), a different text distribution with no per-statement labels, so they cannot "
                "stand in for it"),
}
assert set(LOCAL_TASKS) == set(SPECS)

# Tasks whose paper shots are part of the harness prompt itself: lm-eval gets num_fewshot=None (the YAML's own
# setting).  TruthfulQA's 6-QA preamble is in doc_to_text (YAML num_fewshot: 0).  BBH: the paper says "without
# few-shot examples", yet the lm-eval of its time put the 3 CoT exemplars in the description with num_fewshot: 0;
# lm-eval 0.4.13 serves the same exemplars as num_fewshot: 3 samples, so passing 0 would drop them.
PROMPT_SHOTS = {"truthfulqa_mc2": "6-QA preamble in the prompt", "bbh": "3 CoT exemplars per subtask"}


def result_path(output_dir: str | os.PathLike, key: str) -> Path:
    """Where eval_lm_eval.py writes one task's result (the workflow's rule eval_result copies it from there)."""
    return Path(output_dir) / f"{key}.json"


def spec_for(key: str) -> TaskSpec:
    if key == "humaneval":
        raise ValueError("humaneval is not an lm-eval task: workflow_scripts/eval_humaneval.py scores it")
    if key not in SPECS:
        raise ValueError(f"unknown lm-eval task key {key!r}; valid keys: {', '.join(SPECS)}")
    return SPECS[key]


def default_num_fewshot(key: str) -> int | None:
    """Shots passed to lm-eval by default: the paper's (TaskSpec.shots, None -> 0), see :data:`PROMPT_SHOTS`."""
    if key in PROMPT_SHOTS:
        return None
    return spec_for(key).shots or 0


def score_spec(key: str, source: str) -> TaskSpec:
    """The TaskSpec whose names match what ``source`` reports, for task_scores_from_lm_eval."""
    spec = spec_for(key)
    if source == "harness":
        return spec
    local = LOCAL_TASKS[key]
    return replace(spec, lm_eval_task=local.name, subtasks=local.subtasks)


def not_shipped_result(model_dir: str | os.PathLike, key: str) -> dict:
    spec = spec_for(key)
    return BenchmarkResult(key, "lm_eval", None, spec.metric, status="not_shipped", details={
        "source": "local", "lm_eval_task": None, "num_fewshot": None, "limit": None, "n_samples": {},
        "model": str(model_dir), "versions": versions(), "results": {},
        "reason": f"{key}: {NOT_SHIPPED_REASONS.get(key, _NOT_SHIPPED)}; run it with source 'harness' where "
                  f"the Hugging Face hub is reachable"}).to_dict()


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("lm_eval", "transformers", "torch", "datasets")}


def local_task_manager(root: Path = LOCAL_ROOT):
    """A TaskManager that indexes only our tasks (the default index reads ~14,700 harness entries, ~6 s)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(root.resolve() / "tasks"), include_defaults=False)


def load_local(name: str, task_manager) -> list:
    """Build task objects for ``name`` (their data files resolve from any folder: tasks/_imrepro_data.py)."""
    loaded = task_manager.load([name])
    if name in loaded["groups"]:
        return [loaded["groups"][name]]
    return list(loaded["tasks"].values())


def evaluate_task(model_dir: str | os.PathLike, key: str, **kwargs) -> dict:
    """One task key; see :func:`evaluate_tasks` (``num_fewshot`` here is that task's shots)."""
    shots = kwargs.pop("num_fewshot", None)
    return evaluate_tasks(model_dir, [key], num_fewshot={key: shots} if shots is not None else None, **kwargs)[key]


def evaluate_tasks(model_dir: str | os.PathLike, keys: list[str], *, source: str,
                   num_fewshot: dict[str, int] | None = None, limit: int | float | None = None,
                   batch_size: int | str = 8, device: str = "auto", precision: str = "auto", seed: int | None = None,
                   bootstrap_iters: int = 100000, gen_kwargs: str | None = None, root: Path = LOCAL_ROOT) -> dict:
    """Evaluate task keys with one model load; returns {key: result dict} (see workflow_scripts/eval_lm_eval.py).

    Every key is checked before anything loads.  Each task is its own ``simple_evaluate`` call on the same
    ``HFLM`` (tasks differ in shots; one call per task gives the same numbers as a job per task).
    ``num_fewshot``: per key, overrides :func:`default_num_fewshot`.  ``seed`` None: lm-eval's default seeds,
    else all four (python, numpy, torch, few-shot sampler).  ``gen_kwargs``: lm-eval's override string for
    generation tasks, e.g. ``"max_gen_toks=64"`` (changes the task: for smoke runs only).
    """
    if not keys:
        raise ValueError("no lm-eval task keys given")
    specs = {key: spec_for(key) for key in keys}
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    unknown = sorted(set(num_fewshot or {}) - set(keys))
    if unknown:
        raise ValueError(f"num_fewshot names tasks that are not evaluated: {', '.join(unknown)}")
    model_dir = check_model_dir(model_dir)
    results = {key: not_shipped_result(model_dir, key) for key in keys
               if source == "local" and LOCAL_TASKS[key] is None}
    todo = [key for key in keys if key not in results]
    if not todo:
        return results  # nothing to score: lm-eval is not even imported

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    task_manager = local_task_manager(root) if source == "local" else TaskManager()
    device, dtype = resolve_device(device, precision)
    lm = HFLM(pretrained=str(model_dir), device=device, dtype=dtype, batch_size=batch_size)
    seeds = {} if seed is None else {name: seed for name in
                                     ("random_seed", "numpy_random_seed", "torch_random_seed", "fewshot_random_seed")}
    for key in todo:
        spec = specs[key]
        shots = (num_fewshot or {}).get(key, default_num_fewshot(key))
        if source == "local":
            task_name = LOCAL_TASKS[key].name
            tasks = load_local(task_name, task_manager)
        else:
            task_name = spec.lm_eval_task
            tasks = [task_name]
        log.info("lm-eval %s (%s), %s shots", key, task_name, shots)
        # the paper's tasks are plain-text prompts: never the chat template a model's tokenizer may carry
        out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=task_manager, num_fewshot=shots,
                                      limit=limit, log_samples=True, bootstrap_iters=bootstrap_iters,
                                      gen_kwargs=gen_kwargs, apply_chat_template=False, **seeds)
        scored = score_spec(key, source)
        value = task_scores_from_lm_eval(out, tasks=[scored]).get(key)
        if value is None:
            raise ValueError(f"{key}: lm-eval reported no {spec.metric!r} for {scored.lm_eval_task} "
                             f"or all of {scored.subtasks}; got {sorted(out['results'])}")
        details = {"source": source, "lm_eval_task": task_name, "num_fewshot": shots, "limit": limit,
                   "n_samples": out["n-samples"], "n_shot": out.get("n-shot", {}), "model": str(model_dir),
                   "versions": versions(), "device": device, "dtype": dtype, "results": out["results"],
                   "lm_eval_stderr": _stderr(out["results"], scored)}
        if source == "local" and LOCAL_TASKS[key].note:
            details["note"] = LOCAL_TASKS[key].note
        items = lm_eval_items(out.get("samples") or {}, spec.metric, spec.scale)
        results[key] = BenchmarkResult(key, "lm_eval", _finite(value), spec.metric, details=_finite(details),
                                       items=items).to_dict()
    return {key: results[key] for key in keys}


def _stderr(results: dict, spec: TaskSpec) -> float | None:
    """lm-eval's own standard error of the value (its task or group row; none for a tag), TaskSpec scale."""
    stderr = lm_eval_stderr(results, spec.lm_eval_task, spec.metric)
    return None if stderr is None else stderr * spec.scale


def resolve_device(device: str = "auto", precision: str = "auto") -> tuple[str, str]:
    """("cuda" | "cpu" | as given, "bfloat16" | "float32"); auto precision is bf16 only on a bf16-capable GPU."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if precision == "auto":
        bf16 = device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        precision = "bf16" if bf16 else "fp32"
    dtypes = {"bf16": "bfloat16", "fp32": "float32"}
    if precision not in dtypes:
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    return device, dtypes[precision]


def _finite(value):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

