"""A small OpenAI-compatible judge server backed by a local Hugging Face causal LM (the demo judge).

The evaluation code talks to judges only through ``/v1/chat/completions``; this server lets the
demo and the tests exercise that exact path offline, including the ``logprobs``/``top_logprobs``
fields that the AlpacaEval 2.0 annotator reads. Scores obtained through it are *demo-judge*
scores, not GPT-4 scores, and must be labelled as such.

    python -m imrepro.eval.judge.server --model results/models/demo_judge --port 8765 --served-name demo-judge \
        --max-new-tokens 256 --extra-top-logprobs m,M

Decoding is always greedy (``temperature`` and ``top_p`` are accepted and ignored) so that a
judgement is a deterministic function of the request, which is what the on-disk judge cache
assumes. The server binds to 127.0.0.1 only and ignores the ``Authorization`` header (it never logs it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_TOP_LOGPROBS = 20  # the OpenAI API's limit
MAX_NEW_TOKENS = 512  # a served judge's cap on generated tokens, and its max_tokens when a request sets none


class RequestError(Exception):
    """A client error, answered with an OpenAI-style error body."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclasses.dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]]  # (token, logprob), best first


@dataclasses.dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None


class Backend(Protocol):
    def complete(self, messages: list[dict], max_tokens: int, top_logprobs: int | None,
                 stop: Sequence[str]) -> Completion:
        """Answer one chat request; ``top_logprobs`` is None when logprobs were not requested."""


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------

def plain_chat_prompt(messages: list[dict]) -> str:
    """The fallback prompt format for tokenizers without a chat template."""
    parts = []
    for message in messages:
        role = message["role"]
        if role == "system":
            parts.append(f"{message['content']}\n\n")
        elif role == "assistant":
            parts.append(f"Assistant: {message['content']}\n\n")
        else:
            parts.append(f"User: {message['content']}\n\n")
    return "".join(parts) + "Assistant:"


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stop if s and s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


class HFBackend:
    """Greedy generation with a local causal LM (``transformers``), one request at a time.

    ``extra_top_logprobs`` names token strings whose logprobs are always reported in ``top_logprobs``
    even when they are not among the top n: a small demo model almost never ranks AlpacaEval 2.0's
    answer tokens 'm'/'M' in its top 5, and the annotator then has nothing to read. The value is the
    model's own probability of that answer, summed over the vocabulary entries that spell it with or
    without a leading space ('m', '▁m', the byte token 0x6D); nothing is invented.
    """

    def __init__(self, model_dir: str | Path, max_new_tokens: int = MAX_NEW_TOKENS,
                 extra_top_logprobs: Sequence[str] = ()):
        import torch
        from transformers import AutoTokenizer

        from imrepro.core.models import load_causal_lm

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model, _ = load_causal_lm(model_dir, dtype=torch.float32)
        self.model.eval()
        self.max_new_tokens = max_new_tokens
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)
        self.has_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.extra_ids = {text: self._ids_with_text(text) for text in extra_top_logprobs}
        self.lock = threading.Lock()  # generate() is not re-entrant on a shared model
        self.truncated_prompts = 0

    def _ids_with_text(self, text: str) -> list[int]:
        ids = [i for i in range(len(self.tokenizer)) if self.token_text(i).strip() == text]
        if not ids:
            raise ValueError(f"no token of the vocabulary reads {text!r}")
        return ids

    def token_text(self, token_id: int) -> str:
        """A token's text, keeping the leading space that SentencePiece/byte-BPE pieces encode."""
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        text = self.tokenizer.decode([token_id], skip_special_tokens=False)
        if isinstance(piece, str) and piece[:1] in ("\u2581", "\u0120") and not text.startswith(" "):
            text = " " + text
        return text

    def encode(self, messages: list[dict]) -> list[int]:
        if self.has_chat_template:
            prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = self.tokenizer(plain_chat_prompt(messages))["input_ids"]
        bos = self.tokenizer.bos_token_id
        return ids if bos is None or ids[:1] == [bos] else [bos, *ids]

    def complete(self, messages, max_tokens, top_logprobs, stop):
        torch = self.torch
        ids = self.encode(messages)
        prompt_tokens = len(ids)
        max_tokens = min(max_tokens, self.max_new_tokens)
        if self.max_positions and len(ids) + max_tokens > self.max_positions:
            keep = max(self.max_positions - max_tokens, 1)
            log.warning("prompt of %d tokens left-truncated to %d (context %d)", len(ids), keep, self.max_positions)
            ids = ids[-keep:]
            self.truncated_prompts += 1
        input_ids = torch.tensor([ids])
        with self.lock, torch.inference_mode():
            out = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_tokens,
                                      do_sample=False, output_logits=top_logprobs is not None,
                                      return_dict_in_generate=True, pad_token_id=self._pad_id())
        new_ids = out.sequences[0, len(ids):].tolist()
        eos = self._eos_ids()
        hit_eos = bool(new_ids) and new_ids[-1] in eos
        if hit_eos:
            new_ids = new_ids[:-1]
        text, hit_stop = _cut_at_stop(self.tokenizer.decode(new_ids, skip_special_tokens=True), stop)
        logprobs = None
        if top_logprobs is not None:
            logprobs = [self._token_logprobs(step_logits[0], token_id, top_logprobs)
                        for step_logits, token_id in zip(out.logits, new_ids, strict=False)]
        finish = "stop" if hit_eos or hit_stop else "length"
        return Completion(text, finish, prompt_tokens, len(new_ids), logprobs)

    def _token_logprobs(self, logits, token_id: int, n: int) -> TokenLogprob:
        logprobs = self.torch.log_softmax(logits.float(), dim=-1)
        top = []
        if n:
            values, indices = logprobs.topk(n)
            top = [(self.token_text(i), v) for v, i in zip(values.tolist(), indices.tolist(), strict=True)]
        listed = {text for text, _ in top}
        for text, ids in self.extra_ids.items():
            if text not in listed:
                top.append((text, self.torch.logsumexp(logprobs[ids], dim=0).item()))
        return TokenLogprob(self.token_text(token_id), logprobs[token_id].item(), top)

    def _pad_id(self) -> int | None:
        if self.tokenizer.pad_token_id is not None:
            return self.tokenizer.pad_token_id
        return next(iter(self._eos_ids()), None)

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos if isinstance(eos, list) else [] if eos is None else [eos])


class EchoScoreBackend:
    """A deterministic stand-in for tests that need no model: answers by rule, from a hash of the prompt.

    * AlpacaEval 1.0 ranking prompt -> a ranking list; MT-Bench prompts -> "Rating: [[k]]" (k in 1..10);
    * logprobs requested -> first token 'm' or 'M' with complementary top_logprobs.
    """

    def complete(self, messages, max_tokens, top_logprobs, stop):
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        digest = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
        prompt_tokens = len(prompt.split())
        if top_logprobs is not None:
            p_m = 0.1 + 0.8 * (digest % 1000) / 999
            top = sorted([("m", math.log(p_m)), ("M", math.log(1 - p_m))], key=lambda t: -t[1])[:max(top_logprobs, 2)]
            first = TokenLogprob(top[0][0], top[0][1], top)
            return Completion(first.token, "length", prompt_tokens, 1, [first])
        if "'rank': <model-rank>" in prompt:
            rank = 1 + digest % 2
            text = f"[{{'model': 'model_1', 'rank': {rank}}}, {{'model': 'model_2', 'rank': {3 - rank}}}]"
        else:
            text = f"The answer was judged by rule. Rating: [[{1 + digest % 10}]]"
        text, _ = _cut_at_stop(text, stop)
        return Completion(text, "stop", prompt_tokens, len(text.split()), None)


# ---------------------------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------------------------

def _message_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _logprob_entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def completion_response(completion: Completion, model: str) -> dict:
    """Render a ``Completion`` in the OpenAI chat.completion shape."""
    choice = {"index": 0, "message": {"role": "assistant", "content": completion.text},
              "finish_reason": completion.finish_reason, "logprobs": None}
    if completion.logprobs is not None:
        choice["logprobs"] = {"content": [
            {**_logprob_entry(t.token, t.logprob), "top_logprobs": [_logprob_entry(s, v) for s, v in t.top]}
            for t in completion.logprobs]}
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [choice],
            "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
                      "total_tokens": completion.prompt_tokens + completion.completion_tokens}}


def parse_chat_request(body: dict, served_name: str, default_max_tokens: int) -> dict:
    """Validate a chat request the way the OpenAI API does for the fields the judges use."""
    if body.get("model") != served_name:
        raise RequestError(404, f"The model {body.get('model')!r} does not exist (this server serves "
                                f"{served_name!r})", "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list")
    if any(not isinstance(m, dict) or "role" not in m for m in messages):
        raise RequestError(400, "each message needs a 'role'")
    if body.get("n", 1) != 1:
        raise RequestError(400, "only n=1 is supported")
    if body.get("stream"):
        raise RequestError(400, "streaming is not supported")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise RequestError(400, "'max_tokens' must be a positive integer")
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and not body.get("logprobs"):
        raise RequestError(400, "'top_logprobs' requires 'logprobs' to be true")
    if body.get("logprobs"):
        top_logprobs = top_logprobs or 0
        if not isinstance(top_logprobs, int) or not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise RequestError(400, f"'top_logprobs' must be an integer in [0, {MAX_TOP_LOGPROBS}]")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else list(stop)
    return {"messages": [{"role": m["role"], "content": _message_text(m.get("content"))} for m in messages],
            "max_tokens": max_tokens, "top_logprobs": top_logprobs, "stop": stop}


class JudgeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, backend: Backend, served_name: str, default_max_tokens: int = MAX_NEW_TOKENS):
        super().__init__((HOST, port), _Handler)
        self.backend, self.served_name, self.default_max_tokens = backend, served_name, default_max_tokens
        self.stats: Counter[str] = Counter()  # "POST /v1/chat/completions" -> count, "status 400" -> count, ...
        self.stats_lock = threading.Lock()
        self.last_activity = time.monotonic()  # of the last request (--idle-exit)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def count(self, *keys: str) -> None:
        with self.stats_lock:
            self.stats.update(keys)
            self.last_activity = time.monotonic()

    def idle_seconds(self) -> float:
        with self.stats_lock:
            return time.monotonic() - self.last_activity


class _Handler(BaseHTTPRequestHandler):
    server: JudgeHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # the request line only, never the headers
        log.debug("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.server.count(f"status {status}")

    def _send_error(self, err: RequestError) -> None:
        kind = "invalid_request_error" if err.status < 500 else "server_error"
        self._send_json(err.status, {"error": {"message": err.message, "type": kind, "param": None,
                                               "code": err.code}})

    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        self.server.count(f"GET {path}")
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [
                {"id": self.server.served_name, "object": "model", "created": 0, "owned_by": "imrepro-demo"}]})
        elif path == "/health":
            self._send_json(200, {"status": "ok"})
        else:
            self._send_error(RequestError(404, f"no route GET {path}"))

    def do_POST(self):
        path = self.path.split("?")[0].rstrip("/")
        self.server.count(f"POST {path}")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if path != "/v1/chat/completions":
            self._send_error(RequestError(404, f"no route POST {path}"))
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise RequestError(400, "the request body must be a JSON object")
            request = parse_chat_request(body, self.server.served_name, self.server.default_max_tokens)
            completion = self.server.backend.complete(**request)
        except json.JSONDecodeError as exc:
            self._send_error(RequestError(400, f"invalid JSON body: {exc}"))
        except RequestError as exc:
            self._send_error(exc)
        except Exception as exc:  # a backend failure is the server's fault: 500, and keep serving
            log.exception("backend failed")
            self._send_error(RequestError(500, f"backend error: {type(exc).__name__}: {exc}"))
        else:
            self._send_json(200, completion_response(completion, self.server.served_name))


@dataclasses.dataclass
class RunningServer:
    server: JudgeHTTPServer
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.server.port}/v1"

    @property
    def stats(self) -> Counter[str]:
        return self.server.stats

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_in_thread(backend: Backend, served_name: str, port: int = 0,
                    default_max_tokens: int = MAX_NEW_TOKENS) -> RunningServer:
    """Start serving on 127.0.0.1 in a daemon thread (``port=0``: any free port); ``stop()`` ends it."""
    server = JudgeHTTPServer(port, backend, served_name, default_max_tokens)
    thread = threading.Thread(target=server.serve_forever, name=f"judge-server-{server.port}", daemon=True)
    thread.start()
    return RunningServer(server, thread)


@contextlib.contextmanager
def serve_in_thread(backend: Backend, served_name: str, port: int = 0,
                    default_max_tokens: int = MAX_NEW_TOKENS) -> Iterator[RunningServer]:
    """Context-managed ``start_in_thread``: the server is shut down when the block exits."""
    running = start_in_thread(backend, served_name, port, default_max_tokens)
    try:
        yield running
    finally:
        running.stop()


def make_backend(kind: str, model: str | None, max_new_tokens: int, extra_top_logprobs: Sequence[str]) -> Backend:
    if kind == "hf":
        if not model:
            raise ValueError("--backend hf needs --model DIR")
        return HFBackend(model, max_new_tokens=max_new_tokens, extra_top_logprobs=extra_top_logprobs)
    if kind == "echo-score":
        return EchoScoreBackend()
    raise ValueError(f"unknown backend {kind!r}")


IDLE_GRACE_S = 10.0


def _forget_port(port_file: Path | None, port: int) -> None:
    if port_file and port_file.is_file() and port_file.read_text().strip() == str(port):
        port_file.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Hugging Face causal-LM directory (backend hf)")
    parser.add_argument("--backend", choices=["hf", "echo-score"], default="hf",
                        help="hf: the local model (default, the demo path); echo-score: deterministic test double")
    parser.add_argument("--served-name", required=True, help="model name clients must request")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once the server accepts requests")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS,
                        help="cap on generated tokens per request")
    parser.add_argument("--extra-top-logprobs", default="",
                        help="comma-separated token strings always reported in top_logprobs (e.g. 'm,M')")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                        help="stop after this long without a request (a server shared by the judge jobs of a run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    extra = [t for t in args.extra_top_logprobs.split(",") if t]
    backend = make_backend(args.backend, args.model, args.max_new_tokens, extra)
    stop_requested = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_requested.set())
    running = start_in_thread(backend, args.served_name, args.port, default_max_tokens=args.max_new_tokens)
    if args.port_file:
        tmp = args.port_file.with_name(f".{args.port_file.name}.tmp")
        tmp.write_text(f"{running.server.port}\n")
        tmp.replace(args.port_file)
    log.info("serving %r (%s backend) at %s", args.served_name, args.backend, running.base_url)
    while not stop_requested.wait(0.5):
        if args.idle_exit is not None and running.server.idle_seconds() > args.idle_exit:
            _forget_port(args.port_file, running.server.port)  # from now on a new job starts its own server
            # a job that read the port just before keeps being served: stop only after a quiet grace period
            grace = min(IDLE_GRACE_S, args.idle_exit)
            if not stop_requested.wait(grace) and running.server.idle_seconds() >= args.idle_exit + grace:
                log.info("idle for %.0f s: stopping", args.idle_exit + grace)
                break
    _forget_port(args.port_file, running.server.port)
    log.info("shutting down after %d requests", sum(v for k, v in running.stats.items() if k.startswith("POST")))
    running.stop()


if __name__ == "__main__":
    main()
