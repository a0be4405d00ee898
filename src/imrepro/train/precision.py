"""The precision a training run computes in: fp32, or bf16 autocast over fp32 master weights.

Under ``bf16`` the weights, gradients and AdamW state stay fp32; only the forward pass runs in
bf16 (accelerate wraps the model's forward in ``torch.autocast`` and returns fp32 outputs, so
the loss is computed in fp32). ``auto`` takes bf16 only where the hardware multiplies bf16
natively: on CPU that is AVX512-BF16 or AMX; without them torch emulates bf16 matrix products,
which is far slower than fp32 (BENCHMARKS.md, "bf16 on CPU").
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def cpu_has_native_bf16() -> bool:
    """True when this CPU has AVX512-BF16 or AMX tiles (the instructions oneDNN's bf16 kernels use)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_mixed_precision(precision: str, device_type: str) -> str:
    """accelerate's ``mixed_precision`` ("bf16", "fp16" or "no") for a requested ``precision`` on
    ``device_type`` ("cpu" or "cuda"). ``fp16`` is GPU-only (accelerate refuses it on CPU): fp32 there."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        native = cpu_has_native_bf16() if device_type == "cpu" else torch.cuda.is_bf16_supported()
        return "bf16" if native else "no"
    if precision == "fp32" or (precision == "fp16" and device_type == "cpu"):
        return "no"
    return precision
