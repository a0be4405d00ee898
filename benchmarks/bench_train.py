"""Training throughput: the fast paths of our trainer versus the authors' batch-size-1 regime, side by side.

    python benchmarks/bench_train.py --threads 1 --token-budget 1024 2048     # CPU, 19.5M-param Llama
    python benchmarks/bench_train.py --device cuda --model-size 1b           # GPU (bf16), budget 8192

Every contender is the real trainer, ``imrepro.train.trainer.train()``, on the same model and the same
role record (the first ``--examples`` examples of the Alpagasus Dolly 3k slice, truncated at
``--max-length`` tokens, Llama-2 tokenizer), with the same seed, so all run the same optimizer steps
on the same examples and differ only in layout, attention and logits:

  * ``bs1``: ``packing=False, per_device_batch_size=1`` - one example per forward, gradient
    accumulation, logits at every position: the authors' regime and the baseline of every ratio;
  * ``padded<N>``: right-padded rows of N examples (``--padded``);
  * ``dense<B>``: packs of up to B tokens, SDPA with the dense T x T block-diagonal mask;
  * ``varlen<B>``: packs, ``sdpa_varlen`` (one causal SDPA per example: imrepro.train.attention);
  * ``flex<B>`` (CUDA) and ``fa2_<B>`` (CUDA with flash-attn): FlexAttention with a document
    BlockMask, FlashAttention-2 varlen;
  * suffix `` tl``: the same with ``trained_logits_only`` (LM head only where a label is trained).

After one warm-up run of each, ``--rounds`` interleaved rounds each run ``--steps`` optimizer steps of
every contender. Throughput = non-padding tokens per second of optimizer-step time (from the summary
``train()`` returns); model loading and saving are not counted. Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` of each run; on CPU the peak RSS growth of one extra run of each
contender in a fresh process (VmHWM after the run minus VmRSS before it: model copy, activations,
gradients, optimizer state; ``--memory-only`` runs just these). Printed: each round (ratio to that
round's bs1), then per contender best and median tokens/s, the median per-round ratio, peak memory
and the attention that ran. On a shared machine use
``--threads 1`` (see BENCHMARKS.md) and keep runs short.

    python benchmarks/bench_train.py --threads 1 --token-budget 1024 --profile bs1 dense1024 varlen1024 "varlen1024 tl"

prints, instead, the share of self CPU time per op group (matmul, attention, cross-entropy,
optimizer, other) of one run of each named contender (torch.profiler).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
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
    # the demo's model (profiles/demo: demo_llama), for the cost plan's CPU throughput entry.
    "demo": {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4},
    # benchmarks/gpu_check.py --tiny: seconds on CPU.
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2},
    # GPU only: TinyLlama-1.1B shape.
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
           "num_attention_heads": 32, "num_key_value_heads": 4},
}


def parse_args(argv=None) -> argparse.Namespace:
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
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="a prepared model directory (weights + tokenizer, e.g. prepare_model.py --package of "
                             "the study's Gemma) instead of a random Llama; its tokenizer builds the record")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16", "auto"], default=None,
                        help="contenders: these precisions, each packed (--token-budget) with the default fast "
                             "paths, instead of the layout contenders; the first is the ratios' baseline")
    parser.add_argument("--padded", type=int, nargs="*", default=[8], help="padded contender(s): rows per batch")
    parser.add_argument("--cpu-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="measure CPU peak memory (one extra run per contender in a fresh process)")
    parser.add_argument("--profile", nargs="+", metavar="CONTENDER",
                        help="instead of the benchmark: torch.profiler op-group shares of these contenders")
    parser.add_argument("--memory-only", action="store_true", help="CPU: only the peak-memory runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one run in a fresh process (CPU memory)
    args = parser.parse_args(argv)
    args.model_size = args.model_size or ("1b" if args.device == "cuda" else "small")
    args.token_budget = args.token_budget or [8192 if args.device == "cuda" else 2048]
    return args


def build_inputs(args, workdir: Path, with_model: bool = True) -> tuple[Path, Path | None, int | None]:
    """The role record of the slice and a randomly initialised Llama (seed 0) with vocab 32001,
    or ``--model-dir`` and a record built with its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from imrepro.data.messages import load_messages_jsonl
    from imrepro.data.role_record import build_role_record, save_role_record
    from imrepro.data.token_backends import HFBackend, SentencePieceBackend

    examples = load_messages_jsonl(DATA)[: args.examples]
    if args.model_dir:
        from transformers import AutoConfig

        record = build_role_record(examples, HFBackend(str(args.model_dir)), args.max_length, progress=False,
                                   metadata={"source": f"{DATA.name}[:{args.examples}]", "tokenizer_backend": "hf",
                                             "tokenizer_path": str(args.model_dir)})
        record_path = workdir / "record.parquet"
        save_role_record(record, record_path)
        config = AutoConfig.from_pretrained(args.model_dir)
        return record_path, args.model_dir, getattr(config, "text_config", config)
    backend = SentencePieceBackend(TOKENIZER)
    record = build_role_record(examples, backend, args.max_length, progress=False, metadata={
        "source": f"{DATA.name}[:{args.examples}]", "tokenizer_backend": "sentencepiece",
        "tokenizer_path": str(TOKENIZER), "bos_id": backend.bos_id, "eos_id": backend.eos_id,
        "pad_id": backend.pad_id})
    record_path = workdir / "record.parquet"
    save_role_record(record, record_path)
    if not with_model:
        return record_path, None, None

    config = LlamaConfig(vocab_size=backend.vocab_size + 1, bos_token_id=backend.bos_id,
                         eos_token_id=backend.eos_id, pad_token_id=backend.pad_id,
                         max_position_embeddings=4096, tie_word_embeddings=False,
                         **MODEL_SIZES[args.model_size])
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model_path = workdir / "model"
    model.save_pretrained(model_path, safe_serialization=True)
    del model
    return record_path, model_path, config


def contenders(args) -> dict[str, dict]:
    """Name -> trainer settings that differ from the shared ones."""
    if args.precisions:
        budget = args.token_budget[0]
        return {p: {"packing": True, "token_budget": budget, "precision": p} for p in args.precisions}
    out = {"bs1": {"packing": False, "per_device_batch_size": 1, "attn_implementation": "sdpa"}}
    for n in args.padded:
        out[f"padded{n}"] = {"packing": False, "per_device_batch_size": n, "attn_implementation": "sdpa"}
    attns = {"dense": "sdpa", "varlen": "sdpa_varlen"}
    if args.device == "cuda":
        attns["flex"] = "flex_attention"
        try:
            import flash_attn  # noqa: F401
            attns["fa2_"] = "flash_attention_2"
        except ImportError:
            pass
    for budget in args.token_budget:
        for prefix, attn in attns.items():
            out[f"{prefix}{budget}"] = {"packing": True, "token_budget": budget, "attn_implementation": attn}
    return {**{k: {**v, "trained_logits_only": False} for k, v in out.items()},
            **{f"{k} tl": {**v, "trained_logits_only": True} for k, v in out.items()}}


def run_once(args, name: str, overrides: dict, record_path: Path, model_path: Path, workdir: Path,
             steps: int) -> dict:
    """One ``train()`` call; returns tokens, step seconds, (GPU) peak memory and the attention used."""
    import torch

    from imrepro.train.settings import TrainSettings
    from imrepro.train.trainer import train

    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    tag = name.replace(" ", "_")
    settings = TrainSettings(**{
        "model_path": str(model_path), "record_path": str(record_path),
        "output_dir": str(workdir / f"out_{tag}"), "scratch_dir": str(workdir / f"scratch_{tag}"),
        "labels": args.labels, "epochs": 1, "learning_rate": 2e-5, "warmup_ratio": 0.0,
        "effective_batch_size": args.effective_batch, "max_steps": steps, "checkpoint_every": 0,
        "precision": "bf16" if cuda else "fp32", "progress": False, "seed": 42, **overrides})
    summary = train(settings)
    history = summary["history"]
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    shutil.rmtree(settings.output_dir, ignore_errors=True)
    return {"tokens": sum(h["tokens"] for h in history),
            "seconds": sum(h["tokens"] / h["tokens_per_s"] for h in history),
            "peak_mib": peak, "attn": summary["attn_implementation"], "logits": summary["logits_positions"],
            "loss": history[-1]["loss"], "compute_dtype": summary["precision"]["compute_dtype"]}


def cpu_peak_mib(args, name: str, overrides: dict, record_path: Path, model_path: Path, workdir: Path) -> float:
    """Peak RSS growth (MiB) of one run of ``name`` in a fresh process (CPU has no allocator stats)."""
    job = {"args": vars(args), "name": name, "overrides": overrides, "record": str(record_path),
           "model": str(model_path), "workdir": str(workdir)}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True,
                         check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in KiB. Not ``ru_maxrss``: after fork +
    exec that keeps the parent's high-water mark."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(job: dict) -> None:
    import torch
    args = argparse.Namespace(**job["args"])
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
    run_once(args, job["name"], job["overrides"], Path(job["record"]), Path(job["model"]), Path(job["workdir"]),
             1)
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - before) / 1024}))


def quiet() -> None:
    import logging

    from transformers.utils import logging as hf_logging
    logging.getLogger().setLevel(logging.WARNING)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def benchmark(args, workdir: Path, out=print) -> dict:
    """Run every contender; print the tables; return {name: {best, median, ratio, peak_mib, attn}}."""
    import torch

    from imrepro.train.precision import cpu_has_native_bf16

    record_path, model_path, config = build_inputs(args, workdir)
    from imrepro.data.role_record import load_role_record
    record = load_role_record(record_path)
    device = (torch.cuda.get_device_name() if args.device == "cuda" else
              f"cpu ({torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}), "
              f"{torch.get_num_threads()} threads")
    name = args.model_dir.name if args.model_dir else f"llama {args.model_size}"
    out(f"device: {device}  model: {name} ({config.model_type}: hidden {config.hidden_size}, "
        f"{config.num_hidden_layers} layers, vocab {config.vocab_size})")
    out(f"data: {record.metadata['source']}, max length {args.max_length}, {record.metadata['n_tokens']} "
        f"tokens (mean {record.metadata['n_tokens'] / len(record):.0f}/example)")
    out(f"per run: {args.steps} optimizer step(s) of {args.effective_batch} examples, labels {args.labels}; "
        f"{args.rounds} interleaved rounds after 1 warm-up run each")
    plan = contenders(args)
    if args.memory_only:
        out(f"{'memory':<16}{'peak RSS+ MiB':>15}")
        for name, overrides in plan.items():
            out(f"{name:<16}{cpu_peak_mib(args, name, overrides, record_path, model_path, workdir):>15,.0f}")
        return {}
    for name, overrides in plan.items():  # warm-up: first-call allocations, kernel choice, compilation
        run_once(args, name, overrides, record_path, model_path, workdir, 1)
    results: dict[str, list[dict]] = {name: [] for name in plan}
    baseline = next(iter(plan))
    out(f"{'round':<7}{'contender':<16}{'tokens':>8}{'step s':>9}{'tokens/s':>11}{'vs ' + baseline:>10}{'loss':>9}")
    for r in range(args.rounds):
        for name, overrides in plan.items():
            res = run_once(args, name, overrides, record_path, model_path, workdir, args.steps)
            results[name].append(res)
            rate = res["tokens"] / res["seconds"]
            base = results[baseline][r]["tokens"] / results[baseline][r]["seconds"]
            out(f"{r + 1:<7}{name:<16}{res['tokens']:>8}{res['seconds']:>9.2f}{rate:>11,.1f}{rate / base:>9.2f}x"
                f"{res['loss']:>9.4f}")
    peaks = {name: results[name][-1]["peak_mib"] if args.device == "cuda"
             else cpu_peak_mib(args, name, overrides, record_path, model_path, workdir) if args.cpu_memory
             else None for name, overrides in plan.items()}

    def rates(name):
        return [x["tokens"] / x["seconds"] for x in results[name]]

    memory = "peak MiB" if args.device == "cuda" else "peak RSS+ MiB"
    out(f"{'summary':<16}{'best tok/s':>11}{'median tok/s':>14}{'median ratio':>14}{memory:>15}{'loss':>9}"
        f"  attention, compute dtype")
    table = {}
    for name in plan:
        ratios = [a / b for a, b in zip(rates(name), rates(baseline), strict=True)]
        table[name] = {"best_tokens_per_s": max(rates(name)), "median_tokens_per_s": statistics.median(rates(name)),
                       "median_ratio": statistics.median(ratios), "peak_mib": peaks[name],
                       **({"median_ratio_vs_bs1": statistics.median(ratios)} if baseline == "bs1" else {}),
                       "loss": results[name][-1]["loss"], "attn": results[name][0]["attn"],
                       "logits": results[name][0]["logits"], "compute_dtype": results[name][0]["compute_dtype"]}
        row = table[name]
        peak = float("nan") if row["peak_mib"] is None else row["peak_mib"]
        out(f"{name:<16}{row['best_tokens_per_s']:>11,.1f}{row['median_tokens_per_s']:>14,.1f}"
            f"{row['median_ratio']:>13.2f}x{peak:>15,.0f}{row['loss']:>9.4f}  {row['attn']}, {row['compute_dtype']}")
    return table


PROFILE_GROUPS = {  # self CPU time of torch ops, by what they do
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul"),
    "attention": ("scaled_dot_product", "flash_attention", "aten::_efficient_attention", "aten::baddbmm"),
    "cross-entropy": ("log_softmax", "nll_loss", "aten::cross_entropy"),
    "optimizer": ("_foreach", "adam"),
}


def profile(args, record_path: Path, model_path: Path, workdir: Path, names: list[str], out=print) -> dict:
    """torch.profiler over one run of each contender in ``names``: share of self CPU time per op group."""
    import torch
    from torch.profiler import ProfilerActivity

    plan = contenders(args)
    shares = {}
    for name in names:
        with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as prof:
            run_once(args, name, plan[name], record_path, model_path, workdir, args.steps)
        totals = {group: 0.0 for group in [*PROFILE_GROUPS, "other"]}
        for event in prof.key_averages():
            group = next((g for g, keys in PROFILE_GROUPS.items() if any(k in event.key for k in keys)), "other")
            totals[group] += event.self_cpu_time_total
        whole = sum(totals.values()) or 1.0
        shares[name] = {"seconds": whole / 1e6, **{g: t / whole for g, t in totals.items()}}
    out(f"{'profile':<16}{'self CPU s':>11}" + "".join(f"{g:>15}" for g in [*PROFILE_GROUPS, "other"]))
    for name, row in shares.items():
        out(f"{name:<16}{row['seconds']:>11.2f}" + "".join(f"{row[g]:>14.0%} " for g in [*PROFILE_GROUPS, "other"]))
    return shares


def main() -> None:
    args = parse_args()
    if args.child:
        return child(json.loads(args.child))
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the trainer uses whatever accelerate finds
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device (this option is for GPU machines only)")
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet()
    workdir = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        if args.profile:
            record_path, model_path, _ = build_inputs(args, workdir)
            profile(args, record_path, model_path, workdir, args.profile)
        else:
            benchmark(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    if "--child" not in sys.argv:
        print(f"wall {time.perf_counter() - t0:.0f} s")
