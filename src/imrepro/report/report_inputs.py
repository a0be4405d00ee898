"""Inputs of the reporting stage, shared by :mod:`imrepro.report.tables` and :mod:`imrepro.report.figures`.

* ``eval_long.csv`` (evaluation stage): ``run,benchmark,metric,value[,note]``, an empty value = missing;
  the optional ``note`` (empty when absent) says e.g. ``partial: 1 of 5 tasks (mmlu)`` for a category
  mean averaged over only the tasks that were scored.
* ``runs.csv``: one row per evaluated model, ``run,model,model_paper_name,dataset,dataset_paper_name,
  method,method_paper_name,epochs,is_base,n_examples,ratio_output_instruction,judge_label``; optional
  ``compare_as`` (the paper's training-set name this run is compared with, e.g. the demo's
  ``lima_head64`` -> ``LIMA``) and ``compare_model_as`` (the paper's model name); the workflow also
  writes each run's axes and declared settings (``seed``, ``seed_draws_data``, ``swept``, ``labels``,
  ``prompt_weight``, ``response_weight``, ``weight_normalisation``, ``neftune_alpha``, ``kl_lambda``,
  ``learning_rate``).
* ``paper_results.csv``: every printed number of the paper, ``table,model,train_dataset,method,
  benchmark,metric,value,source_note``.

How a run finds its paper row: the paper row's (model, training set, method) must equal the run's
(compare model, compare dataset, arm) after :func:`name_key` normalisation, where ``arm`` is the paper's
method derived from the declared settings (:func:`paper_arm`; ``method_paper_name`` is a label only, used
as the arm only for a runs.csv without ``labels``). Compare
dataset = ``compare_as`` when set, else ``dataset_paper_name``. Compare model = ``compare_model_as``
when set; else, for a run remapped onto another training set (``compare_as`` set and different from
``dataset_paper_name``, e.g. ``lima_head64`` -> LIMA) and for the base run of such a run's model, the
paper's main model (LLaMA-2-7B, the only model with printed numbers); else ``model_paper_name``. So a
LLaMA-2-13B run on LIMA is never compared with the 7B numbers, while the demo's slices are.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from imrepro.train.label_policies import DEPRECATED_POLICIES

RUNS_COLUMNS = ("run", "model", "model_paper_name", "dataset", "dataset_paper_name", "method",
                "method_paper_name", "epochs", "is_base", "n_examples", "ratio_output_instruction", "judge_label")
EVAL_COLUMNS = ("run", "benchmark", "metric", "value")  # required; "note" is optional
PARTIAL = "partial"  # a note starting with this: the value is averaged over only the scored tasks/categories
PAPER_COLUMNS = ("table", "model", "train_dataset", "method", "benchmark", "metric", "value")
PAPER_MAIN_MODEL = "LLaMA-2-7B-base"
JUDGED_BENCHMARKS = ("MT-Bench", "AlpacaEval 1.0", "AlpacaEval 2.0")
# the paper's arms (its method names): IT, the two instruction-modelling arms (the authors' code behind the
# published numbers, and Eq. 4), NEFTune on each, KL-regularised IT (paper_arm)
IT, IM, IM_EQ4 = "IT", "IM", "IM (Eq. 4)"
PAPER_ARM_OF_LABELS = {"it": IT, "im_authors": IM, "im": IM_EQ4}
NEFTUNE_ARM_OF_LABELS = {"it": "NEFTune", "im_authors": "IM+NEFTune"}


def paper_arm(labels: str, neftune_alpha: str, kl_lambda: str, swept: str) -> str:
    """The paper's name of the method a run trains, from its declared attributes (runs.csv's ``labels``,
    ``neftune_alpha``, ``kl_lambda``, ``swept``), never from its ``method_paper_name`` label; "" where the
    paper has no such method (the weighted policy, a sweep point, NEFTune with KL, ...). A deprecated policy
    name (``im_seed``) counts as its policy."""
    labels = DEPRECATED_POLICIES.get(labels, labels)
    if swept or labels not in PAPER_ARM_OF_LABELS or (neftune_alpha and kl_lambda):
        return ""
    if neftune_alpha:
        return NEFTUNE_ARM_OF_LABELS.get(labels, "")
    if kl_lambda:
        return f"IT w/ KL (lambda={float(kl_lambda)})" if labels == "it" else ""
    return PAPER_ARM_OF_LABELS[labels]


def name_key(name) -> str:
    """Comparable form of a paper/our name: lower case, '%' -> 'pct', a trailing '-base' and an
    '(inferred ...)' remark dropped, only letters, digits and dots kept."""
    if name is None or (isinstance(name, float) and math.isnan(name)):
        return ""
    text = re.sub(r"\s*\(inferred[^)]*\)\s*$", "", str(name).strip())
    text = text.lower().replace("%", "pct")
    text = re.sub(r"-base$", "", text)
    return re.sub(r"[^a-z0-9.]+", "", text)


def _read_csv(path: str | Path, required: tuple[str, ...], what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: {what} lacks column(s) {', '.join(missing)}")
    return frame


def _to_float(value: str, path: Path, field: str):
    if value is None or str(value).strip() == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{path}: field {field!r} holds {value!r}, not a number") from None


def load_eval_long(path: str | Path) -> pd.DataFrame:
    frame = _read_csv(path, EVAL_COLUMNS, "eval_long table")
    if "note" not in frame.columns:  # files written before the column existed
        frame["note"] = ""
    frame["value"] = [_to_float(v, Path(path), "value") for v in frame["value"]]
    duplicated = frame.duplicated(["run", "benchmark", "metric"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise ValueError(f"{path}: duplicate row for run {row.run!r}, {row.benchmark!r}/{row.metric!r}")
    return frame


def load_runs(path: str | Path) -> pd.DataFrame:
    """runs.csv with parsed numbers/booleans and the derived ``compare_dataset``/``compare_model`` columns."""
    path = Path(path)
    frame = _read_csv(path, RUNS_COLUMNS, "runs table")
    if frame["run"].duplicated().any():
        raise ValueError(f"{path}: run {frame['run'][frame['run'].duplicated()].iloc[0]!r} listed twice")
    for column in ("epochs", "n_examples", "ratio_output_instruction"):
        frame[column] = [_to_float(v, path, column) for v in frame[column]]
    frame["is_base"] = [str(v).strip().lower() in ("true", "1", "yes") for v in frame["is_base"]]
    for column in ("compare_as", "compare_model_as"):
        if column not in frame.columns:
            frame[column] = ""
    frame["compare_dataset"] = [c or d for c, d in zip(frame["compare_as"], frame["dataset_paper_name"], strict=True)]
    # a run remapped onto another training set (compare_as differs from its own paper name: a demo slice)
    # stands in for the paper's model, and so does the base model of such runs
    remapped = [bool(c) and name_key(c) != name_key(d) and not b
                for c, d, b in zip(frame["compare_as"], frame["dataset_paper_name"], frame["is_base"], strict=True)]
    stand_in = set(frame.loc[remapped, "model"])
    frame["compare_model"] = [
        explicit or (PAPER_MAIN_MODEL if model in stand_in and (remap or base) else paper_name)
        for explicit, model, remap, base, paper_name in zip(
            frame["compare_model_as"], frame["model"], remapped, frame["is_base"], frame["model_paper_name"],
            strict=True)]
    frame["dataset_label"] = [d or k for d, k in zip(frame["dataset_paper_name"], frame["dataset"], strict=True)]
    # the paper's method of each run, from its declared attributes (a runs.csv from before they were
    # written: its method_paper_name)
    if "labels" in frame.columns:
        frame["arm"] = [paper_arm(*values) for values in
                        zip(frame["labels"], frame["neftune_alpha"], frame["kl_lambda"], frame["swept"], strict=True)]
    else:
        frame["arm"] = frame["method_paper_name"]
    return frame


def load_paper(path: str | Path) -> pd.DataFrame:
    frame = _read_csv(path, PAPER_COLUMNS, "paper results table")
    frame["value"] = [_to_float(v, Path(path), "value") for v in frame["value"]]
    return frame


def main_epochs(runs: pd.DataFrame, epochs: float | None = None) -> float | None:
    """Epoch count of the main (non-sweep) runs: ``epochs`` if given, else the most common one."""
    if epochs is not None:
        return float(epochs)
    trained = runs.loc[~runs["is_base"], "epochs"].dropna()
    if trained.empty:
        return None
    counts = trained.value_counts()
    return float(min(counts[counts == counts.max()].index))  # ties: the smaller count of epochs


def values(eval_long: pd.DataFrame, benchmark: str, metric: str) -> dict[str, float]:
    """run -> value of one benchmark/metric (NaN where the row is there but empty)."""
    rows = eval_long[(eval_long["benchmark"] == benchmark) & (eval_long["metric"] == metric)]
    return dict(zip(rows["run"], rows["value"], strict=True))


def select_model(runs: pd.DataFrame, model: str | None = None) -> str | None:
    """Our model key: ``model`` (a key or a paper name), else the one with the most trained runs."""
    trained = runs[~runs["is_base"]]
    if model:
        for key, paper in zip(runs["model"], runs["model_paper_name"], strict=True):
            if model in (key, paper):
                return key
        raise ValueError(f"--model {model!r}: no run of that model in runs.csv")
    if trained.empty:
        return None
    counts = trained["model"].value_counts()
    return str(counts.index[0])


def is_partial(note) -> bool:
    return isinstance(note, str) and note.strip().lower().startswith(PARTIAL)


def present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
