"""Generation throughput: the batched interface (imrepro.eval.generation, HF back-end) vs one prompt at a time.

    python benchmarks/bench_generation.py [--model DIR] [--threads 1] [--batch-size 16 64] [--rounds 3]

Both contenders use the same model object, the same prompt token ids (64 AlpacaEval/MT-Bench instructions
in the Tulu chat prompt, Llama-2 SentencePiece ids), greedy decoding and 64 new tokens:
  * one-at-a-time: ``model.generate(ids, max_new_tokens=64, do_sample=False)`` per prompt, no padding;
  * batched<B>: ``Generator.generate(prompts, Sampling(max_new_tokens=64))`` with batch size B (prompts
    sorted by length, left-padded).
Generated tokens/s = new tokens until EOS, counted on the one-at-a-time outputs; the batched texts must
equal the one-at-a-time texts (checked), so both produced the same tokens. Without --model the tiny
random Llama of the tests and the demo is built (hidden 64, 2 layers, the Llama-2 vocabulary).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "workflow_scripts"))

TOKENIZER = REPO / "resources" / "tokenizers" / "llama2" / "tokenizer.model"
TINY = {"architecture": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
        "num_attention_heads": 4, "seed": 0}


def instructions(count: int) -> list[str]:
    alpaca = json.loads((REPO / "resources/eval/alpaca_eval/text_davinci_003_outputs.json").read_text())[:16]
    mt = [json.loads(line)["turns"][0] for line in
          (REPO / "resources/eval/mt_bench/question.jsonl").read_text().splitlines() if line.strip()]
    pool = [item["instruction"] for item in alpaca] + mt
    return pool[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model directory (default: build the tiny test model)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    from imrepro.eval.generation import Sampling, chat_prompt, load_generator

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from prepare_model import init_model

            model_dir = Path(tmp) / "tiny"
            init_model(TINY, TOKENIZER, model_dir)
        generator = load_generator(model_dir, backend="hf", progress=False, tokenizer_model=TOKENIZER)
        model = generator.model
        prompts = [chat_prompt([{"role": "user", "content": text}]) for text in instructions(args.prompts)]
        ids = generator.encode(prompts)
        sampling = Sampling(max_new_tokens=args.new_tokens)

        def one_at_a_time():
            texts, tokens = [], 0
            for prompt in ids:
                x = torch.tensor([prompt], device=generator.device)
                with torch.inference_mode():
                    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=args.new_tokens,
                                         do_sample=False, pad_token_id=generator.pad_id)
                new = generator._until_eos(out[0, len(prompt):].tolist())
                tokens += len(new)
                texts.append(generator._decode(prompt, new))
            return texts, tokens

        def batched(size):
            def run():
                generator.batch_size = size
                return [samples[0] for samples in generator.generate(prompts, sampling)], None
            return run

        contenders = {"one_at_a_time": one_at_a_time, **{f"batched{b}": batched(b) for b in args.batch_size}}
        reference, tokens = one_at_a_time()  # warm-up, and the reference texts / token count
        for name, fn in contenders.items():
            if name != "one_at_a_time" and fn()[0] != reference:
                raise SystemExit(f"{name}: outputs differ from one-at-a-time greedy decoding")
        times = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)

    params = sum(p.numel() for p in model.parameters())
    print(f"device: {generator.device}, {torch.get_num_threads()} threads  model: {params / 1e6:.1f}M parameters "
          f"({model.config.num_hidden_layers} layers, hidden {model.config.hidden_size}, "
          f"vocab {model.config.vocab_size})")
    print(f"{len(prompts)} prompts (mean {statistics.mean(map(len, ids)):.0f} prompt tokens), greedy, "
          f"{args.new_tokens} new tokens max, {tokens} generated tokens per run; {args.rounds} interleaved rounds")
    base = min(times["one_at_a_time"])
    print(f"{'contender':<16}{'best s':>9}{'median s':>10}{'best tok/s':>12}{'vs one-at-a-time':>18}")
    for name, values in times.items():
        best = min(values)
        print(f"{name:<16}{best:>9.2f}{statistics.median(values):>10.2f}{tokens / best:>12,.0f}"
              f"{base / best:>17.2f}x")


if __name__ == "__main__":
    main()
