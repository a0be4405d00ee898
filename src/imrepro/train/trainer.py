"""The fine-tuning loop: one role record, one label policy, any causal LM.

Readable top to bottom (nanoGPT style): :func:`train` is one screen of phases, each a short
function below it: ``_build_accelerator``, ``_load_data`` (examples, label weights, the plan of
optimizer steps), ``_build_model`` (attention implementation, trained-position logits; a LoRA
method's PEFT wrapper, imrepro.train.lora), ``_build_optimizer`` (the trainable parameters),
``_resume``, then per step ``_optimizer_step`` (its micro-batches, packed or padded, each
``_micro_batch_loss`` numerator divided by the step's denominator: ``sequence_mean`` or
``token_global``; then ``_update``), ``_log_step``, checkpoint; finally ``_summary`` and the
atomic save (a LoRA run: its adapter and the merged plain model). Runs as one process on CPU, or
under ``accelerate launch`` (DDP or DeepSpeed ZeRO-2/3) on GPUs; the number of processes comes
from the launcher.

Resumable: every ``checkpoint_every`` optimizer steps the full state (model, optimizer,
scheduler, RNG) goes to ``scratch_dir/checkpoint-<step>`` (not a Snakemake output, so it
survives a failed job); a restarted run continues from the newest complete checkpoint and,
because the data plan and the noise are functions of (seed, step), ends with the same weights.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imrepro.core import provenance
from imrepro.core.models import load_causal_lm
from imrepro.data.role_record import RoleRecord, load_role_record
from imrepro.train import attention, lora, packing
from imrepro.train import loss as loss_lib
from imrepro.train.label_policies import label_weights
from imrepro.train.neftune import NEFTune, neftune_scale
from imrepro.train.precision import cpu_has_native_bf16, resolve_mixed_precision
from imrepro.train.schedule import equalise, micro_batches, optimizer_steps, rank_share
from imrepro.train.settings import TrainSettings

__all__ = ["TrainSettings", "TrainingData", "build_training_data", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    examples: list[packing.Example]
    n_dropped: int
    trained_share: float
    reference: list[np.ndarray] | None = None  # per example: log p_ref(x_t | x_<t), for KL
    record: RoleRecord | None = None

    @functools.cached_property
    def lengths(self) -> list[int]:
        return [len(ex.input_ids) for ex in self.examples]


def build_training_data(record: RoleRecord, labels: str, prompt_weight: float | None,
                        reference: np.ndarray | None = None, response_weight: float = 1.0) -> TrainingData:
    """Examples with their loss weights. Examples in which the ``it`` policy trains nothing (no
    assistant token left, e.g. truncated away) are dropped for every policy, so that all arms
    of a comparison train on the same examples."""
    if reference is not None and len(reference) != len(record.input_ids):
        raise ValueError(f"reference log-probs have {len(reference)} tokens, the role record "
                         f"{len(record.input_ids)}: built from another record?")
    examples, refs, dropped, trained, positions = [], [], 0, 0, 0
    for i in range(len(record)):
        ids, roles = record.example(i)
        response = label_weights("it", roles) > 0
        if not response.any():
            dropped += 1
            continue
        weights = label_weights(labels, roles, prompt_weight, response_weight)
        examples.append(packing.Example(ids.astype(np.int64), weights, response))
        if reference is not None:
            refs.append(reference[record.offsets[i] : record.offsets[i + 1]])
        trained += int((weights > 0).sum())
        positions += len(ids) - 1
    if not examples:
        raise ValueError(f"{record.metadata.get('source', 'dataset')}: no example has a trained token "
                         f"after truncation at {record.metadata.get('max_length')} tokens")
    return TrainingData(examples, dropped, trained / max(positions, 1), refs if reference is not None else None,
                        record)


def _reference_tensor(refs: list[np.ndarray], batch, packed: bool) -> torch.Tensor:
    """Reference log-probs laid out like the batch's tokens (packed [1, T] or padded [B, L])."""
    if packed:
        return torch.from_numpy(np.concatenate(refs)).unsqueeze(0)
    out = torch.zeros(batch.input_ids.shape, dtype=torch.float32)
    for row, ref in enumerate(refs):
        out[row, : len(ref)] = torch.from_numpy(ref)
    return out


def load_model(settings: TrainSettings, pad_id: int, attn_implementation: str):
    quantized = lora.quantization_config(settings.lora, _compute_dtype(settings)) if settings.lora else None
    model, attn = load_causal_lm(settings.model_path, dtype=torch.float32, attn_implementation=attn_implementation,
                                 quantization_config=quantized)
    return _configure_model(model, settings, pad_id), attn


def _compute_dtype(settings: TrainSettings) -> torch.dtype:
    """The dtype of QLoRA's 4-bit matmuls: the mixed precision of a GPU run."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.precision, torch.float32)


def _configure_model(model, settings: TrainSettings, pad_id: int):
    # num_embeddings, not weight.shape: under ZeRO-3 the weight is partitioned at load (shape 0)
    if model.get_input_embeddings().num_embeddings <= pad_id:  # the authors add <pad> and resize
        model.resize_token_embeddings(pad_id + 1)
    model.config.pad_token_id = pad_id
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.config.use_cache = False
    return model


def _latest_checkpoint(scratch: Path) -> Path | None:
    done = [p for p in scratch.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def _save_checkpoint(accelerator, scratch: Path, step: int, state: dict) -> None:
    """Complete checkpoints only: written under a temporary name, renamed when done."""
    final = scratch / f"checkpoint-{step}"
    tmp = scratch / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every rank writes its RNG state (and ZeRO shards) before the rename
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
        os.replace(tmp, final)
        for old in scratch.glob("checkpoint-*"):
            if old != final and int(old.name.split("-")[1]) < step:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _configure_deepspeed(config: dict, settings: TrainSettings, world: int) -> None:
    """Fill the DeepSpeed config's "auto" batch and clipping entries (in place). The loop plans
    its micro-batches itself and marks the last one of each optimizer step as the accumulation
    boundary, so DeepSpeed's gradient_accumulation_steps must be 1 and its batch sizes are nominal
    (they only feed DeepSpeed's sample counters)."""
    if "scheduler" in config:
        raise ValueError("the DeepSpeed config has a 'scheduler' section: remove it, the lr schedule comes from "
                         "the training settings (lr_scheduler, warmup_ratio)")
    values = {"gradient_accumulation_steps": 1, "train_micro_batch_size_per_gpu": 1, "train_batch_size": world,
              "gradient_clipping": float(settings.max_grad_norm or 0.0)}
    if "optimizer" in config:  # DeepSpeed's own optimizer: same hyper-parameters as torch AdamW would get
        values.update({"optimizer.params.betas": list(settings.adam_betas),
                       "optimizer.params.eps": settings.adam_epsilon})
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        if node.get(leaf, "auto") == "auto":
            node[leaf] = value
        elif node[leaf] != value:
            raise ValueError(f"DeepSpeed config sets {key}={node[leaf]!r}, the training settings need {value!r} "
                             f"(write \"auto\" to fill it from the settings)")


def _deepspeed_bf16(accelerator) -> bool:
    plugin = accelerator.state.deepspeed_plugin
    return bool(plugin and plugin.deepspeed_config.get("bf16", {}).get("enabled") in (True, "auto")
                and torch.cuda.is_available())


def _collate(examples: list[packing.Example], settings: TrainSettings, pad_id: int):
    if settings.packing:
        return packing.collate_packed(examples)
    return packing.collate_padded(examples, pad_id)


@dataclass
class _Run:
    """What the phases of one training run share (built once by :func:`train`)."""

    settings: TrainSettings
    accelerator: Any
    data: TrainingData
    steps: list[np.ndarray]  # example indices of every optimizer step
    pad_id: int
    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    attn: str = ""  # the attention implementation that runs
    trained_logits: bool = False  # LM head only at trained positions (logits_to_keep)
    compute_dtype: torch.dtype = torch.float32
    cpu_autocast: bool = False  # bf16 autocast of forward and loss on CPU, fp32 weights and optimizer
    noise: NEFTune | None = None
    parameters: dict | None = None  # trainable and total parameter counts


def train(settings: TrainSettings) -> dict:
    """Fine-tune ``settings.model_path`` on ``settings.record_path``; returns (and saves beside
    the model as ``train_summary.json``) the run's summary."""
    from tqdm import tqdm

    run = _load_data(settings, _build_accelerator(settings))
    _build_model(run)
    _build_optimizer(run)
    start_step, history = _resume(run)
    writer = _tensorboard(run)
    bar = tqdm(total=len(run.steps), initial=start_step, desc="train", unit="step",
               disable=not (settings.progress and run.accelerator.is_main_process))
    run.model.train()
    t_start = time.perf_counter()
    for step_index in range(start_step, len(run.steps)):
        history.append(_optimizer_step(run, step_index))
        _log_step(writer, bar, history[-1])
        done = step_index + 1
        if settings.checkpoint_every and done % settings.checkpoint_every == 0 and done < len(run.steps):
            _save_checkpoint(run.accelerator, Path(settings.scratch_dir), done, {"step": done, "history": history})
    bar.close()
    summary = _summary(run, history, start_step, time.perf_counter() - t_start)
    _save_final(run, summary)
    if writer:
        writer.close()
    return summary


def _build_accelerator(settings: TrainSettings):
    """One process, or the process group the launcher started; bf16 autocast where the settings ask
    for it (imrepro.train.precision: on CPU too, over fp32 master weights)."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs, set_seed

    loss_lib.check_normalisations(settings.loss_normalisation, settings.weight_normalisation)
    # On CPU the loop autocasts itself (_micro_batch_loss, run.cpu_autocast): accelerate's state is a
    # per-process singleton whose precision cannot change between runs (tests, benchmarks alternate).
    mixed = resolve_mixed_precision(settings.precision, "cuda") if torch.cuda.is_available() else "no"
    handlers = []
    if os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true" and not torch.cuda.is_available():
        handlers.append(InitProcessGroupKwargs(backend="gloo"))  # else accelerate counts one rank on CPU
    # The loop steps the scheduler once per optimizer step on every rank; accelerate's default
    # (step_scheduler_with_optimizer) would step it num_processes times, for rank-sharded dataloaders.
    accelerator = Accelerator(mixed_precision=mixed, step_scheduler_with_optimizer=False, kwargs_handlers=handlers)
    if accelerator.state.deepspeed_plugin is not None:
        _configure_deepspeed(accelerator.state.deepspeed_plugin.deepspeed_config, settings, accelerator.num_processes)
    set_seed(settings.seed)
    return accelerator


def _load_data(settings: TrainSettings, accelerator) -> _Run:
    """The examples with their label weights (and KL reference), and the optimizer-step plan."""
    if settings.reference_logprobs and not settings.kl_lambda:
        raise ValueError("reference_logprobs is set but kl_lambda is not: set both for KL-regularised IT, or neither")
    if settings.kl_lambda and not settings.reference_logprobs:
        raise ValueError("kl_lambda needs reference_logprobs (built by the reference_logprobs rule)")
    record = load_role_record(settings.record_path)
    pad_id = int(record.metadata.get("pad_id", record.input_ids.max() + 1))
    reference = np.load(settings.reference_logprobs) if settings.kl_lambda else None
    data = build_training_data(record, settings.labels, settings.prompt_weight, reference, settings.response_weight)
    steps = optimizer_steps(len(data.examples), settings.effective_batch_size, settings.epochs, settings.seed)
    steps = steps[: settings.max_steps] if settings.max_steps is not None else steps
    log.info("%d examples (%d dropped: no response token left after truncation), %d optimizer steps, "
             "trained share %.3f (%s)", len(data.examples), data.n_dropped, len(steps), data.trained_share,
             settings.labels)
    return _Run(settings, accelerator, data, steps, pad_id)


def _build_model(run: _Run, model=None) -> None:
    """The model with its attention implementation (imrepro.train.attention) and logits path;
    ``model``: an already built one instead of ``settings.model_path`` (benchmarks/gpu_check.py)."""
    settings = run.settings
    if settings.lora:
        lora.check_quantization(lora.check_spec(settings.lora), torch.cuda.is_available())
    attn = attention.resolve_training_attention(settings.attn_implementation, settings.packing,
                                                run.accelerator.device.type)
    if model is None:
        run.model, run.attn = load_model(settings, run.pad_id, attn)
    else:
        model.set_attn_implementation(attn)
        run.model, run.attn = _configure_model(model, settings, run.pad_id), attn
    if settings.lora:  # after the resize: the new <pad> row belongs to the frozen base
        run.model = lora.wrap(run.model, settings.lora, settings.gradient_checkpointing)
    run.parameters = lora.parameter_counts(run.model)
    window = getattr(run.model.config, "sliding_window", None)
    if settings.packing and run.attn in ("sdpa", "eager") and window and max(run.data.lengths) > window:
        raise ValueError(f"attn_implementation {run.attn} with packing: the dense block mask ignores the model's "
                         f"sliding window ({window} tokens < examples of {max(run.data.lengths)}); use auto")
    run.trained_logits = settings.trained_logits_only and loss_lib.takes_logits_to_keep(lora.base_forward(run.model))
    log.info("attention %s, logits at %s positions; %d of %d parameters trained", run.attn,
             "trained" if run.trained_logits else "all", run.parameters["trainable_parameters"],
             run.parameters["total_parameters"])


def _build_optimizer(run: _Run) -> None:
    """AdamW (or DeepSpeed's configured optimizer) and the lr schedule; accelerate.prepare."""
    from accelerate.utils import DummyOptim, DummyScheduler
    from transformers import get_scheduler

    settings, accelerator = run.settings, run.accelerator

    # No weight decay on biases and norms (as open-instruct). By name, not p.ndim: ZeRO-3 partitions
    # parameters at load, leaving every local shape 1-D.
    def decays(name: str) -> bool:
        return not (name.endswith("bias") or "norm" in name)

    named = [(n, p) for n, p in run.model.named_parameters() if p.requires_grad]  # LoRA freezes the base
    groups = [{"params": [p for n, p in named if decays(n)], "weight_decay": settings.weight_decay},
              {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0}]
    # LoRA trains no norm: DeepSpeed drops an empty group, the lr schedule built on ours would not
    groups = [g for g in groups if g["params"]]
    warmup = int(len(run.steps) * settings.warmup_ratio)

    def make_scheduler(opt):
        return get_scheduler(settings.lr_scheduler, opt, num_warmup_steps=warmup, num_training_steps=len(run.steps))

    plugin = accelerator.state.deepspeed_plugin
    if plugin and "optimizer" in plugin.deepspeed_config:  # DeepSpeed builds it, then owns our scheduler
        optimizer = DummyOptim(groups, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        scheduler = DummyScheduler(optimizer, lr_scheduler_callable=make_scheduler)
    else:  # also with optimizer offload: accelerate swaps this for DeepSpeed's CPU Adam, same param groups
        # fused: one kernel for all parameters, the same update (CPU: 4x faster than the per-tensor loop
        # on Gemma-3-270M, BENCHMARKS.md)
        optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate, betas=tuple(settings.adam_betas),
                                      eps=settings.adam_epsilon, fused=True)
        scheduler = make_scheduler(optimizer)
    run.model, run.optimizer, run.scheduler = accelerator.prepare(run.model, optimizer, scheduler)
    unwrapped = accelerator.unwrap_model(run.model)
    run.noise = NEFTune(unwrapped, settings.neftune_alpha) if settings.neftune_alpha else None
    run.cpu_autocast = (accelerator.device.type == "cpu"
                        and resolve_mixed_precision(settings.precision, "cpu") == "bf16")
    bf16 = accelerator.mixed_precision == "bf16" or _deepspeed_bf16(accelerator) or run.cpu_autocast
    run.compute_dtype = torch.bfloat16 if bf16 else torch.float32


def _resume(run: _Run) -> tuple[int, list[dict]]:
    """(first step to run, history so far): from the newest complete checkpoint, if any."""
    scratch = Path(run.settings.scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    checkpoint = _latest_checkpoint(scratch)
    if checkpoint is None:
        return 0, []
    run.accelerator.load_state(str(checkpoint))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    log.info("resuming from %s (optimizer step %d of %d)", checkpoint, state["step"], len(run.steps))
    return state["step"], state["history"]


def _optimizer_step(run: _Run, step_index: int) -> dict:
    """Every micro-batch of this rank's share of one optimizer step, then the update; the log entry."""
    settings, accelerator = run.settings, run.accelerator
    rank, world = accelerator.process_index, accelerator.num_processes
    step = run.steps[step_index]
    denominator = loss_lib.step_denominator([run.data.examples[i].weights for i in step],
                                            settings.loss_normalisation, settings.weight_normalisation)
    lengths = run.data.lengths
    per_rank = [micro_batches(rank_share(step, r, world), lengths, settings.packing, settings.token_budget,
                              settings.per_device_batch_size) for r in range(world)]
    mine = equalise(per_rank)[rank]  # None = a zero-weight pass, so every rank runs as many collectives
    generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + step_index)
    lr = run.scheduler.get_last_lr()[0]  # the rate this step uses
    t0 = time.perf_counter()
    sums = torch.zeros(5, dtype=torch.float64)  # loss, prompt nll, prompt n, response nll, response n
    tokens = 0
    for j, indices in enumerate(mine):
        last = j == len(mine) - 1
        # Private but unavoidable: accelerate's public accumulate() needs a fixed number of
        # micro-batches per step, ours varies with the packs. DeepSpeed steps on the last one.
        accelerator.gradient_state._set_sync_gradients(last)
        with contextlib.nullcontext() if last else accelerator.no_sync(run.model):
            numerator, nll, batch = _micro_batch_loss(run, step[:1] if indices is None else indices, generator)
            # DDP/ZeRO average gradients over ranks; the denominator already covers all ranks
            accelerator.backward(numerator * (world / denominator) * (0.0 if indices is None else 1.0))
        if indices is not None:
            parts = loss_lib.loss_parts(nll.detach(), batch.weights, batch.response)
            sums += torch.tensor([numerator.item() / denominator, *parts], dtype=torch.float64)
            tokens += int(batch.n_tokens)
    grad_norm = _update(run)
    sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
    tokens = int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), reduction="sum"))
    return {"step": step_index + 1, "loss": float(sums[0]),
            "loss_prompt": float(sums[1] / sums[2]) if sums[2] else None,
            "loss_response": float(sums[3] / sums[4]) if sums[4] else None,
            "lr": lr, "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "tokens": tokens, "tokens_per_s": tokens / (time.perf_counter() - t0)}


def _micro_batch_loss(run: _Run, members, generator: torch.Generator):
    """(loss numerator, per-token nll, batch) of one micro-batch of examples ``members``."""
    settings = run.settings
    batch = _collate([run.data.examples[i] for i in members], settings, run.pad_id).to(run.accelerator.device)
    inputs = packing.model_inputs(batch, run.attn, dtype=run.compute_dtype)
    noise = (run.noise.active(neftune_scale(batch, settings.neftune_alpha, run.noise.embedding.embedding_dim),
                              generator) if run.noise else contextlib.nullcontext())
    with noise, torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.cpu_autocast):
        if run.trained_logits:
            keep = loss_lib.trained_positions(batch.weights)
            nll = loss_lib.token_nll_at(run.model(**inputs, logits_to_keep=keep).logits, batch.input_ids, keep)
        else:
            nll = loss_lib.token_nll(run.model(**inputs).logits, batch.input_ids)
    objective = nll
    if run.data.reference is not None:
        # The authors' KL term (finetune_kl.py): the target-token estimate
        # log p(x_t) - log p_ref(x_t) on the trained tokens, weighted by kl_lambda.
        refs = [run.data.reference[i] for i in members]
        objective = nll + settings.kl_lambda * (-nll - _reference_tensor(refs, batch, settings.packing).to(nll.device))
    index = batch.example_index if settings.packing else None
    numerator = loss_lib.loss_numerator(objective, batch.weights, index, settings.loss_normalisation,
                                        settings.weight_normalisation)
    return numerator, nll, batch


def _update(run: _Run) -> torch.Tensor | None:
    """Clip, step the optimizer and the schedule; the gradient norm before clipping."""
    grad_norm = None
    if run.settings.max_grad_norm:
        # under DeepSpeed the engine has clipped and stepped in the last backward (config
        # gradient_clipping); this returns the norm it measured before clipping
        grad_norm = run.accelerator.clip_grad_norm_(run.model.parameters(), run.settings.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return grad_norm


def _tensorboard(run: _Run):
    if not (run.accelerator.is_main_process and run.settings.log_dir):
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(run.settings.log_dir)


def _log_step(writer, bar, entry: dict) -> None:
    if writer:
        for key in ("loss", "loss_prompt", "loss_response", "lr", "grad_norm", "tokens_per_s"):
            if entry[key] is not None:
                writer.add_scalar(f"train/{key}", entry[key], entry["step"])
    bar.set_postfix(loss=f"{entry['loss']:.4f}", tok_s=f"{entry['tokens_per_s']:.0f}")
    bar.update(1)


def _summary(run: _Run, history: list[dict], start_step: int, wall: float) -> dict:
    settings = run.settings
    return {
        **settings.run_info,
        "labels": settings.labels,
        "prompt_weight": settings.prompt_weight,
        "response_weight": settings.response_weight,
        "weight_normalisation": settings.weight_normalisation,
        "seed": settings.seed,
        "learning_rate": settings.learning_rate,
        "neftune_alpha": settings.neftune_alpha,
        "kl_lambda": settings.kl_lambda,
        "n_examples": len(run.data.examples),
        "n_dropped_no_response_token": run.data.n_dropped,
        "trained_share": run.data.trained_share,
        "optimizer_steps": len(run.steps),
        "resumed_from_step": start_step,
        "world_size": run.accelerator.num_processes,
        "attn_implementation": run.attn,
        "logits_positions": "trained" if run.trained_logits else "all",
        **run.parameters,
        "adapter": lora.ADAPTER_DIR if settings.lora else None,
        "precision": {"requested": settings.precision, "compute_dtype": str(run.compute_dtype).removeprefix("torch."),
                      "device": run.accelerator.device.type, "cpu_native_bf16": cpu_has_native_bf16()},
        "final_loss": history[-1]["loss"] if history else None,
        "mean_tokens_per_s": _tokens_per_second(history[start_step:]),
        "wall_seconds": wall,
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("run_info",)},
        "history": history,
        "provenance": provenance.collect(),
    }

def _tokens_per_second(history: list[dict]) -> float | None:
    """Total tokens over total step time (not a mean of per-step rates)."""
    seconds = sum(h["tokens"] / h["tokens_per_s"] for h in history if h["tokens_per_s"])
    return sum(h["tokens"] for h in history) / seconds if seconds else None


def _save_final(run: _Run, summary: dict) -> None:
    """Write the model directory atomically (temporary sibling, then rename), then drop the
    scratch checkpoints: an interrupted save never leaves a half-written model. A LoRA run writes
    its adapter (``adapter/``) and the merged plain model."""
    accelerator, settings = run.accelerator, run.settings
    out = Path(settings.output_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    unwrapped = accelerator.unwrap_model(run.model)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    if settings.lora:
        with lora.zero3_gathered(unwrapped, accelerator):  # every rank joins the gather
            if accelerator.is_main_process:
                lora.save_adapter(unwrapped, tmp)
                configure = functools.partial(_configure_model, settings=settings, pad_id=run.pad_id)
                lora.merged_model(unwrapped, settings, configure).save_pretrained(tmp, safe_serialization=True)
    else:
        state_dict = accelerator.get_state_dict(run.model)
        if accelerator.is_main_process:
            unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
    if accelerator.is_main_process:
        save_tokenizer(run.data.record.metadata, tmp)
        (tmp / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        shutil.rmtree(settings.scratch_dir, ignore_errors=True)
    accelerator.wait_for_everyone()


def save_tokenizer(metadata: dict, directory: Path) -> None:
    """Store a Hugging Face tokenizer next to the weights (with the ``<pad>`` token added as the
    authors did, and the chat template the records were rendered in), so evaluation tools can load the
    model directory on its own."""
    from transformers import AutoTokenizer, LlamaTokenizer

    if metadata.get("tokenizer_backend") == "sentencepiece":
        staging = directory / ".tokenizer_src"
        staging.mkdir(exist_ok=True)
        shutil.copy(metadata["tokenizer_path"], staging / "tokenizer.model")
        # transformers 5 builds it without BOS by default; Llama-2's own tokenizer (and our training) adds it
        tokenizer = LlamaTokenizer.from_pretrained(staging, add_bos_token=True)
        shutil.rmtree(staging)
    else:
        tokenizer = AutoTokenizer.from_pretrained(metadata["tokenizer_path"],
                                                  revision=metadata.get("tokenizer_revision"))
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
    if metadata.get("chat_template_text"):  # records built in a chat template (absent in older records)
        tokenizer.chat_template = metadata["chat_template_text"]  # the model is served as it was trained
    tokenizer.save_pretrained(directory)
