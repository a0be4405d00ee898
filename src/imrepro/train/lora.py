"""LoRA and QLoRA adapters through PEFT: the method option ``lora: {r, alpha, dropout,
target_modules, modules_to_save, load_in_4bit}`` (schema defaults: r 8, alpha 16, dropout 0.05,
``all-linear``, nothing in full, no quantisation).

The trainer wraps the configured model (:func:`wrap`) after its embeddings were resized, so the
label policies, packing, NEFTune (its hook sits on the base model's embedding module, which PEFT
leaves in place) and resume see the same model interface. At the end a run directory holds

* ``adapter/``: ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT's own format), and
* the merged plain model (:func:`merged_model`), which lm-eval, generation and the judges read
  unchanged, as after full fine-tuning.

QLoRA (``load_in_4bit``) loads the frozen base in 4-bit NF4 through bitsandbytes, CUDA only; its
merged model is the adapter merged into the full-precision base read again from disk (merging into
4-bit weights would round the update away), with the trained model's embedding and output rows
(never quantised; they hold the rows added for ``<pad>``).
"""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import torch

KEYS = ("r", "alpha", "dropout", "target_modules", "modules_to_save", "load_in_4bit")
ADAPTER_DIR = "adapter"  # subfolder of the run directory


def check_spec(spec: dict) -> dict:
    """The settings' ``lora`` entry with every key (the workflow fills them from the schema)."""
    missing, unknown = sorted(set(KEYS) - set(spec)), sorted(set(spec) - set(KEYS))
    problems = [f"{what} key(s) {keys}" for what, keys in (("missing", missing), ("unknown", unknown)) if keys]
    if problems:
        raise ValueError(f"settings lora: {'; '.join(problems)} (expected {list(KEYS)}; a workflow run takes "
                         "the defaults of the schema's methods.<m>.lora)")
    return spec


def check_quantization(spec: dict, cuda: bool) -> None:
    """QLoRA needs a CUDA GPU and bitsandbytes: say which is missing before anything is loaded."""
    if not spec["load_in_4bit"]:
        return
    problems = []
    if not cuda:
        problems.append("a CUDA GPU (bitsandbytes' 4-bit layers do not train on CPU)")
    if importlib.util.find_spec("bitsandbytes") is None:
        problems.append("the bitsandbytes package, which is not installed (pip install -e '.[gpu]')")
    if problems:
        raise RuntimeError(f"lora.load_in_4bit (QLoRA) needs {' and '.join(problems)}; "
                           "set load_in_4bit: false for LoRA on full-precision weights")


def quantization_config(spec: dict, compute_dtype: torch.dtype):
    """transformers' BitsAndBytesConfig for QLoRA (NF4, double quantisation, as the QLoRA paper), or None.
    The storage dtype is the compute dtype, so DeepSpeed ZeRO-3 can shard the 4-bit weights."""
    if not spec["load_in_4bit"]:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_quant_storage=compute_dtype)


def wrap(model, spec: dict, gradient_checkpointing: bool):
    """The PEFT model: LoRA on ``target_modules``, ``modules_to_save`` trained in full, the rest frozen."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if spec["load_in_4bit"]:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    config = LoraConfig(r=spec["r"], lora_alpha=spec["alpha"], lora_dropout=spec["dropout"],
                        target_modules=spec["target_modules"], modules_to_save=spec["modules_to_save"] or None,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def is_peft(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def base_forward(model):
    """The forward whose signature says what the model accepts (PEFT's passes ``**kwargs`` on)."""
    return model.get_base_model().forward if is_peft(model) else model.forward


def parameter_counts(model) -> dict[str, int]:
    """Trainable and total parameters: PEFT's count for an adapter model (it counts 4-bit and ZeRO-3
    partitioned weights at their full size), the same sum for a plain one."""
    if is_peft(model):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        sizes = [(int(getattr(p, "ds_numel", p.numel())), p.requires_grad) for p in model.parameters()]
        trainable, total = sum(n for n, grad in sizes if grad), sum(n for n, _ in sizes)
    return {"trainable_parameters": int(trainable), "total_parameters": int(total)}


def zero3_gathered(model, accelerator):
    """Every parameter gathered on every rank under DeepSpeed ZeRO-3 (read-only: ``modifier_rank=None``,
    nothing is written back), else a no-op. PEFT's merge and save need whole tensors: saved shards
    would give an empty adapter."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None or plugin.zero_stage != 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


def save_adapter(model, directory: Path) -> Path:
    """PEFT's adapter files in ``directory/adapter``; refuses an adapter without tensors or with an
    empty one (what a save of ungathered ZeRO-3 shards writes)."""
    from safetensors import safe_open

    target = directory / ADAPTER_DIR
    model.save_pretrained(target, safe_serialization=True)
    with safe_open(target / "adapter_model.safetensors", "pt") as f:
        shapes = {name: f.get_slice(name).get_shape() for name in f.keys()}  # noqa: SIM118 (not a dict)
    empty = [name for name, shape in shapes.items() if 0 in shape or len(shape) == 0]
    if not shapes or empty:
        raise RuntimeError(f"{target}: the saved adapter is empty ({len(shapes)} tensors, empty: {empty[:3]}); "
                           "under ZeRO-3 the parameters must be gathered before saving")
    return target


def merged_model(model, settings, configure):
    """The plain model: the adapter merged into the base weights. LoRA merges in place (under ZeRO-3
    call it inside :func:`zero3_gathered`); QLoRA merges into the full-precision base
    (:func:`merge_into_full_precision_base`)."""
    if settings.lora["load_in_4bit"]:
        return merge_into_full_precision_base(model, settings.model_path, settings.lora, configure)
    return model.merge_and_unload()


def merge_into_full_precision_base(model, model_path: str, spec: dict, configure):
    """The base read again from ``model_path`` in fp32 and passed through ``configure`` (the trainer's
    resize and config step), with the trained model's embedding and output rows (never quantised, and
    the rows added for ``<pad>`` are drawn at random), then the adapter merged into it."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from imrepro.core.models import load_causal_lm

    base = configure(load_causal_lm(model_path, dtype=torch.float32)[0])
    trained = model.get_base_model()

    def original(module):  # a modules_to_save copy keeps the frozen module as original_module
        return getattr(module, "original_module", module)

    with torch.no_grad():
        base.get_input_embeddings().weight.copy_(original(trained.get_input_embeddings()).weight)
        if not base.config.tie_word_embeddings and base.get_output_embeddings() is not None:
            base.get_output_embeddings().weight.copy_(original(trained.get_output_embeddings()).weight)
    fresh = wrap(base, {**spec, "load_in_4bit": False}, gradient_checkpointing=False)
    result = set_peft_model_state_dict(fresh, get_peft_model_state_dict(model))
    if result.unexpected_keys:
        raise RuntimeError(f"adapter tensors the full-precision model has no place for: {result.unexpected_keys[:3]}")
    return fresh.merge_and_unload()
