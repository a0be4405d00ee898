"""``offline: true``: the switches that keep the Hugging Face libraries (hub, datasets, transformers, evaluate)
from opening connections, set once in the workflow's process so that every job inherits them.

Code that would fetch from the hub otherwise asks :func:`is_offline` and skips at once, with the reason.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",          # huggingface_hub: no request; hf_hub_download raises at once
    "HF_DATASETS_OFFLINE": "1",     # datasets: no hub/script lookups (lm-eval, alpaca-eval)
    "TRANSFORMERS_OFFLINE": "1",    # transformers: local files only
    "HF_EVALUATE_OFFLINE": "1",     # evaluate (some lm-eval metrics): no metric-script download
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}


def go_offline(environ: dict | None = None) -> None:
    """Set every switch of :data:`OFFLINE_ENV` in ``environ`` (default ``os.environ``)."""
    (os.environ if environ is None else environ).update(OFFLINE_ENV)


def is_offline() -> bool:
    """True when the hub is switched off (``HF_HUB_OFFLINE`` set to a true value)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
