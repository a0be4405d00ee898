"""What the active run groups would cost, before launch (``snakemake plan``, ``make plan``).

Per training job: examples, non-pad tokens after truncation, optimizer steps and estimated
GPU-hours; then the evaluation job counts and totals. Token counts come from the role record when
it is built (exact: the examples the trainer keeps, their token counts) and are estimated otherwise
from Table 5 statistics (``n x min(mean words x tokens_per_word, max_length)``; the dataset's own
``results/data/stats`` file when built, else the paper's Table 5 row, else its parent dataset's
mean with the subset's size). GPU-hours = epochs x tokens / (tokens/s per GPU of the model's size on
the chosen GPU kind), from the ``plan.throughput`` table of the config (which names its source), times
the method's FLOPs factor (:func:`flops_factor`: 1 for full fine-tuning, less for a LoRA adapter).

Torch-free (numpy, pyarrow): the plan rule runs it before anything is installed for training.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from imrepro.data.chat_format import Role
from imrepro.data.role_record import load_role_record

_RESPONSE = (int(Role.ASSISTANT_CONTENT), int(Role.EOS))


@dataclass
class TrainJob:
    run_id: str
    model: str
    dataset: str
    epochs: float
    effective_batch_size: int
    max_length: int
    gpus: int
    record: str  # role record path (may not exist yet)
    stats: str | None = None  # results/data/stats/<dataset>.json (may not exist yet)
    paper_name: str | None = None  # the dataset's Table 5 row
    parent_paper_name: str | None = None  # for subsets without a row: the parent's
    subset_size: int | None = None
    lora: dict | None = None  # the method's LoRA settings (None: full fine-tuning)
    gradient_checkpointing: bool = True  # the throughput table's runs recompute activations


def record_counts(path: str | Path) -> tuple[int, int]:
    """(examples the trainer keeps, their tokens): examples with a response token, as in
    ``imrepro.train.trainer.build_training_data``."""
    record = load_role_record(path)
    lengths = np.diff(record.offsets)
    starts = record.offsets[:-1][lengths > 0]
    has_response = np.zeros(len(lengths), bool)
    has_response[lengths > 0] = np.add.reduceat(np.isin(record.roles, _RESPONSE), starts) > 0
    return int(has_response.sum()), int(lengths[has_response].sum())


def paper_table5(path: str | Path) -> dict[str, dict[str, float]]:
    """``{paper dataset name: {"size (#examples)": ..., "avg total length": ...}}``."""
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["table"] == "Table 5":
                out.setdefault(row["train_dataset"], {})[row["metric"]] = float(row["value"])
    return out


def optimizer_step_count(n_examples: int, effective_batch: int, epochs: float) -> int:
    """len(``imrepro.train.schedule.optimizer_steps``): ceil(epochs x steps per epoch)."""
    return math.ceil(epochs * math.ceil(n_examples / effective_batch))


def flops_factor(lora: dict | None, gradient_checkpointing: bool) -> float:
    """Training FLOPs of the method over those of full fine-tuning, per token, for N base parameters:

    * full: forward 2N + backward 4N (activation gradients 2N, weight gradients 2N) + recompute 2N
      under gradient checkpointing: (6 + 2c) N;
    * LoRA: the same forward and activation gradients through the frozen model, no weight gradients
      for it: (4 + 2c) N, plus (6 + 2c) N_a for the adapter's N_a parameters, left out here (r (in + out)
      per adapted layer: a fraction of a percent of N at the usual ranks).

    So (4 + 2c) / (6 + 2c): 3/4 with checkpointing, 2/3 without, at the throughput table's MFU (LoRA's
    smaller optimizer step and QLoRA's dequantisation are not counted)."""
    if not lora:
        return 1.0
    c = 1 if gradient_checkpointing else 0
    return (4 + 2 * c) / (6 + 2 * c)


def state_bytes_per_parameter(lora: dict | None) -> float:
    """Model-state memory per base parameter, before ZeRO sharding and without activations (ZeRO paper's
    accounting): full fine-tuning in mixed precision 16 (bf16 weights and gradients 2 + 2, fp32 master
    weights 4, Adam moments 8); LoRA 2 (frozen bf16 weights; the adapter's 16 bytes per N_a left out);
    QLoRA 0.5 (4-bit NF4 weights; their quantisation constants left out)."""
    if not lora:
        return 16.0
    return 0.5 if lora["load_in_4bit"] else 2.0


def job_tokens(job: TrainJob, table5: dict, tokens_per_word: float) -> tuple[int, int, str]:
    """(examples, non-pad tokens per epoch, source of the numbers)."""
    if Path(job.record).is_file():
        n, tokens = record_counts(job.record)
        return n, tokens, "role record"
    if job.stats and Path(job.stats).is_file():
        stats = json.loads(Path(job.stats).read_text())
        n, words, source = stats["n_examples"], stats["avg_total"], "estimate: dataset stats"
    elif job.paper_name in table5:
        row = table5[job.paper_name]
        n, words, source = row["size (#examples)"], row["avg total length"], "estimate: paper Table 5"
    elif job.parent_paper_name in table5 and job.subset_size:
        n, words = job.subset_size, table5[job.parent_paper_name]["avg total length"]
        source = "estimate: parent's Table 5 mean"
    else:
        raise ValueError(f"plan: no role record, statistics or Table 5 row for dataset {job.dataset!r} "
                         f"({job.record} not built)")
    return int(n), int(round(n * min(words * tokens_per_word, job.max_length))), source


def plan(jobs: list[TrainJob], throughput: dict, gpu: str, tokens_per_word: float, table5: dict,
         eval_jobs: dict[str, int]) -> dict:
    """Rows per training job, evaluation counts and totals (JSON-ready)."""
    sizes, rates = throughput["models"], throughput["tokens_per_s_per_gpu"]
    rows = []
    for job in jobs:
        n, tokens, source = job_tokens(job, table5, tokens_per_word)
        size = sizes.get(job.model)
        rate = rates.get(size, {}).get(gpu) if size else None
        trained = tokens * job.epochs
        factor = flops_factor(job.lora, job.gradient_checkpointing)
        gpu_hours = trained / rate / 3600 * factor if rate else None
        rows.append({**asdict(job), "examples": n, "tokens_per_epoch": tokens, "tokens_source": source,
                     "optimizer_steps": optimizer_step_count(n, job.effective_batch_size, job.epochs),
                     "size": size, "tokens_per_s_per_gpu": rate, "flops_factor": factor,
                     "state_bytes_per_parameter": state_bytes_per_parameter(job.lora), "gpu_hours": gpu_hours,
                     "wall_hours": gpu_hours / max(job.gpus, 1) if gpu_hours is not None else None})
    known = [r["gpu_hours"] for r in rows if r["gpu_hours"] is not None]
    return {"gpu": gpu, "throughput_source": throughput.get("source"), "tokens_per_word": tokens_per_word,
            "train": rows, "evaluation_jobs": eval_jobs,
            "totals": {"train_jobs": len(rows), "examples": sum(r["examples"] for r in rows),
                       "trained_tokens": sum(r["tokens_per_epoch"] * r["epochs"] for r in rows),
                       "optimizer_steps": sum(r["optimizer_steps"] for r in rows),
                       "gpu_hours": sum(known), "jobs_without_rate": len(rows) - len(known),
                       "evaluation_jobs": sum(eval_jobs.values())}}


def _num(x, fmt="{:,.0f}") -> str:
    return "—" if x is None else fmt.format(x)


def _trains(lora: dict | None) -> str:
    if not lora:
        return "all weights"
    return f"{'QLoRA' if lora['load_in_4bit'] else 'LoRA'} r={lora['r']}"


def render(result: dict) -> str:
    """The plan as Markdown (what ``snakemake plan`` prints)."""
    t = result["totals"]
    lines = [f"# Cost plan (GPU kind {result['gpu']}; tokens/s source: {result['throughput_source']})", "",
             "| training job | examples | non-pad tokens/epoch | epochs | optimizer steps | GPUs | tokens/s/GPU "
             "| trains | FLOPs factor | state bytes/param | GPU-hours | wall hours | tokens from |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in result["train"]:
        lines.append(f"| {r['run_id']} | {r['examples']:,} | {r['tokens_per_epoch']:,} | {r['epochs']:g} | "
                     f"{r['optimizer_steps']:,} | {r['gpus']} | {_num(r['tokens_per_s_per_gpu'])} | "
                     f"{_trains(r['lora'])} | {r['flops_factor']:.3g} | {r['state_bytes_per_parameter']:g} | "
                     f"{_num(r['gpu_hours'], '{:,.2f}')} | {_num(r['wall_hours'], '{:,.2f}')} | "
                     f"{r['tokens_source']} |")
    lines += ["", "| evaluation rule | jobs |", "|---|---:|"]
    lines += [f"| {name} | {count} |" for name, count in result["evaluation_jobs"].items()]
    lines += ["", f"**Totals**: {t['train_jobs']} training jobs, {t['examples']:,} examples, "
                  f"{t['trained_tokens']:,.0f} trained tokens, {t['optimizer_steps']:,} optimizer steps, "
                  f"**{t['gpu_hours']:,.1f} GPU-hours** of training on {result['gpu']}"
                  + (f" ({t['jobs_without_rate']} jobs without a tokens/s entry, not counted)"
                     if t["jobs_without_rate"] else "")
                  + f"; {t['evaluation_jobs']} evaluation jobs (GPU time not estimated)."]
    return "\n".join(lines) + "\n"
