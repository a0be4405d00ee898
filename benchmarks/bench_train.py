"""Training throughput: our packed trainer versus the authors' batch-size-1 regime, in one process.

    python benchmarks/bench_train.py --threads 1 --token-budget 1024 2048   # CPU, 19.5M-param Llama
    python benchmarks/bench_train.py --device cuda --model-size 1b          # GPU only (bf16, see below)

Both contenders are the real trainer, ``imrepro.train.trainer.train()``, on the same model and the same
role record (the first ``--examples`` examples of the Alpagasus Dolly 3k slice, truncated at
``--max-length`` tokens, Llama-2 tokenizer), with the same seed, so they run the same optimizer
steps on the same examples:

  * packed<B>: ``packing=True`` - padding-free packs of whole examples up to B tokens (one
    contender per ``--token-budget`` value), block-diagonal attention (FlashAttention-2 varlen
    when installed, else SDPA with a dense T x T additive mask);
  * bs1: ``packing=False, per_device_batch_size=1`` - one example per forward/backward and
    gradient accumulation up to the effective batch, as the authors trained (no padding at all).

After one warm-up run of each, ``--rounds`` interleaved rounds each run ``--steps`` optimizer
steps of every contender from the same base model. Throughput is non-padding tokens per second
of optimizer-step time, read from the summary that ``train()`` returns (each history entry holds
the step's tokens and tokens/s, so step time = tokens / tokens_per_s); model loading and the final
save are outside the steps and not counted. Printed: every round with its ratio to that round's
bs1 run, then per contender the best and median tokens/s, best / best-of-bs1, and the median of
the per-round ratios. On a shared machine prefer ``--threads 1``: with several intra-op threads,
other load stalls every op until its slowest thread is scheduled, which penalises bs1's many
small ops far more than the packed path's few large ones and inflates the ratio.

GPU only (``--device cuda``; cannot run on the CPU CI machine): ``--model-size 1b`` is a ~1.1B
Llama (TinyLlama-1.1B shape: hidden 2048, 22 layers, 32 heads, 4 KV heads), ``precision=bf16``
(fp32 master weights, bf16 autocast via accelerate), FlashAttention-2 if ``flash_attn`` is
installed (the trainer's ``attn_implementation="auto"``), and the peak GPU memory of each run
(``torch.cuda.max_memory_allocated``) is printed as well.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

DATA = REPO / "resources" / "data" / "alpagasus_3k_dolly.jsonl"
TOKENIZER = REPO / "resources" / "tokenizers" / "llama2" / "tokenizer.model"
MODEL_SIZES = {
    # CPU default: big enough that matrix products, not Python, dominate a step.
    "small": {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
              "num_attention_heads": 4, "num_key_value_heads": 4},
    # GPU only: TinyLlama-1.1B shape.
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
           "num_attention_heads": 32, "num_key_value_heads": 4},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model-size", choices=sorted(MODEL_SIZES), default=None,
                        help="default: small on cpu, 1b on cuda")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--effective-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1, help="optimizer steps per measured run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--token-budget", type=int, nargs="+", default=None,
                        help="packed contender(s), one per budget; default: 2048 on cpu, 8192 on cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--labels", default="it")
    args = parser.parse_args()
    args.model_size = args.model_size or ("1b" if args.device == "cuda" else "small")
    args.token_budget = args.token_budget or [8192 if args.device == "cuda" else 2048]
    return args


def build_inputs(args, workdir: Path) -> tuple[Path, Path, int]:
    """The role record of the slice and a randomly initialised Llama (seed 0) with vocab 32001."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from imrepro.data.messages import load_messages_jsonl
    from imrepro.data.role_record import build_role_record, save_role_record
    from imrepro.data.token_backends import SentencePieceBackend

    backend = SentencePieceBackend(TOKENIZER)
    examples = load_messages_jsonl(DATA)[: args.examples]
    record = build_role_record(examples, backend, args.max_length, progress=False, metadata={
        "source": f"{DATA.name}[:{args.examples}]", "tokenizer_backend": "sentencepiece",
        "tokenizer_path": str(TOKENIZER), "bos_id": backend.bos_id, "eos_id": backend.eos_id,
        "pad_id": backend.pad_id})
    record_path = workdir / "record.parquet"
    save_role_record(record, record_path)

    config = LlamaConfig(vocab_size=backend.vocab_size + 1, bos_token_id=backend.bos_id,
                         eos_token_id=backend.eos_id, pad_token_id=backend.pad_id,
                         max_position_embeddings=4096, tie_word_embeddings=False,
                         **MODEL_SIZES[args.model_size])
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    n_params = model.num_parameters()
    model_path = workdir / "model"
    model.save_pretrained(model_path, safe_serialization=True)
    del model
    return record_path, model_path, n_params


def run_once(args, contender: str, budget: int | None, record_path: Path, model_path: Path, workdir: Path,
             steps: int) -> dict:
    """One ``train()`` call; returns tokens, step seconds and (GPU) peak memory."""
    import torch

    from imrepro.train.trainer import TrainSettings, train

    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    settings = TrainSettings(
        model_path=str(model_path), record_path=str(record_path),
        output_dir=str(workdir / f"out_{contender}"), scratch_dir=str(workdir / f"scratch_{contender}"),
        labels=args.labels, epochs=1, learning_rate=2e-5, warmup_ratio=0.0,
        effective_batch_size=args.effective_batch, max_steps=steps, checkpoint_every=0,
        packing=budget is not None, token_budget=budget or 8192, per_device_batch_size=1,
        precision="bf16" if cuda else "fp32", progress=False, seed=42)
    summary = train(settings)
    history = summary["history"]
    tokens = sum(h["tokens"] for h in history)
    seconds = sum(h["tokens"] / h["tokens_per_s"] for h in history)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    shutil.rmtree(settings.output_dir, ignore_errors=True)
    return {"tokens": tokens, "seconds": seconds, "peak_gib": peak, "attn": summary["attn_implementation"]}


def main() -> None:
    args = parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the trainer uses whatever accelerate finds
    import logging

    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device (this option is for GPU machines only)")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.WARNING)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    workdir = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        record_path, model_path, n_params = build_inputs(args, workdir)
        from imrepro.data.role_record import load_role_record
        record = load_role_record(record_path)
        device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
        shape = MODEL_SIZES[args.model_size]
        print(f"device: {device}  model: llama {args.model_size} ({n_params / 1e6:.1f}M parameters: hidden "
              f"{shape['hidden_size']}, {shape['num_hidden_layers']} layers, vocab 32001)")
        print(f"data: {record.metadata['source']}, max length {args.max_length}, {record.metadata['n_tokens']} "
              f"tokens (mean {record.metadata['n_tokens'] / len(record):.0f}/example)")
        print(f"per run: {args.steps} optimizer step(s) of {args.effective_batch} examples, labels {args.labels}; "
              f"{args.rounds} interleaved rounds after 1 warm-up run each")

        contenders = {"bs1": None, **{f"packed{b}": b for b in args.token_budget}}
        for name, budget in contenders.items():  # warm-up: first-call allocations, kernel choice, imports
            run_once(args, name, budget, record_path, model_path, workdir, 1)
        results: dict[str, list[dict]] = {name: [] for name in contenders}
        memory = "  peak GiB" if args.device == "cuda" else ""
        print(f"{'round':<7}{'contender':<12}{'tokens':>8}{'step s':>9}{'tokens/s':>11}{'vs bs1':>8}{memory}")
        for r in range(args.rounds):
            for name, budget in contenders.items():
                res = run_once(args, name, budget, record_path, model_path, workdir, args.steps)
                results[name].append(res)
                rate = res["tokens"] / res["seconds"]
                base = results["bs1"][r]["tokens"] / results["bs1"][r]["seconds"]
                extra = f"{res['peak_gib']:>10.2f}" if res["peak_gib"] is not None else ""
                print(f"{r + 1:<7}{name:<12}{res['tokens']:>8}{res['seconds']:>9.2f}{rate:>11,.0f}"
                      f"{rate / base:>7.2f}x{extra}", flush=True)

        def rates(name):
            return [x["tokens"] / x["seconds"] for x in results[name]]

        print(f"{'summary':<19}{'best tok/s':>11}{'median tok/s':>14}{'best/best':>11}{'median ratio':>14}  attention")
        for name in contenders:
            ratios = [a / b for a, b in zip(rates(name), rates("bs1"), strict=True)]
            print(f"{name:<19}{max(rates(name)):>11,.0f}{statistics.median(rates(name)):>14,.0f}"
                  f"{max(rates(name)) / max(rates('bs1')):>10.2f}x{statistics.median(ratios):>13.2f}x  "
                  f"{results[name][0]['attn']}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"wall {time.perf_counter() - t0:.0f} s")
