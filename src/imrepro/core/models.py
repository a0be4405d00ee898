"""One way to load a causal LM for every stage (training, scoring, generation, lm-eval, judge).

The attention implementation is chosen once here: FlashAttention-2 when it is installed and a
GPU is present, else PyTorch SDPA (transformers' eager path only when asked for).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def check_model_dir(model_dir: str | os.PathLike) -> Path:
    """``model_dir`` as a Path; FileNotFoundError naming it unless it holds a ``config.json``."""
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a model directory (no config.json)")
    return path


def resolve_attn_implementation(requested: str = "auto") -> str:
    """``requested`` unless it is ``auto``: then flash_attention_2 (CUDA + flash-attn) or sdpa."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        with contextlib.suppress(ImportError):
            import flash_attn  # noqa: F401
            return "flash_attention_2"
    return "sdpa"


def load_causal_lm(model_dir: str | os.PathLike, *, dtype=None, attn_implementation: str = "auto",
                   device: str | None = None, quantization_config=None):
    """``(model, attn_implementation)``: ``AutoModelForCausalLM`` from a model directory.

    ``dtype``: a torch dtype (default fp32); ``device``: moved there when given (None keeps the
    model where transformers put it, as DeepSpeed ZeRO-3 needs); ``quantization_config``: e.g.
    QLoRA's 4-bit one (imrepro.train.lora).
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = check_model_dir(model_dir)
    attn = resolve_attn_implementation(attn_implementation)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, attn_implementation=attn,
                                                 quantization_config=quantization_config)
    if device is not None:
        model = model.to(device)
    return model, attn
