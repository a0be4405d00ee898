"""Answers of the evaluated model for the judged benchmarks (MT-Bench, AlpacaEval), as the authors generated them.

* :func:`mt_bench_answers`: FastChat ``gen_model_answer.py`` with the Tulu template (or the model's chat template,
  ``generator.chat_prompt``): two turns per question,
  the turn-2 prompt holds turn 1 and the model's own turn-1 answer; answers stripped; by default FastChat's
  per-category temperatures (:data:`FASTCHAT_TEMPERATURES`; sampled turns with transformers' default top-k 50,
  as FastChat's ``model.generate`` call); policy ``greedy`` decodes everything greedily.
* :func:`alpaca_eval_outputs`: open-instruct ``eval/alpaca_farm``: greedy, the raw completion, in the
  reference's order.

The generator is any :class:`imrepro.eval.generation.Generator` (``chat_prompt(messages)``,
``generate(prompts, sampling, desc)``).
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

from imrepro.eval.generation import Sampling, count_empty

# FastChat llm_judge/common.py temperature_config (gen_model_answer.py; 0.7 for unknown categories)
FASTCHAT_TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                         "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}
FASTCHAT_DEFAULT_TEMPERATURE = 0.7
FASTCHAT_TOP_K = 50  # transformers' GenerationConfig default, in force for FastChat's sampled turns
TEMPERATURE_POLICIES = ("fastchat", "greedy")


def mt_bench_temperatures(questions: list[dict], policy: str = "fastchat") -> list[float]:
    """The decoding temperature of each question under ``policy`` (``fastchat`` or ``greedy``)."""
    if policy not in TEMPERATURE_POLICIES:
        raise ValueError(f"temperature policy must be one of {TEMPERATURE_POLICIES}, not {policy!r}")
    if policy == "greedy":
        return [0.0] * len(questions)
    return [FASTCHAT_TEMPERATURES.get(q.get("category"), FASTCHAT_DEFAULT_TEMPERATURE) for q in questions]


def generate_grouped(generator, prompts: list[str], temperatures: list[float], max_new_tokens: int, seed: int,
                     desc: str) -> list[str]:
    """One completion per prompt; prompts of one temperature share a generate call."""
    groups = defaultdict(list)
    for index, temperature in enumerate(temperatures):
        groups[temperature].append(index)
    out: list[str] = [""] * len(prompts)
    for temperature, indices in sorted(groups.items()):
        sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                            top_k=FASTCHAT_TOP_K if temperature > 0 else 0)
        texts = generator.generate([prompts[i] for i in indices], sampling, desc=f"{desc} T={temperature}")
        for i, samples in zip(indices, texts, strict=True):
            out[i] = samples[0]
    return out


def mt_bench_answers(generator, questions: list[dict], *, model_id: str, max_new_tokens: int, seed: int,
                     temperature_policy: str = "fastchat", source: str = "questions") -> tuple[list[dict], dict]:
    """FastChat answer records (one per question, every turn answered) and counts; ``source`` names the
    questions in errors."""
    if not questions:
        raise ValueError(f"{source}: no questions")
    for q in questions:
        if not q.get("turns") or not all(isinstance(t, str) for t in q["turns"]):
            raise ValueError(f"{source}: question {q.get('question_id')}: 'turns' must be a list of strings")
    temps = mt_bench_temperatures(questions, temperature_policy)
    histories = [[] for _ in questions]
    answers = [[] for _ in questions]
    for turn in range(max(len(q["turns"]) for q in questions)):
        active = [i for i, q in enumerate(questions) if turn < len(q["turns"])]
        for i in active:
            histories[i].append({"role": "user", "content": questions[i]["turns"][turn]})
        texts = generate_grouped(generator, [generator.chat_prompt(histories[i]) for i in active],
                                 [temps[i] for i in active],
                                 max_new_tokens, seed, desc=f"mt_bench turn {turn + 1}")
        for i, text in zip(active, texts, strict=True):
            text = text.strip()  # FastChat strips every answer
            histories[i].append({"role": "assistant", "content": text})
            answers[i].append(text)
    now = time.time()
    records = [{"question_id": q["question_id"], "answer_id": uuid.uuid4().hex, "model_id": model_id,
                "choices": [{"index": 0, "turns": turns}], "tstamp": now}
               for q, turns in zip(questions, answers, strict=True)]
    return records, {"n_questions": len(questions), "n_answers": sum(map(len, answers)),
                     "n_empty": count_empty(answers), "temperature_policy": temperature_policy}


def alpaca_eval_outputs(generator, reference: list, *, model_id: str, max_new_tokens: int, seed: int,
                        source: str = "reference") -> tuple[list[dict], dict]:
    """alpaca_eval's model_outputs records ``{instruction, output, generator, dataset}`` and counts."""
    if not isinstance(reference, list):
        raise ValueError(f"{source}: expected a JSON list of {{instruction, ...}} records")
    if not reference:
        raise ValueError(f"{source}: no instructions")
    for k, item in enumerate(reference):
        if not isinstance(item, dict) or not isinstance(item.get("instruction"), str):
            raise ValueError(f"{source}: record {k} has no string 'instruction'")
    prompts = [generator.chat_prompt([{"role": "user", "content": item["instruction"]}]) for item in reference]
    texts = generator.generate(prompts, Sampling(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed),
                               desc="alpaca_eval")
    outputs = [{"instruction": item["instruction"], "output": samples[0], "generator": model_id,
                "dataset": item.get("dataset")} for item, samples in zip(reference, texts, strict=True)]
    return outputs, {"n_questions": len(outputs), "n_answers": len(outputs), "n_empty": count_empty(texts)}
