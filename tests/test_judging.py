"""The judging scripts end to end: MT-Bench (eval_mt_bench_judge.py) and AlpacaEval 1.0/2.0 (eval_alpaca_eval.py).

Judges are real HTTP servers: the script's own served judge (the echo-score double or a tiny random Llama), the
real ``judge_server`` HTTP layer over a scripted backend (chosen verdicts), or a stdlib stand-in that answers
garbage (HTML, no choices) that the real server never sends.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, RESOURCES
from imrepro.eval.judge import alpaca_eval_judge as ae
from imrepro.eval.judge import mt_bench
from imrepro.eval.judge.client import JudgeClient, JudgeResponseError
from imrepro.eval.judge.server import Completion, serve_in_thread
from stub_endpoint import StubEndpoint

MT = RESOURCES / "eval" / "mt_bench"
AE = RESOURCES / "eval" / "alpaca_eval"
KEY_ENV = "IMREPRO_TEST_JUDGING_KEY"
SECRET = "sk-test-JUDGING-SECRET-0123456789"
MT_QUESTIONS = (81, 111, 121, 131)  # writing, math, coding (both with GPT-4 references), extraction
RESULT_KEYS_MT = {"benchmark", "kind", "status", "value", "turn_1", "turn_2", "by_category", "n_questions",
                  "n_judgments", "n_unparseable", "judge"}
RESULT_KEYS_AE = {"benchmark", "kind", "status", "value", "lc_win_rate", "standard_error", "n_total",
                  "n_unparseable", "avg_length", "reference", "judge"}


def run_script(script: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, f"workflow_scripts/{script}", *map(str, args)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=300)


def local_judge_posts(proc: subprocess.CompletedProcess) -> int:
    """The POST count the script's own served judge logs when it stops."""
    marker = "local judge server answered "
    (line,) = [line for line in proc.stderr.splitlines() if marker in line]
    return int(line.split(marker)[1].split()[0])


# ---------------------------------------------------------------------------------------------
# MT-Bench
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def mt_inputs(tmp_path) -> dict:
    """A 4-question file (3 judged with --limit 3) and FastChat answers whose turns carry markers."""
    questions = [q for q in mt_bench.load_questions(MT / "question.jsonl") if q["question_id"] in MT_QUESTIONS]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    answers = [{"question_id": q["question_id"], "answer_id": f"a{q['question_id']}", "model_id": "tiny-run",
                "choices": [{"index": 0, "turns": [f"<{q['question_id']}-1>", f"<{q['question_id']}-2>"]}],
                "tstamp": 0.0} for q in questions]
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    return {"dir": tmp_path, "args": [
        "--answers", tmp_path / "answers.jsonl", "--questions", tmp_path / "questions.jsonl",
        "--reference", MT / "reference_answer" / "gpt-4.jsonl", "--judge-prompts", MT / "judge_prompts.jsonl",
        "--cache", tmp_path / "cache.jsonl", "--output", tmp_path / "mt.json",
        "--judgments-output", tmp_path / "judgments.jsonl", "--limit", "3"]}


def test_mt_bench_served_echo_judge_and_rerun_from_cache(mt_inputs):
    tmp = mt_inputs["dir"]
    args = [*mt_inputs["args"], "--judge-model", "demo-judge", "--serve-backend", "echo-score", "--label", "demo"]
    first = run_script("eval_mt_bench_judge.py", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert local_judge_posts(first) == 6
    result = json.loads((tmp / "mt.json").read_text())
    judgments = [json.loads(line) for line in (tmp / "judgments.jsonl").read_text().splitlines()]

    assert set(result) >= RESULT_KEYS_MT and result["benchmark"] == "mt_bench" and result["kind"] == "judge"
    assert result["n_questions"] == 3 and result["n_judgments"] == 6 and result["n_unparseable"] == 0
    assert result["judge"] == {"model": "demo-judge", "base_url": "local:echo-score", "label": "demo",
                               "served_backend": "echo-score"}
    assert [(j["question_id"], j["turn"]) for j in judgments] == [(81, 1), (111, 1), (121, 1), (81, 2), (111, 2),
                                                                  (121, 2)]
    assert all(j["model"] == "tiny-run" and j["score"] == mt_bench.parse_score(j["judgment"]) for j in judgments)
    assert "[The Start of Reference Answer]" in judgments[1]["user_prompt"]  # math uses GPT-4's reference
    scores = [j["score"] for j in judgments]
    assert result["value"] == pytest.approx(sum(scores) / 6)
    assert result["turn_1"] == pytest.approx(sum(scores[:3]) / 3)
    assert result["by_category"] == pytest.approx({"writing": (scores[0] + scores[3]) / 2,
                                                   "math": (scores[1] + scores[4]) / 2,
                                                   "coding": (scores[2] + scores[5]) / 2})

    (tmp / "mt.json").unlink()
    rerun = run_script("eval_mt_bench_judge.py", *args)  # a new server on a new port: same cache scope
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert local_judge_posts(rerun) == 0 and "judge: 0 requests" in rerun.stderr
    assert json.loads((tmp / "mt.json").read_text()) == result


class GarbageServer(StubEndpoint):
    """A stand-in endpoint choosing its answer by a marker in the prompt: an HTML page, a completion without
    choices, a verdict without a rating, or a valid '[[7]]'."""

    def __init__(self, default: str = "verdict"):
        super().__init__()
        self.posts, self.auth, self.default = 0, set(), default

    def reply(self, body, headers):
        self.posts += 1
        self.auth.add(headers.get("Authorization"))
        prompt = body["messages"][-1]["content"]
        kind = next((k for k in ("html", "no-choices", "no-rating") if f"<{k}>" in prompt), self.default)
        if kind == "html":
            return 200, "text/html", b"<html><body>502 Bad Gateway</body></html>", {}
        completion = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        text = "Fine answer. Rating: [[7]]" if kind == "verdict" else "I would rather not rate this."
        completion["choices"] = [] if kind == "no-choices" else [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]
        return 200, "application/json", json.dumps(completion).encode(), {}


def _mark_answers(path: Path, marks: dict[tuple[int, int], str]) -> None:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        for turn in (1, 2):
            if (record["question_id"], turn) in marks:
                record["choices"][0]["turns"][turn - 1] += f" <{marks[record['question_id'], turn]}>"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_mt_bench_counts_garbage_and_unparseable_verdicts(mt_inputs):
    tmp = mt_inputs["dir"]
    # a turn-2 prompt shows both answers, so only turn-2 marks leave the turn-1 verdicts alone
    _mark_answers(tmp / "answers.jsonl", {(81, 2): "html", (111, 2): "no-choices", (121, 2): "no-rating"})
    with GarbageServer() as server:
        args = [*mt_inputs["args"], "--judge-model", "gpt-4", "--base-url", server.base_url, "--api-key-env", KEY_ENV]
        proc = run_script("eval_mt_bench_judge.py", *args, env={KEY_ENV: SECRET})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert server.posts == 6 and server.auth == {f"Bearer {SECRET}"}
        result = json.loads((tmp / "mt.json").read_text())
        assert result["n_judgments"] == 6 and result["n_unparseable"] == 3 and result["n_invalid_responses"] == 2
        assert sorted(result["unparseable"]) == [[81, 2], [111, 2], [121, 2]]
        assert result["value"] == result["turn_1"] == 7.0 and result["turn_2"] is None  # parsed verdicts only
        assert result["judge"] == {"model": "gpt-4", "base_url": server.base_url, "label": "gpt-4",
                                   "served_backend": None}
        errors = {(j["question_id"], j["turn"]): j.get("error", "") for j in map(
            json.loads, (tmp / "judgments.jsonl").read_text().splitlines())}
        assert "non-JSON body" in errors[81, 2] and "without choices" in errors[111, 2] and not errors[121, 2]

        rerun = run_script("eval_mt_bench_judge.py", *args, env={KEY_ENV: SECRET})
        assert rerun.returncode == 0 and server.posts == 6 + 2  # only the two invalid responses were not cached
    written = [proc.stdout, proc.stderr, rerun.stderr, *(p.read_text() for p in tmp.iterdir() if p.is_file())]
    assert not any(SECRET in text for text in written)


def test_mt_bench_all_garbage_is_an_error(mt_inputs):
    tmp = mt_inputs["dir"]
    with GarbageServer(default="html") as server:
        proc = run_script("eval_mt_bench_judge.py", *mt_inputs["args"], "--judge-model", "gpt-4",
                          "--base-url", server.base_url, "--api-key-env", KEY_ENV, env={KEY_ENV: SECRET})
    assert proc.returncode == 1
    assert "none of the 6 judge responses was a chat completion" in proc.stderr and server.base_url in proc.stderr
    assert not (tmp / "mt.json").exists() and not (tmp / "judgments.jsonl").exists()


def _closed_port_url() -> str:
    with GarbageServer() as server:
        return server.base_url  # bound, then closed: connections are refused


def test_endpoint_down_exits_1_naming_url_and_key_variable(mt_inputs, tmp_path):
    url = _closed_port_url()
    proc = run_script("eval_mt_bench_judge.py", *mt_inputs["args"], "--judge-model", "gpt-4", "--base-url", url,
                      "--api-key-env", KEY_ENV, "--max-attempts", "2", "--initial-backoff-s", "0.01",
                      env={KEY_ENV: SECRET})
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    assert f"judge endpoint {url} failed 2 times (last: APIConnectionError)" in error and f"${KEY_ENV}" in error
    assert "Traceback" not in proc.stderr and SECRET not in proc.stderr
    assert not (mt_inputs["dir"] / "mt.json").exists() and not (mt_inputs["dir"] / "judgments.jsonl").exists()

    outputs, _ = _ae_outputs(tmp_path, ["plain"] * 3)
    proc = run_script("eval_alpaca_eval.py", "--version", "1", "--outputs", outputs, "--reference",
                      AE / "text_davinci_003_outputs.json", "--judge-model", "gpt-4", "--base-url", url,
                      "--api-key-env", KEY_ENV, "--cache", tmp_path / "c.jsonl", "--output", tmp_path / "ae.json",
                      "--annotations-output", tmp_path / "ann.json", "--max-attempts", "2",
                      "--initial-backoff-s", "0.01", env={KEY_ENV: SECRET})
    assert proc.returncode == 1 and f"judge endpoint {url} failed 2 times" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ae.json").exists() and not (tmp_path / "ann.json").exists()


def test_missing_key_variable_is_named(mt_inputs):
    proc = run_script("eval_mt_bench_judge.py", *mt_inputs["args"], "--judge-model", "gpt-4",
                      "--base-url", "https://api.example.invalid/v1", "--api-key-env", "IMREPRO_SURELY_UNSET_KEY")
    assert proc.returncode == 1
    assert "environment variable IMREPRO_SURELY_UNSET_KEY, which is not set" in proc.stderr.splitlines()[-1]
    assert not (mt_inputs["dir"] / "mt.json").exists()


def test_invalid_responses_are_neither_cached_nor_retried(tmp_path):
    with GarbageServer() as server:
        client = JudgeClient(server.base_url, api_key_env=None, cache_path=tmp_path / "c.jsonl")
        for marker, message in (("html", "non-JSON body"), ("no-choices", "without choices")):
            with pytest.raises(JudgeResponseError, match=message):
                client.chat([{"role": "user", "content": f"<{marker}>"}], "judge")
        assert client.chat([{"role": "user", "content": "ok"}], "judge").text.endswith("[[7]]")
        assert server.posts == 3
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# AlpacaEval
# ---------------------------------------------------------------------------------------------

def _ae_outputs(tmp: Path, answers: list[str], reference: Path = AE / "text_davinci_003_outputs.json",
                offset: int = 0) -> tuple[Path, list[dict]]:
    references = json.loads(reference.read_text())[offset:offset + len(answers)]
    outputs = [{"instruction": r["instruction"], "output": f"{answer} answer to: {r['instruction'][:30]}",
                "generator": "tiny-run", "dataset": r["dataset"]}
               for r, answer in zip(references, answers, strict=True)]
    path = tmp / "outputs.json"
    path.write_text(json.dumps(outputs))
    return path, outputs


def _ae_args(tmp: Path, version: int, outputs: Path, *judge_args) -> list:
    reference = AE / ("text_davinci_003_outputs.json" if version == 1 else "gpt4_1106_preview_outputs.json")
    return ["--version", version, "--outputs", outputs, "--reference", reference, "--limit", "3",
            "--cache", tmp / "cache.jsonl", "--output", tmp / "ae.json", "--annotations-output", tmp / "ann.json",
            *judge_args]


class RankingBackend:
    """An AlpacaEval 1.0 judge with chosen verdicts: it ranks first the output marked <<GOOD>> (or the one not
    marked <<BAD>>), and writes no ranking at all when an output is marked <<GARBLED>>."""

    def complete(self, messages, max_tokens, top_logprobs, stop):
        prompt = messages[-1]["content"]
        if "<<GARBLED>>" in prompt:
            return Completion("I think both are fine, honestly.", "stop", 10, 7)
        model_is_first = any(m in prompt.split('"model": "model_2"')[0] for m in ("<<GOOD>>", "<<BAD>>"))
        first_wins = model_is_first == ("<<GOOD>>" in prompt)
        rank = 1 if first_wins else 2
        return Completion(f"[{{'model': 'model_1', 'rank': {rank}}}, {{'model': 'model_2', 'rank': {3 - rank}}}]",
                          "stop", 10, 20)


def test_alpaca_eval_1_excludes_unparseable_verdicts(tmp_path):
    """1 win, 1 loss, 1 verdict without a ranking: win rate 50 over 2, and the third counted, not fatal."""
    outputs, records = _ae_outputs(tmp_path, ["<<GOOD>>", "<<BAD>>", "<<GARBLED>>", "<<GOOD>>"])
    with serve_in_thread(RankingBackend(), "gpt-4") as server:
        args = _ae_args(tmp_path, 1, outputs, "--judge-model", "gpt-4", "--base-url", server.base_url,
                        "--api-key-env", "")
        proc = run_script("eval_alpaca_eval.py", *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert server.stats["POST /v1/chat/completions"] == 3
        result = json.loads((tmp_path / "ae.json").read_text())
        rerun = run_script("eval_alpaca_eval.py", *args)
        assert rerun.returncode == 0 and server.stats["POST /v1/chat/completions"] == 3  # all from the cache
    assert set(result) >= RESULT_KEYS_AE
    assert result["benchmark"] == "alpaca_eval_1" and result["reference"] == "text_davinci_003"
    assert result["value"] == result["win_rate"] == 50.0 and result["n_wins"] == 1 and result["n_wins_base"] == 1
    assert result["n_total"] == 2 and result["n_unparseable"] == 1 and result["n_examples"] == 3
    assert result["standard_error"] == pytest.approx(100 * math.sqrt(0.5) / math.sqrt(2))
    assert result["avg_length"] == int(sum(len(r["output"]) for r in records[:3]) / 3)
    assert result["lc_win_rate"] is None and "1.0" in result["lc_note"]
    annotations = json.loads((tmp_path / "ann.json").read_text())
    assert [a["instruction"] for a in annotations] == [r["instruction"] for r in records[:3]]
    assert [a["preference"] for a in annotations] == [2.0, 1.0, None]  # 2: the model's output won
    assert json.loads((tmp_path / "ae.json").read_text()) == result


def test_alpaca_eval_counts_invalid_responses(tmp_path):
    """A non-JSON answer is an unparseable verdict (counted twice: unparseable, and invalid); all of them fail."""
    outputs, _ = _ae_outputs(tmp_path, ["<html>", "plain", "plain"])
    with GarbageServer(default="no-rating") as server:
        args = _ae_args(tmp_path, 1, outputs, "--judge-model", "gpt-4", "--base-url", server.base_url,
                        "--api-key-env", "")
        proc = run_script("eval_alpaca_eval.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "ae.json").read_text())
    assert result["n_unparseable"] == 3 and result["n_invalid_responses"] == 1 and result["value"] is None

    outputs, _ = _ae_outputs(tmp_path, ["<html>"] * 3)
    with GarbageServer() as server:
        proc = run_script("eval_alpaca_eval.py", *_ae_args(tmp_path / "sub", 1, outputs, "--judge-model", "gpt-4",
                                                           "--base-url", server.base_url, "--api-key-env", ""))
    assert proc.returncode == 1 and "none of the 3 judge responses was a chat completion" in proc.stderr
    assert not (tmp_path / "sub" / "ae.json").exists()


def test_alpaca_eval_1_served_echo_judge(tmp_path):
    outputs, _ = _ae_outputs(tmp_path, ["one", "two", "three"])
    proc = run_script("eval_alpaca_eval.py", *_ae_args(tmp_path, 1, outputs, "--judge-model", "echo-judge",
                                                       "--serve-backend", "echo-score", "--label", "demo-judge"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert local_judge_posts(proc) == 3
    result = json.loads((tmp_path / "ae.json").read_text())
    assert result["n_total"] == 3 and result["n_unparseable"] == 0
    assert any(result["value"] == pytest.approx(100 * k / 3) for k in range(4))
    assert result["judge"] == {"model": "echo-judge", "base_url": "local:echo-score", "label": "demo-judge",
                               "served_backend": "echo-score"}


@pytest.mark.slow
def test_alpaca_eval_1_random_model_judge_is_counted_unparseable(tiny_model, tmp_path):
    """A random model cannot write a ranking: every verdict is unparseable, the job still succeeds."""
    outputs, _ = _ae_outputs(tmp_path, ["a", "b", "c"])
    proc = run_script("eval_alpaca_eval.py", *_ae_args(tmp_path, 1, outputs, "--judge-model", "demo-judge",
                                                       "--serve-model", tiny_model, "--serve-max-new-tokens", "24"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "ae.json").read_text())
    assert result["n_unparseable"] == 3 and result["n_total"] == 0 and result["value"] is None
    assert result["status"] == "scored" and result["judge"]["base_url"] == f"local:{tiny_model}"


@pytest.mark.slow
def test_alpaca_eval_2_served_tiny_model_and_rerun(tiny_model, tmp_path):
    """AlpacaEval 2.0's logprob classifier with the tiny model as judge, on 3 instructions from the middle of the
    set; the length-controlled win rate needs alpaca_eval's hub data, so offline it is null with the reason."""
    outputs, _ = _ae_outputs(tmp_path, ["x", "y y", "z z z"], AE / "gpt4_1106_preview_outputs.json", offset=400)
    args = _ae_args(tmp_path, 2, outputs, "--judge-model", "demo-judge", "--serve-model", tiny_model)
    proc = run_script("eval_alpaca_eval.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "ae.json").read_text())
    assert result["benchmark"] == "alpaca_eval_2" and result["reference"] == "gpt4_1106_preview"
    assert result["n_total"] == 3 and result["n_unparseable"] == 0 and 0.0 < result["value"] < 100.0
    assert result["lc_win_rate"] is None and "df_gamed.csv" in result["lc_note"]
    assert "not computed offline" in result["lc_note"]  # skipped at once, not retried
    annotations = json.loads((tmp_path / "ann.json").read_text())
    assert all(1.0 < a["preference"] < 2.0 for a in annotations)  # a probability, not a binary verdict

    rerun = run_script("eval_alpaca_eval.py", *args)
    assert rerun.returncode == 0 and local_judge_posts(rerun) == 0
    assert json.loads((tmp_path / "ae.json").read_text()) == result


def test_references_are_cut_to_the_outputs():
    references = json.loads((AE / "gpt4_1106_preview_outputs.json").read_text())
    assert len(references) == 805
    outputs = [{"instruction": references[i]["instruction"], "output": "o"} for i in (3, 1, 804, 7)]
    kept, refs, positions = ae.pair_with_reference(outputs, references, limit=3)
    assert kept == outputs[:3] and refs == [references[3], references[1], references[804]] and positions == [3, 1, 804]
    with pytest.raises(ValueError, match="record 1 .* is not in ref.json"):
        ae.pair_with_reference([outputs[0], {"instruction": "unknown", "output": "o"}], references,
                               references_name="ref.json")
    with pytest.raises(ValueError, match="record 1 repeats an instruction"):
        ae.pair_with_reference([outputs[0], outputs[0]], references)
    with pytest.raises(ValueError, match="record 0 has no string 'instruction' and 'output'"):
        ae.pair_with_reference([{"instruction": "x"}], references)


def test_length_controlled_win_rate_when_alpaca_eval_has_its_data(tmp_path, monkeypatch):
    """With df_gamed.csv at hand (here a synthetic one) alpaca_eval's GLM runs on our annotations, looking each
    instruction up by its position in the 805-instruction set."""
    import numpy as np
    from alpaca_eval.metrics import glm_winrate

    rng = np.random.default_rng(0)
    gamed = pd.concat([pd.DataFrame({"model": name, "index": range(805), "instruction_difficulty": difficulty,
                                     "preference": rng.uniform(0, 1, 805), "std_delta_len": rng.normal(0, 1, 805),
                                     "not_gamed_baseline": False})
                       for name, difficulty in (("gamed_a", rng.normal(0, 1, 805)),) * 2])
    gamed.to_csv(tmp_path / "df_gamed.csv", index=False)
    monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda **kwargs: str(tmp_path / "df_gamed.csv"))
    monkeypatch.delenv("HF_HUB_OFFLINE")  # online as far as our code knows; the download above is stubbed

    references = json.loads((AE / "gpt4_1106_preview_outputs.json").read_text())
    picked = list(range(700, 740))
    annotations = [{"instruction": references[i]["instruction"], "output_1": references[i]["output"],
                    "output_2": "x" * (50 + 10 * n), "generator_1": "gpt4_1106_preview", "generator_2": "tiny",
                    "annotator": "weighted_alpaca_eval_gpt4_turbo", "preference": 1.0 + (n % 3) / 2}
                   for n, i in enumerate(picked)]
    annotations[5]["preference"] = None
    metrics = ae.winrate_metrics(annotations, 2, {references[i]["instruction"]: i for i in picked})
    assert metrics["n_unparseable"] == 1 and metrics["n_total"] == 39 and metrics["lc_note"] is None
    assert 0.0 < metrics["lc_win_rate"] < 100.0 and math.isfinite(metrics["lc_standard_error"])
