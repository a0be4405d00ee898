"""Role-record build throughput versus a plain batch tokenizer call, in one process.

    python benchmarks/bench_role_record.py [--repeats 3]

For each shipped dataset it times (best of --repeats interleaved runs, after a warm-up):
  * role record: render Tulu segments + tokenize + per-token roles (imrepro.data.role_record)
  * sentencepiece: plain ``sp.encode(texts)`` of the already rendered texts (ids only)
  * hf fast: plain ``tokenizer(texts)`` with the fast Llama tokenizer that transformers builds
    from the same tokenizer.model (``LlamaTokenizer.from_pretrained(dir)``, the usual way a
    training script tokenises; its ids differ slightly from the authors', see DESIGN.md)
  * role record (hf): the role record built with that fast tokenizer (HFBackend, as for OPT)
and prints tokens/s and the ratio of each role-record build to the plain call of its own
tokenizer (target: >= 0.7x), plus SentencePiece record vs the HF call for reference.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from imrepro.data.chat_format import render_text  # noqa: E402
from imrepro.data.messages import load_messages_jsonl  # noqa: E402
from imrepro.data.role_record import build_role_record  # noqa: E402
from imrepro.data.token_backends import HFBackend, SentencePieceBackend  # noqa: E402

DATASETS = {
    "lima": "lima_data.jsonl",
    "alpagasus_dolly_3k": "alpagasus_3k_dolly.jsonl",
    "alpagasus_alpaca_5k": "alpagasus_claude_t45_alpaca.jsonl",
}
TOKENIZER = REPO / "resources" / "tokenizers" / "llama2" / "tokenizer.model"


def best_times(fns: dict, repeats: int) -> dict:
    """Best wall time of each function; runs are interleaved so that background load on the
    machine hits every contender alike."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from transformers import LlamaTokenizer

    backend = SentencePieceBackend(TOKENIZER)
    # NB: LlamaTokenizerFast(vocab_file=...) in transformers 5.19 returns a tokenizer that maps
    # most text to nothing; loading a directory holding tokenizer.model works.
    tmp = tempfile.mkdtemp()
    shutil.copy(TOKENIZER, tmp)
    hf = LlamaTokenizer.from_pretrained(tmp)
    hf_backend = HFBackend(tmp, tokenizer=hf)
    print(f"cpus: {os.cpu_count()}  repeats: {args.repeats}")
    print(f"{'dataset':<21}{'tokens':>8}{'sp rec tok/s':>14}{'sp tok/s':>11}{'ratio':>7}"
          f"{'hf rec tok/s':>14}{'hf tok/s':>11}{'ratio':>7}{'sp rec/hf':>10}")
    for name, file in DATASETS.items():
        examples = load_messages_jsonl(REPO / "resources" / "data" / file)
        texts = [render_text(e["messages"]) for e in examples]
        n_sp = build_role_record(examples, backend, None, progress=False).metadata["n_tokens"]
        n_hf = build_role_record(examples, hf_backend, None, progress=False).metadata["n_tokens"]
        times = best_times({
            "sp_record": lambda: build_role_record(examples, backend, None, progress=False),  # noqa: B023
            "sp": lambda: backend.sp.encode(texts, num_threads=-1),  # noqa: B023
            "hf_record": lambda: build_role_record(examples, hf_backend, None, progress=False),  # noqa: B023
            "hf": lambda: hf(texts),  # noqa: B023
        }, args.repeats)
        rate = {k: (n_hf if k.startswith("hf") else n_sp) / t for k, t in times.items()}
        print(f"{name:<21}{n_sp:>8}{rate['sp_record']:>14,.0f}{rate['sp']:>11,.0f}"
              f"{rate['sp_record'] / rate['sp']:>6.2f}x{rate['hf_record']:>14,.0f}{rate['hf']:>11,.0f}"
              f"{rate['hf_record'] / rate['hf']:>6.2f}x{rate['sp_record'] / rate['hf']:>9.2f}x")


if __name__ == "__main__":
    main()
