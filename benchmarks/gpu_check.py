"""One prepared command for a lent GPU (H100/H200): training throughput, a 7B optimizer step, generation.

    python benchmarks/gpu_check.py --out gpu_check           # one GPU, < 8 minutes wall
    python benchmarks/gpu_check.py --tiny --out /tmp/gc      # CPU, tiny shapes, seconds (tests/test_gpu_check.py)

Writes ``<out>/gpu_check.json`` and ``<out>/gpu_check.md``. Plain torch + transformers + accelerate;
flash-attn is used when importable (the trainer's ``auto``); nothing else is needed.

(a) ``train_throughput``: benchmarks/bench_train.py's contenders (bs1 = the authors' regime, padded
    rows, packed with the dense mask, sdpa_varlen, FlexAttention, FlashAttention-2 when installed, each
    with and without trained-position logits) on a TinyLlama-1.1B-shaped random-init Llama in bf16,
    token budget 8192. Goals: >= 40k non-pad tokens/s packed, >= 2x bs1.
(b) ``step_7b``: one full fine-tuning optimizer step of a Llama-2-7B-shaped random-init model through
    the trainer's own phases (``_load_data``, ``_build_model``, ``_build_optimizer``,
    ``_optimizer_step``: AdamW on fp32 master weights, bf16 autocast, packing, trained-position
    logits), with and without gradient checkpointing: step time, tokens/s, peak GPU memory, and
    whether that peak fits an 80 GB and a 141 GB GPU (an out-of-memory error is recorded as such).
(c) ``generation``: greedy ``generate`` tokens/s of the 1.1B shape (bf16), 32 prompts one at a time vs
    one batch of all 32 (equal-length random prompts, so no padding; 64 new tokens each).

Not yet run on a GPU (none lent so far): if it runs past 8 minutes, ``--skip generation`` or
``--skip step_7b`` runs the rest; the JSON and Markdown are rewritten after every section.
benchmarks/gpu_run.py runs these sections after the workflow itself, as far as its time budget allows.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import bench_train  # noqa: E402

LLAMA2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}
GPU_GIB = {"80 GB": 80e9 / 2**30, "141 GB": 141e9 / 2**30}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory for gpu_check.json and gpu_check.md")
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny shapes: checks that everything runs")
    parser.add_argument("--skip", nargs="*", default=[], choices=["train", "step_7b", "generation"])
    return parser.parse_args(argv)


def versions() -> dict:
    import accelerate
    import torch
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "accelerate": accelerate.__version__}
    for name in ("flash_attn", "deepspeed", "vllm"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - absent or broken: recorded as not installed
            out[name] = None
    return out


def train_throughput(tiny: bool, workdir: Path) -> dict:
    """(a): bench_train's table (tokens/s, median ratio vs bs1, peak memory per contender)."""
    argv = (["--device", "cpu", "--model-size", "tiny", "--examples", "16", "--max-length", "128",
             "--effective-batch", "8", "--token-budget", "512", "--rounds", "1", "--padded", "--no-cpu-memory"]
            if tiny else
            ["--device", "cuda", "--model-size", "1b", "--examples", "512", "--effective-batch", "64",
             "--token-budget", "8192", "--rounds", "2", "--padded"])
    args = bench_train.parse_args(argv)
    lines: list[str] = []
    table = bench_train.benchmark(args, workdir, out=lambda line: (print(line, flush=True), lines.append(line)))
    packed = {k: v for k, v in table.items() if not k.startswith(("bs1", "padded"))}
    best = max(packed, key=lambda k: packed[k]["median_tokens_per_s"])
    return {"argv": argv, "table": table, "log": lines, "best_packed": best,
            "goal_40k_tokens_per_s": packed[best]["median_tokens_per_s"] >= 40_000,
            "goal_2x_bs1": packed[best]["median_ratio_vs_bs1"] >= 2.0}


def step_7b(tiny: bool, workdir: Path) -> list[dict]:
    """(b): one optimizer step through the trainer's phases, with and without gradient checkpointing."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from imrepro.train import trainer
    from imrepro.train.settings import TrainSettings

    args = bench_train.parse_args(["--examples", "16", "--max-length", "128"] if tiny else
                                  ["--examples", "128", "--max-length", "512"])
    record_path, _, _ = bench_train.build_inputs(args, workdir, with_model=False)
    device = "cpu" if tiny else "cuda"
    shape = TINY if tiny else LLAMA2_7B
    results = []
    for checkpointing in (True, False):
        entry = {"shape": "tiny" if tiny else "llama-2-7b", "gradient_checkpointing": checkpointing}
        run = model = None
        try:
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            settings = TrainSettings(model_path="(in memory)", record_path=str(record_path),
                                     output_dir=str(workdir / "out7b"), scratch_dir=str(workdir / "scratch7b"),
                                     labels="it", epochs=1, effective_batch_size=8 if tiny else 64, token_budget=8192,
                                     precision="fp32" if tiny else "bf16", gradient_checkpointing=checkpointing,
                                     checkpoint_every=0, progress=False)
            run = trainer._load_data(settings, trainer._build_accelerator(settings))
            config = LlamaConfig(vocab_size=32001, max_position_embeddings=4096, **shape)
            with torch.device(device):
                torch.manual_seed(0)
                model = LlamaForCausalLM(config)
            entry["parameters"] = model.num_parameters()
            trainer._build_model(run, model)
            trainer._build_optimizer(run)
            run.model.train()
            trainer._optimizer_step(run, 0)  # warm-up: kernel selection, FlexAttention compilation
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step = trainer._optimizer_step(run, 1)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            entry.update(step_seconds=seconds, tokens=step["tokens"], tokens_per_s=step["tokens"] / seconds,
                         loss=step["loss"], attn=run.attn, logits="trained" if run.trained_logits else "all")
            if device == "cuda":
                peak = torch.cuda.max_memory_allocated() / 2**30
                entry["peak_gib"] = peak
                entry["fits"] = {gpu: peak < limit for gpu, limit in GPU_GIB.items()}
        except torch.cuda.OutOfMemoryError as error:  # does not fit this GPU: say so, keep going
            total = torch.cuda.get_device_properties(0).total_memory / 2**30
            entry.update(error=f"out of memory on this {total:.0f} GiB GPU", detail=str(error).splitlines()[0])
        finally:
            if run is not None:
                run.accelerator.free_memory()  # drops accelerate's references to model and optimizer
            del run, model
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        print(json.dumps(entry), flush=True)
        results.append(entry)
    return results


def generation(tiny: bool) -> dict:
    """(c): greedy tokens/s, one prompt at a time vs one batch."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    device = "cpu" if tiny else "cuda"
    shape = TINY if tiny else bench_train.MODEL_SIZES["1b"]
    n_prompts, prompt_len, new = (4, 16, 8) if tiny else (32, 128, 64)
    with torch.device(device):
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=32001, max_position_embeddings=4096, **shape))
    model = model.to(torch.float32 if tiny else torch.bfloat16).eval()
    model.generation_config.eos_token_id = None  # random weights: always generate `new` tokens
    model.generation_config.pad_token_id = 0
    prompts = torch.randint(3, 32000, (n_prompts, prompt_len), generator=torch.Generator().manual_seed(0))
    prompts = prompts.to(device)
    options = {"do_sample": False, "max_new_tokens": new, "min_new_tokens": new}

    def timed(fn):
        model.generate(prompts[:2], **{**options, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0

    with torch.no_grad():
        single, t_single = timed(lambda: [model.generate(p[None], **options)[0, prompt_len:] for p in prompts])
        batched, t_batched = timed(lambda: model.generate(prompts, **options)[:, prompt_len:])
    agree = sum(bool(torch.equal(a, b)) for a, b in zip(single, batched, strict=True))
    tokens = n_prompts * new
    return {"prompts": n_prompts, "prompt_tokens": prompt_len, "new_tokens": new,
            "one_at_a_time_tokens_per_s": tokens / t_single, "batched_tokens_per_s": tokens / t_batched,
            "speedup": t_single / t_batched, "identical_outputs": f"{agree}/{n_prompts}"}


def markdown(report: dict) -> str:
    lines = [f"# GPU check ({report['device']})", "", f"versions: {json.dumps(report['versions'])}", ""]
    train = report.get("train_throughput")
    if train:
        lines += ["## (a) training throughput (bench_train contenders)", "",
                  "| contender | median tok/s | median ratio vs bs1 | peak MiB | attention | logits |",
                  "|---|---:|---:|---:|---|---|"]
        for name, row in train["table"].items():
            peak = "—" if row["peak_mib"] is None else f"{row['peak_mib']:,.0f}"
            lines.append(f"| {name} | {row['median_tokens_per_s']:,.0f} | {row['median_ratio_vs_bs1']:.2f}x | "
                         f"{peak} | {row['attn']} | {row['logits']} |")
        lines += ["", f"best packed: {train['best_packed']}; >= 40k tok/s: {train['goal_40k_tokens_per_s']}; "
                      f">= 2x bs1: {train['goal_2x_bs1']}", ""]
    if report.get("step_7b"):
        lines += ["## (b) one optimizer step, full fine-tuning", "",
                  "| shape | grad. checkpointing | step s | tok/s | peak GiB | fits 80 / 141 GB | note |",
                  "|---|---|---:|---:|---:|---|---|"]
        for e in report["step_7b"]:
            fits = e.get("fits") or {}
            lines.append(f"| {e['shape']} | {e['gradient_checkpointing']} | {e.get('step_seconds', 0):.2f} | "
                         f"{e.get('tokens_per_s', 0):,.0f} | {e.get('peak_gib', float('nan')):.1f} | "
                         f"{fits.get('80 GB', '—')} / {fits.get('141 GB', '—')} | {e.get('error', '')} |")
        lines.append("")
    gen = report.get("generation")
    if gen:
        lines += ["## (c) generation", "", "| prompts | new tokens | one at a time tok/s | batched tok/s | speed-up |",
                  "|---:|---:|---:|---:|---:|",
                  f"| {gen['prompts']} | {gen['new_tokens']} | {gen['one_at_a_time_tokens_per_s']:,.0f} | "
                  f"{gen['batched_tokens_per_s']:,.0f} | {gen['speedup']:.1f}x |", ""]
    lines.append(f"wall {report['wall_seconds']:.0f} s")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.tiny:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    from imrepro.core.atomic import atomic_open

    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: no CUDA device; use --tiny to check the script on CPU")
    bench_train.quiet()
    t0 = time.perf_counter()
    report = {"device": "cpu (--tiny)" if args.tiny else torch.cuda.get_device_name(), "versions": versions()}
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every section, so a run cut short keeps what it measured
        report["wall_seconds"] = time.perf_counter() - t0
        with atomic_open(args.out / "gpu_check.json") as f:
            json.dump(report, f, indent=2)
        with atomic_open(args.out / "gpu_check.md") as f:
            f.write(markdown(report))

    workdir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    sections = {"train": ("train_throughput", lambda: train_throughput(args.tiny, workdir)),
                "step_7b": ("step_7b", lambda: step_7b(args.tiny, workdir)),
                "generation": ("generation", lambda: generation(args.tiny))}
    try:
        for name, (key, measure) in sections.items():
            if name not in args.skip:
                report[key] = measure()
                save()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    save()
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
