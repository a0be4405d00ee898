"""Role-record build throughput versus a plain batch tokenizer call, in one process.

    python benchmarks/bench_role_record.py [--repeats 3]

For each shipped dataset it times (best of --repeats, after one warm-up):
  * role record: render Tulu segments + tokenize + per-token roles (imrepro.role_record)
  * sentencepiece: plain ``sp.encode(texts)`` of the already rendered texts (ids only)
  * hf fast: plain ``tokenizer(texts)`` with the Llama-2 fast tokenizer converted from the
    same tokenizer.model (the usual way a training script tokenises)
and prints tokens/s and the ratio role record / baseline (target: >= 0.7x).
"""

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from imrepro.chat_format import render_text  # noqa: E402
from imrepro.messages import load_messages_jsonl  # noqa: E402
from imrepro.role_record import build_role_record  # noqa: E402
from imrepro.token_backends import SentencePieceBackend  # noqa: E402

DATASETS = {
    "lima": "lima_data.jsonl",
    "alpagasus_dolly_3k": "alpagasus_3k_dolly.jsonl",
    "alpagasus_alpaca_5k": "alpagasus_claude_t45_alpaca.jsonl",
}
TOKENIZER = REPO / "resources" / "tokenizers" / "llama2" / "tokenizer.model"


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from transformers import LlamaTokenizerFast

    backend = SentencePieceBackend(TOKENIZER)
    hf = LlamaTokenizerFast(vocab_file=str(TOKENIZER), legacy=True)
    print(f"cpus: {os.cpu_count()}  repeats: {args.repeats}")
    header = f"{'dataset':<22}{'tokens':>10}{'role rec tok/s':>16}{'sp tok/s':>12}{'hf tok/s':>12}"
    print(header + f"{'vs sp':>8}{'vs hf':>8}")
    for name, file in DATASETS.items():
        examples = load_messages_jsonl(REPO / "resources" / "data" / file)
        texts = [render_text(e["messages"]) for e in examples]
        n_tokens = build_role_record(examples, backend, None, progress=False).metadata["n_tokens"]
        t_record = best_time(lambda: build_role_record(examples, backend, None, progress=False), args.repeats)
        t_sp = best_time(lambda: backend.sp.encode(texts, num_threads=-1), args.repeats)
        t_hf = best_time(lambda: hf(texts), args.repeats)
        rate = {k: n_tokens / t for k, t in (("record", t_record), ("sp", t_sp), ("hf", t_hf))}
        print(f"{name:<22}{n_tokens:>10}{rate['record']:>16,.0f}{rate['sp']:>12,.0f}{rate['hf']:>12,.0f}"
              f"{rate['record'] / rate['sp']:>7.2f}x{rate['record'] / rate['hf']:>7.2f}x")


if __name__ == "__main__":
    main()
