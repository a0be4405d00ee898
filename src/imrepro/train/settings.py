"""Training settings: one dataclass, one line of documentation per field (TRL ``SFTConfig`` style).

Torch-free, so the Snakemake rules can import it: :data:`CONFIG_KEYS` is the list of fields a
workflow config's ``training:`` section may set (the others come from the run: paths, method,
epochs); ``rules/common.smk`` derives the job's settings from it rather than from a copy.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

DEFAULT_TOKEN_BUDGET = 8192  # tokens per packed micro-batch (training, scoring); the schema's default too


def _doc(help: str, default=None, *, config: bool = False, factory=MISSING):
    """A dataclass field with its documentation (``metadata["help"]``); ``config`` marks the
    fields that the workflow's ``training:`` section sets; ``default=MISSING``: required."""
    return field(default=default if factory is MISSING else MISSING, default_factory=factory,
                 metadata={"help": help, "config": config})


@dataclass
class TrainSettings:
    # --- inputs and outputs (set per run by the workflow)
    model_path: str = _doc("base model directory (config.json + weights)", MISSING)
    record_path: str = _doc("role record (.parquet) of the training set", MISSING)
    output_dir: str = _doc("final model directory; written atomically at the end", MISSING)
    scratch_dir: str = _doc("resumable checkpoints (not a Snakemake output)", MISSING)
    # --- the method
    labels: str = _doc("label policy: it, im, im_authors or weighted", "it")
    prompt_weight: float | None = _doc("lambda_p: prompt-token weight of the weighted policy ((0, 1) = it, "
                                       "(1, 1) = im)")
    response_weight: float = _doc("lambda_r: response-token weight of the weighted policy (others: 1)", 1.0)
    # sum reproduces this code before lambda_r, LLaMA-Factory's loss_weight and (for lambda_r = 1, which is all
    # it sweeps) the PLW paper's setting as far as it is stated; count reproduces WIT (Chatterjee et al. 2025)
    # and TRL's open WIT proposal. Both divide within each example under loss_normalisation sequence_mean,
    # over the whole optimizer step under token_global; packing changes neither (imrepro.train.loss).
    weight_normalisation: str = _doc("what a weighted loss divides by: sum (of the weights) or count (of the "
                                     "tokens with a non-zero weight); equal for it/im/im_authors", "sum")
    neftune_alpha: float | None = _doc("NEFTune noise alpha; None = no noise")
    kl_lambda: float | None = _doc("weight of the authors' KL term; None = no KL")
    reference_logprobs: str | None = _doc("base-model token log-probs (.npy) for the KL term")
    lora: dict | None = _doc("LoRA adapter (imrepro.train.lora): r, alpha, dropout, target_modules, "
                             "modules_to_save, load_in_4bit; None = every weight is trained")
    # --- optimisation (the paper's hyper-parameters by default)
    epochs: float = _doc("passes over the data (fractional allowed)", 2)
    learning_rate: float = _doc("peak AdamW learning rate", 2e-5, config=True)
    lr_scheduler: str = _doc("transformers scheduler name: linear, cosine or constant", "linear", config=True)
    warmup_ratio: float = _doc("share of optimizer steps spent warming up", 0.03, config=True)
    weight_decay: float = _doc("AdamW weight decay (none on biases and norms)", 0.0, config=True)
    adam_betas: tuple[float, float] = _doc("AdamW betas: the paper's (0.9, 0.98); torch's (0.9, 0.999)",
                                           (0.9, 0.98), config=True)
    adam_epsilon: float = _doc("AdamW epsilon: the paper's 1e-6; torch's 1e-8", 1e-6, config=True)
    max_grad_norm: float | None = _doc("gradient clipping norm; None = no clipping", 1.0, config=True)
    effective_batch_size: int = _doc("examples per optimizer step, over all ranks", 128, config=True)
    loss_normalisation: str = _doc("sequence_mean (the authors: examples weigh equally) or token_global",
                                   "sequence_mean", config=True)
    seed: int = _doc("seed of the data order, the initialisation of new rows and the NEFTune noise", 42,
                     config=True)
    max_steps: int | None = _doc("stop after this many optimizer steps (benchmarks, tests)")
    # --- micro-batching and speed (the same objective whatever is chosen)
    packing: bool = _doc("padding-free packs of whole examples (else right-padded rows)", True, config=True)
    token_budget: int = _doc("tokens per packed micro-batch", DEFAULT_TOKEN_BUDGET, config=True)
    per_device_batch_size: int = _doc("examples per padded micro-batch (packing: false)", 1, config=True)
    precision: str = _doc("auto, bf16, fp16 or fp32: bf16/fp16 autocast over fp32 weights (fp16 GPU only); "
                          "auto: bf16 where the GPU or CPU multiplies it natively (imrepro.train.precision)",
                          "bf16", config=True)
    attn_implementation: str = _doc("auto, flash_attention_2, flex_attention, sdpa_varlen, sdpa or eager "
                                    "(auto: the fastest exact one available, imrepro.train.attention)",
                                    "auto", config=True)
    trained_logits_only: bool = _doc("compute the LM head only at positions whose label is trained",
                                     True, config=True)
    gradient_checkpointing: bool = _doc("recompute activations in the backward pass (less memory)", False,
                                        config=True)
    # --- bookkeeping
    checkpoint_every: int = _doc("optimizer steps between checkpoints; 0 = none", 50, config=True)
    log_dir: str | None = _doc("TensorBoard directory; None = no TensorBoard")
    progress: bool = _doc("show a progress bar", True)
    run_info: dict = _doc("run facts copied into train_summary.json (run id, model, ...)", factory=dict)

CONFIG_KEYS = tuple(f.name for f in fields(TrainSettings) if f.metadata["config"])
FIELD_HELP = {f.name: f.metadata["help"] for f in fields(TrainSettings)}
