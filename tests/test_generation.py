"""The generation interface (imrepro.eval.generation) and the generating benchmarks' scripts, on a tiny random Llama.

The HF back-end runs for real. vLLM cannot be installed here: its path is exercised against a stand-in
``vllm`` module that records what the generator passes to ``LLM`` / ``SamplingParams`` / ``generate``.
"""

from __future__ import annotations

import json
import runpy
import sys
import types

import pytest

from conftest import LLAMA2_TOKENIZER, REPO, RESOURCES, SHIPPED
from imrepro.data.chat_format import generation_prompt, render_text
from imrepro.data.messages import load_messages_jsonl
from imrepro.data.role_record import build_role_record, save_role_record
from imrepro.data.token_backends import SentencePieceBackend
from imrepro.eval import answers, generation
from imrepro.eval.generation import Sampling, chat_prompt, cut_at_stop, load_generator
from imrepro.eval.judge import mt_bench
from imrepro.eval.model_outputs import JOB_TYPES, parse_jobs, run_jobs
from imrepro.eval.regen_bleu import bleu_scores, regeneration_pair

SCRIPTS = REPO / "workflow_scripts"
MT_QUESTIONS = RESOURCES / "eval" / "mt_bench" / "question.jsonl"
DAVINCI = RESOURCES / "eval" / "alpaca_eval" / "text_davinci_003_outputs.json"
PROMPTS = [generation_prompt(text) for text in (
    "Hi", "Tell me a long story about a dragon, a knight and a very old castle on a hill.", "What is 2+2?",
    "Name three colours.", "x" * 40, "def add(a, b):\n    return", "Translate 'good morning' to French.")]


@pytest.fixture(scope="module")
def generator(tiny_model):
    return load_generator(tiny_model, backend="hf", batch_size=3, progress=False, tokenizer_model=LLAMA2_TOKENIZER)


def run_script(name: str, *args: str, monkeypatch) -> None:
    """Run a workflow script in this process (saves the interpreter start and imports)."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    monkeypatch.setattr(sys, "argv", [name, *map(str, args)])
    runpy.run_path(str(SCRIPTS / name), run_name="__main__")


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------

def test_chat_prompt_matches_training_text():
    assert chat_prompt([{"role": "user", "content": " Hi there \n"}]) == generation_prompt(" Hi there \n")
    two_turns = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": " a1 "},
                 {"role": "user", "content": "q2"}]
    assert chat_prompt(two_turns) == "<|user|>\nq1\n<|assistant|>\na1</s>\n<|user|>\nq2\n<|assistant|>\n"
    with pytest.raises(ValueError, match="ends with a user message"):
        chat_prompt(two_turns[:2])


def test_prompt_ids_are_the_training_ids(generator, sp_backend: SentencePieceBackend):
    """Prompt ids (BOS + SentencePiece, ``</s>`` as id 2) are a prefix of the training ids of the same dialogue."""
    examples = load_messages_jsonl(SHIPPED["lima"])
    multi = next(e for e in examples if len(e["messages"]) >= 4)
    cases = [(e["messages"][:1], e["messages"][:2]) for e in examples[:20]] + [(multi["messages"][:3],
                                                                                multi["messages"][:4])]
    prompts = [chat_prompt(prompt) for prompt, _ in cases]
    for ids, (_, dialogue) in zip(generator.encode(prompts), cases, strict=True):
        train_ids = sp_backend.encode_batch([render_text(dialogue)]).ids.tolist()
        assert ids[0] == sp_backend.bos_id
        assert ids == train_ids[:len(ids)]


@pytest.mark.parametrize("template", ["resources/chat_templates/tulu.jinja",
                                      "tests/fixtures/chat_templates/llama3_1_style.jinja"])
def test_chat_template_prompt_ids_are_the_training_ids(tiny_model, template):
    """With a chat template, a conversation's prompt is the template's generation prompt, token for token the
    training record's prefix (one BOS, the template's); a raw prompt (HumanEval) gets that BOS too."""
    from imrepro.data.role_record import build_role_record
    from imrepro.data.token_backends import TokenizerSpec, load_backend

    path = str(REPO / template)
    chat = load_generator(tiny_model, backend="hf", progress=False, tokenizer_model=LLAMA2_TOKENIZER,
                          chat_template=path)
    examples = load_messages_jsonl(SHIPPED["lima"])[:10]
    record = build_role_record(examples, load_backend(TokenizerSpec("t", "sentencepiece", str(LLAMA2_TOKENIZER),
                                                                    chat_template=path)), None, progress=False)
    prompts = [chat.chat_prompt(example["messages"][:1]) for example in examples]
    for i, ids in enumerate(chat.encode(prompts)):
        assert ids == record.example(i)[0][:len(ids)].tolist() and ids[1] != ids[0] == chat.sp.bos_id
    raw = chat.encode(["def add(a, b):"])[0]
    assert raw[0] == chat.sp.bos_id and raw[1] != raw[0]


def test_hf_tokenizer_prompts_get_a_bos(tiny_model):
    plain = load_generator(tiny_model, backend="hf", progress=False)
    ids = plain.encode(PROMPTS[:2])
    assert all(x[0] == plain.tokenizer.bos_token_id and x[1] != x[0] for x in ids)


# ---------------------------------------------------------------------------------------------
# The HF back-end
# ---------------------------------------------------------------------------------------------

def test_batched_greedy_equals_one_at_a_time(generator, tiny_model):
    sampling = Sampling(max_new_tokens=12)
    batched = generator.generate(PROMPTS, sampling)
    single = load_generator(tiny_model, backend="hf", batch_size=1, progress=False, tokenizer_model=LLAMA2_TOKENIZER)
    assert batched == single.generate(PROMPTS, sampling)
    assert all(len(samples) == 1 and samples[0] for samples in batched)
    # order is restored: reversed prompts give reversed results
    assert generator.generate(PROMPTS[::-1], sampling) == batched[::-1]
    # the text is the model's greedy continuation: same ids as a bare model.generate on the prompt alone
    import torch

    ids = generator.encode(PROMPTS[:1])[0]
    out = generator.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                   pad_token_id=generator.pad_id)
    new = generator._until_eos(out[0, len(ids):].tolist())
    assert generator.tokenizer.decode(ids + new, skip_special_tokens=True).endswith(batched[0][0])


def test_sampling_n_and_seed(generator):
    sampling = Sampling(max_new_tokens=8, temperature=1.0, top_p=0.95, n=3, seed=7)
    first = generator.generate(PROMPTS[:4], sampling)
    assert [len(s) for s in first] == [3, 3, 3, 3]
    assert first == generator.generate(PROMPTS[:4], sampling)  # same seed, same samples
    assert first != generator.generate(PROMPTS[:4], Sampling(max_new_tokens=8, temperature=1.0, top_p=0.95,
                                                             n=3, seed=8))
    assert any(len(set(samples)) > 1 for samples in first)
    greedy = generator.generate(PROMPTS[:2], Sampling(max_new_tokens=8, n=3))
    assert all(len(samples) == 3 and len(set(samples)) == 1 for samples in greedy)


def test_stop_sequences_cut_exactly(generator):
    free = [s[0] for s in generator.generate(PROMPTS, Sampling(max_new_tokens=16))]
    stops = (free[1][6:9], free[3][4:6])  # strings the model is known to produce
    stopped = [s[0] for s in generator.generate(PROMPTS, Sampling(max_new_tokens=16, stop=stops))]
    assert stopped == [cut_at_stop(text, stops) for text in free]
    assert len(stopped[1]) <= 6 and len(stopped[3]) <= 4
    assert not any(stop in text for text in stopped for stop in stops)


def test_long_prompts_are_cut_from_the_left(generator, monkeypatch):
    monkeypatch.setattr(generator, "max_positions", 40)
    monkeypatch.setattr(generator, "n_truncated", 0)
    ids = generator.encode([PROMPTS[1] * 3])[0]
    assert len(ids) > 40
    cut = generator.fit(ids, max_new_tokens=16)  # room for min(16, 40 // 4) = 10 new tokens
    assert len(cut) == 30 and cut[0] == ids[0] and cut[1:] == ids[-29:] and generator.n_truncated == 1
    assert generator.fit(ids[:25], max_new_tokens=16) == ids[:25]  # 25 + 10 fit: the context ends generation
    texts = generator.generate([PROMPTS[1] * 3, PROMPTS[0]], Sampling(max_new_tokens=16))
    assert len(generator.tokenizer(texts[0][0], add_special_tokens=False)["input_ids"]) <= 12


def test_cut_at_stop():
    assert cut_at_stop("a\ndef b\nclass", ("\nclass", "\ndef")) == "a"
    assert cut_at_stop("abc", ()) == "abc" and cut_at_stop("abc", ("",)) == "abc"


def test_sampling_validation():
    with pytest.raises(ValueError):
        Sampling(n=0)
    with pytest.raises(ValueError):
        Sampling(top_p=0)
    assert Sampling(stop=["\ndef", ""]).stop == ("\ndef",)


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_generator(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------
# Back-end selection and the vLLM path
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("importable", "cuda", "expected"), [
    (False, False, "hf"), (False, True, "hf"), (True, False, "hf"), (True, True, "vllm")])
def test_auto_backend(monkeypatch, importable, cuda, expected):
    monkeypatch.setattr(generation, "vllm_importable", lambda: importable)
    monkeypatch.setattr(generation, "cuda_available", lambda: cuda)
    assert generation.select_backend("auto") == expected
    assert generation.select_backend("hf") == "hf"
    if expected == "hf":
        with pytest.raises(ValueError, match="needs the vllm package and a CUDA device"):
            generation.select_backend("vllm")
    with pytest.raises(ValueError, match="unknown generation backend"):
        generation.select_backend("tgi")


def test_vllm_absent_here_means_hf(tiny_model):
    if generation.vllm_importable() and generation.cuda_available():
        pytest.skip("vLLM and CUDA are available")
    assert load_generator(tiny_model, progress=False).backend_name == "hf"


class FakeVLLM(types.ModuleType):
    """Records the calls the generator makes; answers each request with numbered texts."""

    def __init__(self):
        super().__init__("vllm")
        self.llm_kwargs, self.params, self.requests = None, [], []
        fake = self

        class SamplingParams:
            def __init__(self, **kwargs):
                self.kwargs = kwargs
                fake.params.append(kwargs)

        class LLM:
            def __init__(self, **kwargs):
                fake.llm_kwargs = kwargs

            def generate(self, requests, params, use_tqdm=True):
                fake.requests.append(requests)
                choice = types.SimpleNamespace
                return [types.SimpleNamespace(outputs=[choice(index=j, text=f"p{i}s{j}\ndef tail")
                                                       for j in range(params.kwargs["n"])][::-1])
                        for i in range(len(requests))]

        self.SamplingParams, self.LLM = SamplingParams, LLM


def test_vllm_path_builds_the_right_request(monkeypatch, tiny_model, generator):
    fake = FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(generation, "vllm_importable", lambda: True)
    monkeypatch.setattr(generation, "cuda_available", lambda: True)
    vllm_gen = load_generator(tiny_model, progress=False, tokenizer_model=LLAMA2_TOKENIZER)
    assert vllm_gen.backend_name == "vllm"
    assert fake.llm_kwargs == {"model": str(tiny_model), "tokenizer": str(tiny_model), "dtype": "bfloat16",
                               "tensor_parallel_size": 1}
    sampling = Sampling(max_new_tokens=512, temperature=0.1, top_p=0.95, n=2, stop=("\ndef", "\nclass"), seed=3)
    texts = vllm_gen.generate(PROMPTS[:3], sampling)
    assert fake.params[-1] == {"n": 2, "temperature": 0.1, "top_p": 0.95, "top_k": -1, "max_tokens": 512,
                               "stop": ["\ndef", "\nclass"], "seed": 3}
    assert fake.requests[-1] == [{"prompt_token_ids": ids} for ids in generator.encode(PROMPTS[:3])]
    assert texts == [[f"p{i}s0", f"p{i}s1"] for i in range(3)]  # input order, choices by index, stop cut
    greedy = vllm_gen.generate(PROMPTS[:2], Sampling(max_new_tokens=5, n=3))
    assert fake.params[-1]["n"] == 1 and fake.params[-1]["temperature"] == 0.0 and fake.params[-1]["stop"] is None
    assert greedy == [["p0s0\ndef tail"] * 3, ["p1s0\ndef tail"] * 3]


# ---------------------------------------------------------------------------------------------
# The benchmark scripts
# ---------------------------------------------------------------------------------------------

def _record(sp_backend, path, n=4):
    save_role_record(build_role_record(load_messages_jsonl(SHIPPED["lima"])[:n], sp_backend, max_length=128,
                                       progress=False), path)
    return path


def _every_job(tmp_path, record):
    """A --jobs spec with every benchmark of the model job, small."""
    return {
        "output_loss": {"output": str(tmp_path / "output_loss.json"), "run": "tiny-run", "train": str(record),
                        "heldout": str(record), "token_budget": 512, "limit": 3},
        "regen_bleu": {"dataset": str(SHIPPED["lima"]), "output": str(tmp_path / "bleu.json"),
                       "generations_output": str(tmp_path / "bleu.jsonl"), "max_new_tokens": 8, "limit": 3},
        "alpaca_eval": {"questions": str(DAVINCI), "output": str(tmp_path / "alpaca.json"), "max_new_tokens": 8,
                        "limit": 2},
        "mt_bench": {"questions": str(MT_QUESTIONS), "output": str(tmp_path / "mt.jsonl"), "max_new_tokens": 8,
                     "limit": 2},
        "humaneval": {"output": str(tmp_path / "humaneval_completions.jsonl"), "n_samples": 2, "max_new_tokens": 24,
                      "temperatures": [0.1, 0.7], "top_p": 0.95, "limit": 2},
    }


@pytest.mark.slow
def test_model_job_writes_every_benchmark_from_one_model_load(tiny_model, sp_backend, tmp_path, monkeypatch):
    jobs = _every_job(tmp_path, _record(sp_backend, tmp_path / "lima.parquet"))
    loads = []
    real_load = generation.load_causal_lm
    monkeypatch.setattr(generation, "load_causal_lm", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    stats_path = tmp_path / "model_outputs.json"
    run_script("eval_model_outputs.py", "--model", tiny_model, "--model-id", "tiny-run", "--tokenizer-model",
               LLAMA2_TOKENIZER, "--batch-size", 2, "--jobs", json.dumps(jobs), "--stats-output", stats_path,
               monkeypatch=monkeypatch)
    assert len(loads) == 1  # one model for the losses and every generation
    stats = json.loads(stats_path.read_text())
    assert list(stats["benchmarks"]) == list(JOB_TYPES)  # run order: losses, greedy, sampled
    assert all(s["seconds"] > 0 for s in stats["benchmarks"].values()) and "gpus" in stats["provenance"]
    assert stats["benchmarks"]["mt_bench"]["n_answers"] == 4 and stats["benchmarks"]["alpaca_eval"]["backend"] == "hf"

    loss = json.loads((tmp_path / "output_loss.json").read_text())
    assert (loss["benchmark"], loss["run"], len(loss["train"]["losses"])) == ("output_loss", "tiny-run", 3)
    assert loss["value"] == loss["heldout"]["mean"] == loss["train"]["mean"] > 0

    loaded = mt_bench.load_answers(tmp_path / "mt.jsonl")
    assert list(loaded) == [81, 82] and all(len(turns) == 2 for turns in loaded.values())
    record = json.loads((tmp_path / "mt.jsonl").read_text().splitlines()[0])
    assert set(record) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    assert record["model_id"] == "tiny-run" and record["choices"][0]["index"] == 0

    from alpaca_eval import utils as alpaca_utils

    frame = alpaca_utils.load_or_convert_to_dataframe(str(tmp_path / "alpaca.json"))
    reference = json.loads(DAVINCI.read_text())[:2]
    assert list(frame["instruction"]) == [r["instruction"] for r in reference]
    assert list(frame["dataset"]) == [r["dataset"] for r in reference]
    assert alpaca_utils.get_generator_name(None, frame) == "tiny-run"
    assert frame["output"].map(lambda x: isinstance(x, str)).all()

    bleu = json.loads((tmp_path / "bleu.json").read_text())
    assert (bleu["benchmark"], bleu["kind"], bleu["status"], bleu["n"]) == ("regen_bleu", "generation", "scored", 3)
    rows = [json.loads(line) for line in (tmp_path / "bleu.jsonl").read_text().splitlines()]
    references = [regeneration_pair(e)[1] for e in load_messages_jsonl(SHIPPED["lima"])[:3]]
    assert [r["reference"] for r in rows] == references
    rescored = bleu_scores([r["generation"] for r in rows], references)
    assert bleu["value"] == pytest.approx(rescored["mean_sentence_bleu"]) == bleu["mean_sentence_bleu"]
    assert bleu["corpus_bleu"] == pytest.approx(rescored["corpus_bleu"])
    assert 0.0 <= bleu["value"] < 100.0  # a random model does not regenerate LIMA

    # HumanEval: the completions, then the sandboxed scoring job
    completions = [json.loads(line) for line in (tmp_path / "humaneval_completions.jsonl").read_text().splitlines()]
    assert len(completions) == 2 * 2 * 2 and {c["temperature"] for c in completions} == {0.1, 0.7}
    out, samples = tmp_path / "humaneval.json", tmp_path / "samples.jsonl"
    run_script("eval_humaneval.py", "--completions", tmp_path / "humaneval_completions.jsonl", "--stats", stats_path,
               "--workers", "2", "--output", out, "--samples-output", samples, monkeypatch=monkeypatch)
    result = json.loads(out.read_text())
    assert (result["benchmark"], result["kind"], result["status"], result["backend"]) == \
        ("humaneval", "generation", "scored", "hf")
    assert 0.0 <= result["value"] <= 1.0
    assert set(result["by_temperature"]) == {"0.1", "0.7"} and result["best_temperature"] in (0.1, 0.7)
    assert result["value"] == max(v["pass@1"] for v in result["by_temperature"].values())
    assert (result["n_samples"], result["n_problems"], result["limit"]) == (2, 2, 2)
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert {tuple(sorted(r)) for r in rows} == {("completion", "passed", "result", "task_id", "temperature")}
    assert [(r["task_id"], r["completion"]) for r in rows] == [(c["task_id"], c["completion"]) for c in completions]
    assert sum(r["passed"] for r in rows if r["temperature"] == 0.1) / 4 == result["by_temperature"]["0.1"]["pass@1"]
    assert result["n_empty"] == sum(not r["completion"].strip() for r in rows)


def test_model_job_scores_losses_before_vllm_starts(monkeypatch, tiny_model, sp_backend, tmp_path):
    """With vLLM the losses come from a transformers model that is gone before vLLM takes the GPU."""
    fake, events = FakeVLLM(), []
    real_init = fake.LLM.__init__
    monkeypatch.setattr(fake.LLM, "__init__", lambda self, **k: events.append("vllm") or real_init(self, **k))
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(generation, "vllm_importable", lambda: True)
    monkeypatch.setattr(generation, "cuda_available", lambda: True)
    from imrepro.train import scoring

    real_scoring = scoring.load_scoring_model
    monkeypatch.setattr(scoring, "load_scoring_model", lambda *a: events.append("score") or real_scoring(*a))
    every = _every_job(tmp_path, _record(sp_backend, tmp_path / "r.parquet"))
    jobs = parse_jobs({name: every[name] for name in ("output_loss", "alpaca_eval")})
    stats = run_jobs(tiny_model, jobs, model_id="m", tokenizer_model=LLAMA2_TOKENIZER, progress=False)
    assert events == ["score", "vllm"]
    assert stats["benchmarks"]["alpaca_eval"]["backend"] == "vllm"
    assert json.loads((tmp_path / "alpaca.json").read_text())[0]["output"] == "p0s0\ndef tail"


def test_output_loss_alone_loads_no_generator(monkeypatch, tiny_model, sp_backend, tmp_path):
    """Output loss alone scores tokenized records: no tokenizer or generator is loaded (seconds per study job)."""
    from imrepro.eval import model_outputs

    monkeypatch.setattr(model_outputs, "load_generator", lambda *a, **k: pytest.fail("a generator was loaded"))
    every = _every_job(tmp_path, _record(sp_backend, tmp_path / "r.parquet"))
    stats = run_jobs(tiny_model, parse_jobs({"output_loss": every["output_loss"]}), model_id="m", progress=False)
    assert stats["benchmarks"]["output_loss"]["n_train"] == 3
    assert len(json.loads((tmp_path / "output_loss.json").read_text())["heldout"]["losses"]) == 3


HUMANEVAL = {"output": "h.jsonl", "n_samples": 2, "temperatures": [0.1], "top_p": 0.95, "max_new_tokens": 8}


@pytest.mark.parametrize("spec, message", [
    ({}, "--jobs: expected a non-empty JSON object"),
    ({"mmlu": {}}, "--jobs: unknown benchmark(s) mmlu"),
    ({"humaneval": {"output": "h.jsonl", "samples": 3}}, "--jobs.humaneval: unknown field(s) samples"),
    ({"mt_bench": {"output": "a.jsonl", "max_new_tokens": 8}}, "--jobs.mt_bench: missing field(s) questions"),
    ({"humaneval": {**HUMANEVAL, "n_samples": 0}}, "--jobs.humaneval.n_samples: expected an integer >= 1"),
    ({"humaneval": {**HUMANEVAL, "temperatures": []}}, "--jobs.humaneval.temperatures: expected a non-empty"),
    ({"humaneval": {"output": "h.jsonl", "n_samples": 2}}, "--jobs.humaneval: missing field(s) temperatures"),
    ({"output_loss": {"output": None, "run": "r"}}, "--jobs.output_loss.output: may not be null"),
])
def test_model_job_spec_errors_name_the_field(spec, message):
    with pytest.raises(ValueError) as err:
        parse_jobs(spec)
    assert message in str(err.value)


def test_model_job_reports_a_missing_model_or_input(tmp_path, monkeypatch, caplog, tiny_model):
    jobs = {"alpaca_eval": {"questions": str(DAVINCI), "output": str(tmp_path / "x.json"), "max_new_tokens": 4}}
    for model, spec, message in (
        (tmp_path / "missing", jobs, "not a model directory (no config.json)"),
        (tiny_model, {"alpaca_eval": {**jobs["alpaca_eval"], "questions": str(tmp_path / "q.json")}},
         "q.json: input of AlpacaEvalJob not found"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run_script("eval_model_outputs.py", "--model", model, "--model-id", "m", "--jobs", json.dumps(spec),
                       "--stats-output", tmp_path / "s.json", monkeypatch=monkeypatch)
        assert exit_info.value.code == 1 and message in caplog.text
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "s.json").exists()


def test_humaneval_scoring_rejects_bad_completions(tmp_path, monkeypatch, caplog):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"model": "m", "benchmarks": {}}))
    completions = tmp_path / "c.jsonl"
    completions.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "x"}) + "\n")
    for expected in ("stats.json: no humaneval entry", "c.jsonl:1: expected {task_id, temperature, completion}"):
        with pytest.raises(SystemExit):
            run_script("eval_humaneval.py", "--completions", completions, "--stats", stats, "--workers", "1",
                       "--output", tmp_path / "o.json",
                       "--samples-output", tmp_path / "s.jsonl", monkeypatch=monkeypatch)
        assert expected in caplog.text
        stats.write_text(json.dumps({"model": "m", "benchmarks": {"humaneval": {}}}))
    assert not (tmp_path / "o.json").exists()


class RecordingGenerator:
    """Stands in for a Generator: records prompts and sampling, answers 'A<k>'."""

    backend_name, n_truncated = "fake", 0
    chat_prompt = staticmethod(chat_prompt)  # the Tulu format, as a Generator without a chat template

    def __init__(self):
        self.calls = []

    def generate(self, prompts, sampling, desc=""):
        self.calls.append((list(prompts), sampling))
        return [[f" A{len(self.calls)}.{k} "] for k in range(len(prompts))]


def test_mt_bench_turn_two_prompt_and_temperatures():
    questions = mt_bench.load_questions(MT_QUESTIONS)
    common = {"max_new_tokens": 32, "seed": 0, "model_id": "m"}
    fake = RecordingGenerator()
    records, stats = answers.mt_bench_answers(fake, questions, temperature_policy="fastchat", **common)
    assert stats == {"n_questions": 80, "n_answers": 160, "n_empty": 0, "temperature_policy": "fastchat"}
    temps = {round(s.temperature, 1): s for _, s in fake.calls}
    assert set(temps) == {0.0, 0.1, 0.7} and temps[0.7].top_k == 50 and temps[0.0].top_k == 0
    prompts = {p for call_prompts, _ in fake.calls for p in call_prompts}
    q = questions[0]
    answer_1 = records[0]["choices"][0]["turns"][0]
    assert answer_1 == answer_1.strip() and answer_1.startswith("A")
    assert chat_prompt([{"role": "user", "content": q["turns"][0]}, {"role": "assistant", "content": answer_1},
                        {"role": "user", "content": q["turns"][1]}]) in prompts
    greedy = RecordingGenerator()
    answers.mt_bench_answers(greedy, questions, temperature_policy="greedy", **common)
    assert {s.temperature for _, s in greedy.calls} == {0.0}
    with pytest.raises(ValueError, match="q.jsonl: no questions"):
        answers.mt_bench_answers(greedy, [], source="q.jsonl", **common)


def test_bleu_of_references_against_themselves_is_100():
    references = [regeneration_pair(e)[1] for e in load_messages_jsonl(SHIPPED["alpagasus_alpaca_5k"])[:50]]
    scores = bleu_scores(references, references)
    assert scores["corpus_bleu"] == pytest.approx(100.0)
    assert scores["sentence_bleu"] == pytest.approx([100.0] * 50)
    half = bleu_scores(references[:25] + references[26:] + references[25:26], references)  # one pair swapped away
    assert half["corpus_bleu"] < 100 and half["mean_sentence_bleu"] < 100
    assert "tok:13a" in scores["signature"]["corpus"]


def test_regeneration_pair_takes_the_first_turn():
    multi = next(e for e in load_messages_jsonl(SHIPPED["lima"]) if len(e["messages"]) >= 4)
    prompt, reference = regeneration_pair(multi)
    assert prompt == multi["messages"][:1] and reference == multi["messages"][1]["content"]
    with pytest.raises(ValueError, match="no user turn followed by an assistant turn"):
        regeneration_pair({"id": "x", "messages": [{"role": "assistant", "content": "a"}]})
