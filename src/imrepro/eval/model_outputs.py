"""Everything an evaluated model must write itself, from one model load (one workflow job per model).

    jobs = parse_jobs(json.loads(spec_text))        # {"alpaca_eval": AlpacaEvalJob(...), ...}
    stats = run_jobs("results/train/<run>", jobs, model_id="<run>", tokenizer_model=...)

What each benchmark writes:

* ``output_loss``: its result, per-example output-token losses on the training and held-out sets;
* ``regen_bleu``: its result and the generations with their sentence BLEU (scoring is a string comparison);
* ``alpaca_eval``: alpaca_eval's model_outputs JSON, judged by both AlpacaEval jobs (1.0 and 2.0);
* ``mt_bench``: a FastChat answer file, judged by the MT-Bench job;
* ``humaneval``: completions JSONL ``{task_id, temperature, completion}``, executed in the sandbox by the
  HumanEval scoring job: generated code never runs in the job that holds the model (or a GPU).

Jobs run in :data:`JOB_TYPES` order so that one model is in memory at a time: output losses first (they need
the transformers model; with vLLM that model is freed before vLLM starts), then the greedy benchmarks, then
the sampled ones. ``run_jobs`` returns per-benchmark counts and seconds and where they ran (the job's stats file).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from imrepro.core import provenance
from imrepro.core.atomic import atomic_open
from imrepro.core.jsonl import read_jsonl, write_jsonl
from imrepro.core.models import check_model_dir
from imrepro.eval.generation import (
    DEFAULT_BATCH_SIZE,
    Sampling,
    count_empty,
    load_generator,
    select_backend,
)
from imrepro.eval.result_record import BenchmarkResult
from imrepro.train.settings import DEFAULT_TOKEN_BUDGET

log = logging.getLogger(__name__)


# ---- what one job asks for ----------------------------------------------------------------------

LOSS_SPLITS = ("train", "heldout", "reference")  # the role records an output-loss job may score


@dataclass(frozen=True)
class OutputLossJob:
    output: Path
    run: str
    train: Path | None = None  # role record of the training set (none for a base model)
    heldout: Path | None = None
    reference: Path | None = None  # good answers to other instructions (AlpacaEval's reference outputs)
    token_budget: int = DEFAULT_TOKEN_BUDGET  # tokens per scoring pack
    limit: int | None = None  # first N examples of each set


@dataclass(frozen=True)
class RegenBleuJob:
    dataset: Path  # canonical messages JSONL (the training data)
    output: Path
    generations_output: Path
    max_new_tokens: int
    limit: int | None = None


@dataclass(frozen=True)
class AlpacaEvalJob:
    questions: Path  # an AlpacaEval reference outputs JSON list (its instructions and order)
    output: Path
    max_new_tokens: int
    limit: int | None = None


@dataclass(frozen=True)
class MtBenchJob:
    questions: Path  # FastChat question.jsonl
    output: Path
    max_new_tokens: int
    limit: int | None = None
    temperature_policy: str = "fastchat"  # or "greedy"


@dataclass(frozen=True)
class HumanEvalJob:  # sampling settings: evaluation.humaneval (the authors' values are the schema's defaults)
    output: Path
    n_samples: int
    temperatures: tuple
    top_p: float
    max_new_tokens: int
    limit: int | None = None


JOB_TYPES = {"output_loss": OutputLossJob, "regen_bleu": RegenBleuJob, "alpaca_eval": AlpacaEvalJob,
             "mt_bench": MtBenchJob, "humaneval": HumanEvalJob}  # also the order they run in


def parse_jobs(spec, source: str = "--jobs") -> dict:
    """Job objects from ``{benchmark: {field: value}}``; an error names the benchmark and field."""
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"{source}: expected a non-empty JSON object of benchmark -> settings")
    unknown = sorted(set(spec) - set(JOB_TYPES))
    if unknown:
        raise ValueError(f"{source}: unknown benchmark(s) {', '.join(unknown)} (known: {', '.join(JOB_TYPES)})")
    return {name: _build(cls, spec[name], f"{source}.{name}") for name, cls in JOB_TYPES.items() if name in spec}


def _build(cls, values, where: str):
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: expected an object of settings, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(fields)})")
    missing = [name for name, f in fields.items() if f.default is dataclasses.MISSING and name not in values]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    return cls(**{name: _convert(fields[name], value, f"{where}.{name}") for name, value in values.items()})


def _convert(field, value, where: str):
    """The value checked against the field's annotation (a string: annotations are postponed)."""
    kind = field.type
    if value is None:
        if field.default is None:
            return None
        raise ValueError(f"{where}: may not be null")
    if "Path" in kind:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: expected a path string, got {value!r}")
        return Path(value)
    if kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: expected an integer >= 1, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise ValueError(f"{where}: expected a number in (0, 1], got {value!r}")
        return float(value)
    if kind == "tuple":
        if not isinstance(value, list) or not value or not all(isinstance(v, int | float) and v >= 0 for v in value):
            raise ValueError(f"{where}: expected a non-empty list of numbers >= 0, got {value!r}")
        return tuple(float(v) for v in value)
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {value!r}")
    return value


# ---- running them -------------------------------------------------------------------------------

def run_jobs(model_dir: str | Path, jobs: Mapping, *, model_id: str, backend: str = "auto",
             batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "auto", tokenizer_model: str | Path | None = None,
             chat_template: str | None = None, seed: int = 42, progress: bool = True) -> dict:
    """Run ``jobs`` (from :func:`parse_jobs`) with one model load; return the stats of each benchmark."""
    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    for job in jobs.values():  # every input checked before the model loads
        for path in (getattr(job, name, None) for name in ("questions", "dataset", *LOSS_SPLITS)):
            if path is not None and not path.is_file():
                raise FileNotFoundError(f"{path}: input of {type(job).__name__} not found")
    stats = {"model": str(model_dir), "model_id": model_id, "seed": seed, "benchmarks": {},
             "provenance": provenance.collect()}
    generator = None
    generating = [name for name in jobs if name != "output_loss"]
    if "output_loss" in jobs:
        if generating and select_backend(backend) == "hf":  # generation will use this model: load it once
            generator = load_generator(model_dir, backend="hf", batch_size=batch_size, precision=precision,
                                       progress=progress, tokenizer_model=tokenizer_model,
                                       chat_template=chat_template)
            model, attn, device = generator.model, generator.attn_implementation, generator.device
        else:
            from imrepro.train.scoring import load_scoring_model

            model, attn, device = load_scoring_model(model_dir, precision)  # no tokenizer: records are tokenized
        stats["benchmarks"]["output_loss"] = _timed(run_output_loss, jobs["output_loss"], model_dir, model, attn,
                                                    device)
        del model
        if generator is None:  # free the GPU for vLLM
            _free_accelerator_memory()
    if generating and generator is None:
        generator = load_generator(model_dir, backend=backend, batch_size=batch_size, precision=precision,
                                   progress=progress, tokenizer_model=tokenizer_model, chat_template=chat_template)
    for name in generating:
        before = generator.n_truncated
        stat = _timed(GENERATING_RUNNERS[name], jobs[name], generator, model_id=model_id, seed=seed)
        job = jobs[name]
        stat.update(backend=generator.backend_name, n_truncated_prompts=generator.n_truncated - before,
                    max_new_tokens=job.max_new_tokens, limit=job.limit)
        stats["benchmarks"][name] = stat
    return stats


def _timed(runner, *args, **kwargs) -> dict:
    start = time.perf_counter()
    stat = runner(*args, **kwargs)
    stat["seconds"] = round(time.perf_counter() - start, 3)
    return stat


def _free_accelerator_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _write_json(path: Path, value, indent: int = 2) -> None:
    with atomic_open(path) as out:
        json.dump(value, out, indent=indent)


def run_output_loss(job: OutputLossJob, model_dir: Path, model, attn: str, device) -> dict:
    from imrepro.data.role_record import load_role_record
    from imrepro.eval.output_loss import describe, per_example_output_loss

    if not any(getattr(job, split) for split in LOSS_SPLITS):
        raise ValueError(f"output_loss: nothing to score: give one of {', '.join(LOSS_SPLITS)}")
    details = {"run": job.run, "model": str(model_dir)}
    for split, path in ((split, getattr(job, split)) for split in LOSS_SPLITS):
        if path is None:
            details[split] = None
            continue
        record = load_role_record(path).head(job.limit)
        losses = per_example_output_loss(model, record, job.token_budget, attn, device)
        details[split] = {"dataset": path.stem, "record": str(path), **describe(losses), "ids": record.ids,
                          "losses": [None if loss != loss else float(loss) for loss in losses]}
        log.info("output loss, %s (%s): mean %s over %d examples", split, path.stem, details[split]["mean"],
                 len(losses))
    headline = details["heldout"] or details["train"] or details["reference"]
    result = BenchmarkResult("output_loss", "loss", headline["mean"],
                             "mean per-example output loss (held-out, else train, else reference)", details=details)
    result.write(job.output)
    return {f"n_{split}": details[split]["n"] for split in LOSS_SPLITS if details[split]}


def run_regen_bleu(job: RegenBleuJob, generator, **_) -> dict:
    from imrepro.data.messages import load_messages_jsonl
    from imrepro.eval.regen_bleu import bleu_scores, regeneration_pair

    examples = load_messages_jsonl(job.dataset)[:job.limit]
    if not examples:
        raise ValueError(f"{job.dataset}: no examples")
    pairs = [regeneration_pair(example) for example in examples]
    before = generator.n_truncated
    texts = generator.generate([generator.chat_prompt(messages) for messages, _ in pairs],
                               Sampling(max_new_tokens=job.max_new_tokens, temperature=0.0), desc="regeneration")
    generations = [samples[0] for samples in texts]
    references = [reference for _, reference in pairs]
    scores = bleu_scores(generations, references)
    write_jsonl(job.generations_output, (
        {"id": example.get("id"), "reference": reference, "generation": generation, "sentence_bleu": bleu}
        for example, reference, generation, bleu in zip(examples, references, generations, scores["sentence_bleu"],
                                                        strict=True)))
    result = BenchmarkResult("regen_bleu", "generation", scores["mean_sentence_bleu"], "mean sentence BLEU-4 (0-100)",
                             details={
        "corpus_bleu": scores["corpus_bleu"], "mean_sentence_bleu": scores["mean_sentence_bleu"],
        "signature": scores["signature"], "n": len(pairs), "n_empty": count_empty(texts), "limit": job.limit,
        "max_new_tokens": job.max_new_tokens, "n_truncated_prompts": generator.n_truncated - before,
        "backend": generator.backend_name, "model": str(generator.model_dir), "dataset": str(job.dataset),
    })
    result.write(job.output, indent=2)
    log.info("regeneration BLEU on %d examples: mean sentence %.2f, corpus %.2f (%d empty)", len(pairs),
             result.value, scores["corpus_bleu"], result.details["n_empty"])
    return {"n": len(pairs), "n_empty": result.details["n_empty"]}


def run_alpaca_eval(job: AlpacaEvalJob, generator, *, model_id: str, seed: int) -> dict:
    from imrepro.eval.answers import alpaca_eval_outputs

    with open(job.questions, encoding="utf-8") as handle:
        reference = json.load(handle)
    reference = reference[:job.limit] if isinstance(reference, list) else reference
    records, stats = alpaca_eval_outputs(generator, reference, model_id=model_id, max_new_tokens=job.max_new_tokens,
                                         seed=seed, source=str(job.questions))
    _write_json(job.output, records)
    return stats


def run_mt_bench(job: MtBenchJob, generator, *, model_id: str, seed: int) -> dict:
    from imrepro.eval.answers import mt_bench_answers

    questions = read_jsonl(job.questions)[:job.limit]  # FastChat question.jsonl
    records, stats = mt_bench_answers(generator, questions, model_id=model_id, max_new_tokens=job.max_new_tokens,
                                      seed=seed, temperature_policy=job.temperature_policy, source=str(job.questions))
    write_jsonl(job.output, records)
    return stats


def run_humaneval(job: HumanEvalJob, generator, *, seed: int, **_) -> dict:
    from imrepro.eval import humaneval

    problems = humaneval.load_problems()
    task_ids = list(problems)[:job.limit]
    prompts = [problems[t]["prompt"] for t in task_ids]  # no chat template, as the authors
    rows, n_empty = [], 0
    for temperature in job.temperatures:
        sampling = Sampling(max_new_tokens=job.max_new_tokens, temperature=temperature, top_p=job.top_p,
                            n=job.n_samples, stop=humaneval.STOP_SEQUENCES, seed=seed)
        completions = generator.generate(prompts, sampling, desc=f"humaneval T={temperature}")
        n_empty += count_empty(completions)
        rows += [{"task_id": t, "temperature": temperature, "completion": c}
                 for t, texts in zip(task_ids, completions, strict=True) for c in texts]
    write_jsonl(job.output, rows)
    return {"n_problems": len(task_ids), "n_samples": job.n_samples, "temperatures": list(job.temperatures),
            "top_p": job.top_p, "stop": list(humaneval.STOP_SEQUENCES), "n_empty": n_empty}


GENERATING_RUNNERS = {"regen_bleu": run_regen_bleu, "alpaca_eval": run_alpaca_eval, "mt_bench": run_mt_bench,
                      "humaneval": run_humaneval}
