"""Judges: the model-backed OpenAI-compatible server, the caching/retrying client, MT-Bench grading, and
alpaca_eval talking to the server.

The model-backed server is real (a tiny random Llama built by the workflow's own script). Fault injection
(503s, 400s) uses a small stdlib stand-in server, and the few tests that need chosen verdicts use a scripted
backend behind the real HTTP layer.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, RESOURCES
from imrepro.eval.judge import mt_bench
from imrepro.eval.judge.client import (
    JsonlCache,
    JudgeClient,
    JudgeConfigError,
    JudgeRequestError,
    JudgeUnavailableError,
    request_key,
)
from imrepro.eval.judge.server import Completion, EchoScoreBackend, HFBackend, serve_in_thread
from stub_endpoint import StubEndpoint

SERVED = "demo-judge"
KEY_ENV = "IMREPRO_TEST_JUDGE_KEY"
SECRET = "sk-test-SECRET-0123456789abcdef"
MT = RESOURCES / "eval" / "mt_bench"
DAVINCI = RESOURCES / "eval" / "alpaca_eval" / "text_davinci_003_outputs.json"
ALPACA_CONFIGS = Path(importlib.util.find_spec("alpaca_eval").submodule_search_locations[0]) / "evaluators_configs"


def _post_count(server) -> int:
    return server.stats["POST /v1/chat/completions"]


@pytest.fixture(scope="module")
def model_server(tiny_model):
    backend = HFBackend(tiny_model, max_new_tokens=8, extra_top_logprobs=("m", "M"))
    with serve_in_thread(backend, SERVED) as running:
        yield running


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return KEY_ENV


# ---------------------------------------------------------------------------------------------
# The model-backed server
# ---------------------------------------------------------------------------------------------

def test_openai_sdk_calls_the_model_server(model_server):
    import openai

    client = openai.OpenAI(base_url=model_server.base_url, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == [SERVED]
    messages = [{"role": "system", "content": "You are a judge."}, {"role": "user", "content": "Rate this: 2+2=4"}]
    first = client.chat.completions.create(model=SERVED, messages=messages, max_tokens=5, temperature=0)
    again = client.chat.completions.create(model=SERVED, messages=messages, max_tokens=5, temperature=0)
    assert first.object == "chat.completion" and first.model == SERVED
    choice = first.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length") and choice.logprobs is None
    assert 0 < first.usage.completion_tokens <= 5 and first.usage.prompt_tokens > 5
    assert again.choices[0].message.content == choice.message.content  # greedy: deterministic
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=messages, max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=SERVED, messages=messages, max_tokens=2, top_logprobs=3)


def test_logprobs_and_top_logprobs_shape(model_server):
    body = {"model": SERVED, "messages": [{"role": "user", "content": "Which is better, m or M?"}],
            "max_tokens": 3, "logprobs": True, "top_logprobs": 5}
    request = urllib.request.Request(f"{model_server.base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.load(response)
    content = payload["choices"][0]["logprobs"]["content"]
    assert 1 <= len(content) <= 3
    for position in content:
        assert isinstance(position["token"], str) and position["logprob"] <= 0
        assert position["bytes"] == list(position["token"].encode())
        top = position["top_logprobs"]
        ranked = [t["logprob"] for t in top[:5]]
        assert len(ranked) == 5 and ranked == sorted(ranked, reverse=True)
        assert math.isclose(position["logprob"], ranked[0], abs_tol=1e-4)  # greedy picks the argmax
        tokens = {t["token"] for t in top}
        assert {"m", "M"} <= tokens  # --extra-top-logprobs: AlpacaEval 2.0's answer tokens are always there
        assert all(t["logprob"] <= 0 and set(t) == {"token", "logprob", "bytes"} for t in top)


def test_cli_starts_serves_and_stops_gracefully(tiny_model, tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, "-m", "imrepro.eval.judge.server", "--model", str(tiny_model),
                             "--port", "0",
                             "--port-file", str(port_file), "--served-name", SERVED, "--max-new-tokens", "4"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "server did not come up"
            time.sleep(0.1)
        base = f"http://127.0.0.1:{int(port_file.read_text())}/v1"
        reply = JudgeClient(base, api_key_env=None).chat([{"role": "user", "content": "hi"}], SERVED, max_tokens=50)
        assert reply.response["usage"]["completion_tokens"] <= 4  # --max-new-tokens caps the request
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "shutting down after 1 requests" in output


# ---------------------------------------------------------------------------------------------
# The client: cache, retries, errors, key hygiene
# ---------------------------------------------------------------------------------------------

def test_client_caches_on_disk(model_server, key_env, tmp_path, monkeypatch):
    cache = tmp_path / "judge_cache.jsonl"
    messages = [{"role": "user", "content": "Rate the answer 'Paris' to 'capital of France?'"}]
    client = JudgeClient(model_server.base_url, api_key_env=key_env, cache_path=cache)
    before = _post_count(model_server.server)
    first = client.chat(messages, SERVED, max_tokens=4)
    assert _post_count(model_server.server) == before + 1 and not first.cached
    second = client.chat(messages, SERVED, max_tokens=4)
    assert second.cached and second.text == first.text
    assert _post_count(model_server.server) == before + 1  # the cache hit made no request

    monkeypatch.delenv(key_env)  # a rerun from the cache needs neither the network nor the key
    rerun = JudgeClient(model_server.base_url, api_key_env=key_env, cache_path=cache)
    assert rerun.chat(messages, SERVED, max_tokens=4).text == first.text
    assert rerun.stats == Counter(cache_hits=1) and _post_count(model_server.server) == before + 1

    with pytest.raises(JudgeConfigError, match=key_env):  # a new request does need the key
        rerun.chat(messages, SERVED, max_tokens=5)
    assert len(cache.read_text().splitlines()) == 1


def test_cache_scope_survives_a_new_port(tmp_path):
    """A local judge restarted on another port answers from the cache when given a stable scope."""
    cache, messages = tmp_path / "cache.jsonl", [{"role": "user", "content": "q"}]
    for expected_posts in (1, 0):
        with serve_in_thread(EchoScoreBackend(), "echo") as server:
            client = JudgeClient(server.base_url, api_key_env=None, cache_path=cache, cache_scope="echo@v1")
            assert mt_bench.parse_score(client.chat(messages, "echo").text) is not None
            assert _post_count(server.server) == expected_posts


def test_cache_file_is_shared_between_writers(tmp_path):
    """Two processes' caches on one file: appends interleave whole lines, and each sees the other's records."""
    path = tmp_path / "shared.jsonl"
    first, second = JsonlCache(path), JsonlCache(path)
    threads = [threading.Thread(target=lambda c=c, i=i: [c.put(f"{i}-{n}", {}, {"n": n}) for n in range(50)])
               for i, c in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert first.get("1-49") == {"n": 49} and second.get("0-49") == {"n": 49}
    assert len(JsonlCache(path)) == 100
    with open(path, "a") as handle:
        handle.write('{"key": "torn", "resp')  # a writer killed mid-line
    assert len(JsonlCache(path)) == 100
    first.put("after", {}, {"n": -1})
    assert JsonlCache(path).get("after") == {"n": -1} and len(JsonlCache(path)) == 101


def test_cache_key_covers_endpoint_and_request():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0.0, "max_tokens": 4}
    assert request_key("http://a/v1", body) == request_key("http://a/v1/", dict(reversed(body.items())))
    assert request_key("http://a/v1", body) != request_key("http://b/v1", body)
    assert request_key("http://a/v1", body) != request_key("http://a/v1", {**body, "model": "n"})
    assert request_key("http://a/v1", body) != request_key("http://a/v1", {**body, "logprobs": True})


def test_api_key_never_logged_or_cached(model_server, key_env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpcore", "imrepro"):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test
    cache = tmp_path / "cache.jsonl"
    client = JudgeClient(model_server.base_url, api_key_env=key_env, cache_path=cache)
    client.chat([{"role": "user", "content": "log me"}], SERVED, max_tokens=2, logprobs=True, top_logprobs=2)
    with FaultServer([503]) as fake:
        JudgeClient(fake.base_url, api_key_env=key_env, sleep=lambda s: None).chat(
            [{"role": "user", "content": "retry me"}], "judge", max_tokens=2)
        assert fake.auth_headers == [f"Bearer {SECRET}"] * 2  # the key is sent, as it must be ...
    assert "log me" in cache.read_text()
    assert SECRET not in cache.read_text() and SECRET not in caplog.text  # ... and stored/logged nowhere
    assert SECRET not in repr(client)


class FaultServer(StubEndpoint):
    """A stand-in endpoint that answers with a script of statuses, then with a fixed completion."""

    def __init__(self, script: list[int], retry_after: str | None = None):
        super().__init__()
        self.script, self.retry_after = list(script), retry_after
        self.requests = 0
        self.auth_headers: list[str] = []

    def reply(self, body, headers):
        self.requests += 1
        self.auth_headers.append(headers.get("Authorization"))
        status = self.script.pop(0) if self.script else 200
        if status == 200:
            data = {"id": "x", "object": "chat.completion", "created": 0, "model": "judge",
                    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                 "message": {"role": "assistant", "content": "Rating: [[6]]"}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        else:
            data = {"error": {"message": f"scripted failure {status}", "type": "test", "code": None}}
        extra = {"Retry-After": self.retry_after} if self.retry_after and status == 429 else {}
        return status, "application/json", json.dumps(data).encode(), extra


def _fault_client(base_url: str, sleeps: list[float], **kwargs) -> JudgeClient:
    return JudgeClient(base_url, api_key_env=None, initial_backoff_s=0.01, max_backoff_s=1.0,
                       sleep=sleeps.append, **kwargs)


def test_retries_503_with_backoff_then_succeeds(tmp_path):
    sleeps: list[float] = []
    with FaultServer([503, 503]) as fake:
        client = _fault_client(fake.base_url, sleeps, max_attempts=4, cache_path=tmp_path / "c.jsonl")
        reply = client.chat([{"role": "user", "content": "q"}], "judge")
        assert fake.requests == 3
    assert reply.text == "Rating: [[6]]" and sleeps == [0.01, 0.02]
    assert client.stats == Counter(requests=3, retries=2)
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 1  # only the success is cached


def test_retry_after_on_429_is_honoured():
    sleeps: list[float] = []
    with FaultServer([429], retry_after="0.25") as fake:
        _fault_client(fake.base_url, sleeps).chat([{"role": "user", "content": "q"}], "judge")
        assert fake.requests == 2
    assert sleeps == [0.25]


def test_gives_up_after_max_attempts(tmp_path):
    sleeps: list[float] = []
    with FaultServer([500] * 10) as fake:
        client = _fault_client(fake.base_url, sleeps, max_attempts=3, cache_path=tmp_path / "c.jsonl")
        with pytest.raises(JudgeUnavailableError, match="3 times.*HTTP 500"):
            client.chat([{"role": "user", "content": "q"}], "judge")
        assert fake.requests == 3
    assert sleeps == [0.01, 0.02] and not (tmp_path / "c.jsonl").exists()


def test_connection_errors_are_retried():
    with FaultServer([]) as fake:
        url = fake.base_url  # a port that was bound and is now closed
    sleeps: list[float] = []
    client = _fault_client(url, sleeps, max_attempts=2)
    with pytest.raises(JudgeUnavailableError, match="APIConnectionError"):
        client.chat([{"role": "user", "content": "q"}], "judge")
    assert client.stats["requests"] == 2 and sleeps == [0.01]


def test_fails_fast_on_400():
    sleeps: list[float] = []
    with FaultServer([400]) as fake:
        with pytest.raises(JudgeRequestError, match="HTTP 400: scripted failure 400") as err:
            _fault_client(fake.base_url, sleeps).chat([{"role": "user", "content": "q"}], "judge")
        assert fake.requests == 1
    assert err.value.status == 400 and sleeps == []


def test_missing_key_env_is_named():
    with pytest.raises(JudgeConfigError, match="IMREPRO_SURELY_UNSET_KEY"):
        JudgeClient("http://127.0.0.1:9/v1", api_key_env="IMREPRO_SURELY_UNSET_KEY").chat(
            [{"role": "user", "content": "q"}], "judge")


# ---------------------------------------------------------------------------------------------
# MT-Bench
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mt_data():
    questions = mt_bench.load_questions(MT / "question.jsonl")
    return {"questions": {q["question_id"]: q for q in questions},
            "prompts": mt_bench.load_judge_prompts(MT / "judge_prompts.jsonl"),
            "refs": mt_bench.load_reference_answers(MT / "reference_answer" / "gpt-4.jsonl")}


def test_shipped_mt_bench_data(mt_data):
    assert len(mt_data["questions"]) == 80 and len(mt_data["refs"]) == 30
    assert Counter(q["category"] for q in mt_data["questions"].values()) == Counter(
        {c: 10 for c in mt_bench.CATEGORIES})
    needs_ref = {qid for qid, q in mt_data["questions"].items() if q["category"] in mt_bench.NEED_REF_CATS}
    assert needs_ref == set(mt_data["refs"])


def test_math_prompt_with_reference_turn_1(mt_data):
    question = mt_data["questions"][111]  # math: area of a triangle
    ref = mt_data["refs"][111]
    task = mt_bench.build_judge_task(question, ["The area is 3.", "The circle ..."], mt_data["prompts"], ref, turn=1)
    assert task.prompt_name == "single-math-v1" and task.turn == 1 and task.category == "math"
    system, user = task.messages
    assert system == {"role": "system", "content": "You are a helpful assistant."}
    assert user["role"] == "user"
    assert user["content"].startswith("[Instruction]\nPlease act as an impartial judge")
    assert user["content"].endswith(
        f"[Question]\n{question['turns'][0]}\n\n[The Start of Reference Answer]\n{ref[0]}\n"
        "[The End of Reference Answer]\n\n[The Start of Assistant's Answer]\nThe area is 3.\n"
        "[The End of Assistant's Answer]")


def test_turn_2_prompts(mt_data):
    writing = mt_data["questions"][81]
    task = mt_bench.build_judge_task(writing, ["A1", "A2"], mt_data["prompts"], None, turn=2)
    assert task.prompt_name == "single-v1-multi-turn"
    assert task.messages[0]["content"] == mt_data["prompts"]["single-v1-multi-turn"]["system_prompt"]
    assert task.messages[1]["content"] == (
        "<|The Start of Assistant A's Conversation with User|>\n\n"
        f"### User:\n{writing['turns'][0]}\n\n### Assistant A:\nA1\n\n"
        f"### User:\n{writing['turns'][1]}\n\n### Assistant A:\nA2\n\n"
        "<|The End of Assistant A's Conversation with User|>")

    math_q, ref = mt_data["questions"][111], mt_data["refs"][111]
    math_task = mt_bench.build_judge_task(math_q, ["A1", "A2"], mt_data["prompts"], ref, turn=2)
    assert math_task.prompt_name == "single-math-v1-multi-turn"
    assert f"### Reference answer:\n{ref[0]}\n\n### User:\n{math_q['turns'][1]}\n\n### Reference answer:\n{ref[1]}" \
        in math_task.messages[1]["content"]
    with pytest.raises(ValueError, match="needs a reference"):
        mt_bench.build_judge_task(math_q, ["A1", "A2"], mt_data["prompts"], None, turn=2)


def test_prompts_match_fastchat(mt_data, monkeypatch):
    """Our messages equal those FastChat's own ``run_judge_single`` sends, for all four single-answer prompts."""
    pytest.importorskip("fastchat.model.model_adapter")
    monkeypatch.setitem(sys.modules, "anthropic", sys.modules.get("anthropic") or types.ModuleType("anthropic"))
    common = pytest.importorskip("fastchat.llm_judge.common")
    sent = []
    monkeypatch.setattr(common, "chat_completion_openai",
                        lambda model, conv, temperature, max_tokens, api_dict=None:
                        sent.append((conv.to_openai_api_messages(), temperature, max_tokens)) or "[[1]]")
    for qid in (81, 101, 111, 130):  # writing, reasoning, math, coding
        question = mt_data["questions"][qid]
        ref = mt_data["refs"].get(qid)
        answer = {"choices": [{"turns": [f"first answer {qid}", f"second answer {qid}"]}]}
        ref_record = {"choices": [{"turns": ref}]} if ref else None
        for turn in (1, 2):
            ours = mt_bench.build_judge_task(question, answer["choices"][0]["turns"], mt_data["prompts"], ref, turn)
            judge = common.Judge("gpt-4", mt_data["prompts"][ours.prompt_name], ref_based=ref is not None,
                                 multi_turn=turn == 2)
            common.run_judge_single(question, answer, judge, ref_record, multi_turn=turn == 2)
            assert sent[-1] == (ours.messages, mt_bench.JUDGE_TEMPERATURE, mt_bench.JUDGE_MAX_TOKENS)


def test_build_all_tasks(mt_data):
    questions = list(mt_data["questions"].values())
    answers = {qid: ["a", "b"] for qid in mt_data["questions"]}
    tasks = mt_bench.build_judge_tasks(questions, answers, mt_data["prompts"], mt_data["refs"])
    assert len(tasks) == 160 and [t.turn for t in tasks] == [1] * 80 + [2] * 80
    assert Counter(t.prompt_name for t in tasks) == Counter({"single-v1": 50, "single-v1-multi-turn": 50,
                                                             "single-math-v1": 30, "single-math-v1-multi-turn": 30})


@pytest.mark.parametrize(("verdict", "score"), [
    ("The answer is fine. Rating: [[7]]", 7.0),
    ("Rating: [[8.5]]", 8.5),
    ("Rating: [[3]] and later [[9]]", 3.0),
    ("Rating: [6]", 6.0),  # FastChat's backup pattern
    ("[5] and then [[9]]", 9.0),  # the double-bracket pattern wins wherever it is
    ("Rating: 7/10", None),
    ("Rating: [[seven]]", None),
    ("", None),
])
def test_parse_score(verdict, score):
    assert mt_bench.parse_score(verdict) == score


class ScriptedBackend:
    """A backend with chosen verdicts (keyed by a marker in the prompt), behind the real HTTP layer."""

    def __init__(self, verdicts: dict[str, str]):
        self.verdicts = verdicts

    def complete(self, messages, max_tokens, top_logprobs, stop):
        prompt = messages[-1]["content"]
        text = next((v for marker, v in self.verdicts.items() if marker in prompt), "no verdict")
        return Completion(text, "stop", 10, 3)


def test_judge_all_counts_unparseable_and_aggregates(mt_data, tmp_path):
    qids = [81, 82, 111]  # writing, writing, math
    questions = [mt_data["questions"][q] for q in qids]
    answers = {q: [f"<{q}-1>", f"<{q}-2>"] for q in qids}
    backend = ScriptedBackend({"<81-2>": "Rating: [[4]]", "<81-1>": "[[8]]", "<82-2>": "I refuse to rate.",
                               "<82-1>": "Rating: [6]", "<111-2>": "[[1]]", "<111-1>": "[[3]]"})
    tasks = mt_bench.build_judge_tasks(questions, answers, mt_data["prompts"], mt_data["refs"])
    with serve_in_thread(backend, "gpt-4") as server:
        client = JudgeClient(server.base_url, api_key_env=None, cache_path=tmp_path / "cache.jsonl")
        records = mt_bench.judge_all(tasks, client, "gpt-4")
        assert mt_bench.judge_all(tasks, client, "gpt-4") == records  # second pass: all from the cache
        assert _post_count(server.server) == 6
    assert [r["score"] for r in records] == [8.0, 6.0, 3.0, 4.0, None, 1.0]
    assert records[2]["judge"] == ["gpt-4", "single-math-v1"]
    summary = mt_bench.aggregate(records)
    assert summary["n_judgments"] == 6 and summary["n_unparseable"] == 1 and summary["unparseable"] == [[82, 2]]
    assert summary["overall"] == pytest.approx((8 + 6 + 3 + 4 + 1) / 5)
    assert summary["turn_1"] == pytest.approx(17 / 3) and summary["turn_2"] == pytest.approx(2.5)
    assert summary["per_category"] == {"writing": 6.0, "math": 2.0}
    assert summary["per_category_turn"]["writing"] == {"turn_1": 7.0, "turn_2": 4.0}


def test_aggregate_is_fastchat_average():
    records = [{"question_id": i, "category": cat, "turn": turn, "score": score}
               for i, (cat, turn, score) in enumerate([("stem", 1, 10.0), ("stem", 2, 6.0), ("coding", 1, 2.0),
                                                       ("coding", 2, 4.0), ("coding", 2, None)])]
    summary = mt_bench.aggregate(records)
    assert summary["overall"] == 5.5 and summary["turn_1"] == 6.0 and summary["turn_2"] == 5.0
    assert list(summary["per_category"]) == ["coding", "stem"]  # the question file's category order
    assert summary["per_category"] == {"coding": 3.0, "stem": 8.0} and summary["n_parsed"] == 4
    assert mt_bench.aggregate([])["overall"] is None


# ---------------------------------------------------------------------------------------------
# alpaca_eval through the server
# ---------------------------------------------------------------------------------------------

def _annotator_dir(root: Path, base_config: str, template_dir: str, model_name: str) -> Path:
    """A copy of an installed alpaca_eval annotator config, judging with ``model_name``."""
    import yaml

    config = yaml.safe_load((ALPACA_CONFIGS / base_config / "configs.yaml").read_text())
    (entry,) = config.values()
    template = ALPACA_CONFIGS / entry["prompt_template"]
    assert template.parent.name == template_dir
    target = root / "demo_judge"
    target.mkdir(parents=True)
    shutil.copy(template, target / template.name)
    entry["prompt_template"] = f"demo_judge/{template.name}"  # resolved against the config dir's parent
    entry["completions_kwargs"]["model_name"] = model_name
    (target / "configs.yaml").write_text(yaml.safe_dump({"demo_judge": entry}))
    return target / "configs.yaml"


def _run_alpaca_eval(tmp: Path, base_url: str, annotators_config: Path) -> dict:
    references = json.loads(DAVINCI.read_text())[:3]
    outputs = [{**r, "output": f"My answer to: {r['instruction'][:40]}", "generator": "tiny-model"}
               for r in references]
    (tmp / "ref.json").write_text(json.dumps(references))
    (tmp / "model.json").write_text(json.dumps(outputs))
    out = tmp / "out"
    out.mkdir()
    env = {**os.environ, "OPENAI_API_BASE": base_url, "OPENAI_API_KEY": "dummy", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["alpaca_eval", "evaluate", "--model_outputs", "model.json", "--reference_outputs", "ref.json",
         "--annotators_config", str(annotators_config), "--output_path", "out", "--fn_metric", "get_winrate",
         "--sort_by", "win_rate", "--caching_path", "out/annotator_cache.json"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import pandas as pd

    return pd.read_csv(out / "leaderboard.csv", index_col=0).loc["tiny-model"].to_dict()


@pytest.mark.slow
def test_alpaca_eval_2_through_the_model_server(model_server, tmp_path):
    """The AlpacaEval 2.0 annotator (logprob parser on 'm'/'M') with the real local model as judge."""
    config = _annotator_dir(tmp_path / "cfg", "weighted_alpaca_eval_gpt4_turbo", "alpaca_eval_clf_gpt4_turbo",
                            SERVED)
    before = _post_count(model_server.server)
    row = _run_alpaca_eval(tmp_path, model_server.base_url, config)
    assert _post_count(model_server.server) == before + 3
    assert row["n_total"] == 3 and 0.0 <= row["win_rate"] <= 100.0 and math.isfinite(row["win_rate"])


@pytest.mark.slow
def test_alpaca_eval_1_through_the_server(tmp_path):
    """The AlpacaEval 1.0 annotator (ranking parser). A random model cannot write a parseable ranking
    (alpaca_eval then fails in get_winrate), so this one runs against the echo-score backend."""
    config = _annotator_dir(tmp_path / "cfg", "alpaca_eval_gpt4", "alpaca_eval_gpt4", "echo-judge")
    with serve_in_thread(EchoScoreBackend(), "echo-judge") as server:
        row = _run_alpaca_eval(tmp_path, server.base_url, config)
        assert _post_count(server.server) == 3
    assert row["n_total"] == 3 and any(row["win_rate"] == pytest.approx(100 * k / 3) for k in range(4))


def test_judge_jobs_of_a_run_share_one_background_server(tmp_path, monkeypatch):
    """--serve-shared: the first judge job starts the server, the next finds it (one process, same URL, cached
    answers keyed as before); idle, the server stops by itself and removes its port file."""
    import argparse

    from imrepro.eval.judge import endpoint

    monkeypatch.setattr(endpoint, "SHARED_IDLE_EXIT_S", 3.0)
    parser = argparse.ArgumentParser()
    endpoint.add_judge_arguments(parser)
    args = parser.parse_args(["--judge-model", "demo-judge", "--serve-backend", "echo-score",
                              "--serve-shared", str(tmp_path / "servers"), "--cache", str(tmp_path / "cache.jsonl")])
    urls, replies = [], []
    for prompt in ("first job", "second job"):  # two jobs, one after the other, each with a new request
        with endpoint.open_judge(args) as judge:
            urls.append(judge.client.base_url)
            replies.append(judge.client.chat([{"role": "user", "content": prompt}], "demo-judge"))
            assert judge.info["served_backend"] == "echo-score" and judge.info["base_url"] == "local:echo-score"
    assert urls[0] == urls[1] and not any(reply.cached for reply in replies)
    (port_file,) = (tmp_path / "servers").glob("*.port")
    log_text = next((tmp_path / "servers").glob("*.log")).read_text()
    assert log_text.count("serving 'demo-judge'") == 1  # started once
    deadline = time.monotonic() + 30
    while port_file.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not port_file.exists(), "the idle shared server did not stop"
