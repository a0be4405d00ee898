"""Chat client for LLM judges behind any OpenAI-compatible endpoint, with an on-disk cache.

Judge calls are the only paid, slow and rate-limited step of the evaluation, so:

* every successful response is stored in a JSON-lines cache keyed by the sha256 of the canonical
  request (base URL, model, messages, decoding parameters); a rerun answers from it without a request;
* 429, 5xx and connection failures are retried with exponential backoff, a bounded number of times;
  any other 4xx is a configuration or request bug and fails at once;
* a 200 answer that is not a chat completion (not JSON, no ``choices``) raises ``JudgeResponseError``: it is
  neither cached nor retried, and the benchmarks count it as an unparseable verdict;
* the API key is read from an environment variable when the first real request is made (a rerun served
  entirely from the cache needs no key) and is never logged or written anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429})  # plus every 5xx
T, R = TypeVar("T"), TypeVar("R")


class JudgeError(RuntimeError):
    """Base class of the judge client's errors."""


class JudgeConfigError(JudgeError):
    """The client is misconfigured (e.g. the API key variable is not set)."""


class JudgeRequestError(JudgeError):
    """The endpoint rejected the request (a non-retryable 4xx)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"judge request rejected with HTTP {status}: {message}")
        self.status = status


class JudgeUnavailableError(JudgeError):
    """The endpoint kept failing (429/5xx/connection errors) through every attempt."""


class JudgeResponseError(JudgeError):
    """The endpoint answered 200 with something that is not a chat completion (not JSON, no choices)."""


@dataclasses.dataclass(frozen=True)
class ChatReply:
    text: str
    logprobs: dict | None  # choices[0].logprobs as plain data ({"content": [{token, logprob, top_logprobs}, ...]})
    response: dict  # the whole chat.completion response
    cached: bool


def request_key(endpoint: str, body: dict) -> str:
    """sha256 of the canonical JSON of the endpoint (base URL) and the request body; the API key is not part of it."""
    canonical = json.dumps({"base_url": endpoint.rstrip("/"), "request": body}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class JsonlCache:
    """Append-only JSON-lines store ``{"key", "request", "response"}``, safe for concurrent writers.

    Each record is appended with one ``write`` under an exclusive ``flock``; readers take a shared lock
    and pick up records other processes appended since the last read. A torn last line (a writer killed
    mid-write on a filesystem without working locks) is skipped, not fatal.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, dict] = {}
        self._offset = 0
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        with self._lock:
            if not self.path.exists():
                return
            with open(self.path, "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_SH)
                handle.seek(self._offset)
                data = handle.read()
            complete = data[:data.rfind(b"\n") + 1]  # leave a partial tail for the next read
            self._offset += len(complete)
            for line in complete.splitlines():
                with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
                    record = json.loads(line)
                    self._entries[record["key"]] = record["response"]

    def get(self, key: str) -> dict | None:
        if key not in self._entries:
            self.refresh()
        return self._entries.get(key)

    def put(self, key: str, request: dict, response: dict) -> None:
        line = json.dumps({"key": key, "request": request, "response": response}, ensure_ascii=False) + "\n"
        data = line.encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":  # never continue a torn line
                    data = b"\n" + data
                os.write(fd, data)
            finally:
                os.close(fd)
            self._entries[key] = response

    def __len__(self) -> int:
        return len(self._entries)


class JudgeClient:
    """``chat()`` against one OpenAI-compatible endpoint.

    ``api_key_env`` names the environment variable holding the key (``None``: a local server that
    needs none). ``cache_scope`` replaces the base URL in the cache key where the URL is not a stable
    identity of the judge (a local demo server on a per-run port: use e.g. its served name and model hash).
    ``stats`` counts ``requests`` (HTTP attempts), ``cache_hits`` and ``retries``.
    """

    def __init__(self, base_url: str, *, api_key_env: str | None = "OPENAI_API_KEY",
                 cache_path: str | os.PathLike | None = None, cache_scope: str | None = None, max_attempts: int = 6,
                 initial_backoff_s: float = 2.0, max_backoff_s: float = 60.0, timeout_s: float = 600.0,
                 sleep: Callable[[float], None] = time.sleep):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.cache_scope = cache_scope or self.base_url
        self.cache = JsonlCache(cache_path) if cache_path else None
        self.max_attempts, self.initial_backoff_s, self.max_backoff_s = max_attempts, initial_backoff_s, max_backoff_s
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()  # chat() may be called from several threads
        self._openai = None

    def __repr__(self) -> str:  # no key in reprs either
        return f"JudgeClient(base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _client(self):
        if self._openai is None:
            from openai import OpenAI

            if self.api_key_env is None:
                key = "no-key"
            else:
                key = os.environ.get(self.api_key_env)
                if not key:
                    raise JudgeConfigError(f"the judge API key is read from the environment variable "
                                           f"{self.api_key_env}, which is not set")
            # the SDK's own retries are off: attempts and backoff are ours, so they are bounded and counted
            self._openai = OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=self.timeout_s)
        return self._openai

    def chat(self, messages: list[dict], model: str, temperature: float = 0.0, max_tokens: int = 2048,
             logprobs: bool = False, top_logprobs: int | None = None) -> ChatReply:
        body = {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens, "n": 1}
        if logprobs:
            body["logprobs"] = True
            if top_logprobs is not None:
                body["top_logprobs"] = top_logprobs
        key = request_key(self.cache_scope, body)
        if self.cache is not None and (cached := self.cache.get(key)) is not None:
            self._count("cache_hits")
            return _reply(cached, cached=True)
        response = self._post_with_retries(body)
        if self.cache is not None:
            self.cache.put(key, body, response)
        return _reply(response, cached=False)

    def _post_with_retries(self, body: dict) -> dict:
        import openai

        client = self._client()
        for attempt in range(1, self.max_attempts + 1):
            self._count("requests")
            try:
                completion = client.chat.completions.create(**body)
            except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
                raise JudgeResponseError(f"judge endpoint {self.base_url} answered with invalid JSON: {exc}") from None
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status not in RETRYABLE_STATUS and status < 500:
                    raise JudgeRequestError(status, _error_message(exc)) from None
                reason, retry_after = f"HTTP {status}", _retry_after(exc)
            except openai.APIConnectionError as exc:
                reason, retry_after = type(exc).__name__, None
            else:
                return self._checked(completion)
            if attempt == self.max_attempts:
                break
            delay = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1))
            if retry_after is not None:
                delay = min(self.max_backoff_s, max(delay, retry_after))
            self._count("retries")
            log.warning("judge request failed (%s), attempt %d/%d; retrying in %.1f s",
                        reason, attempt, self.max_attempts, delay)
            self.sleep(delay)
        raise JudgeUnavailableError(f"judge endpoint {self.base_url} failed {self.max_attempts} times "
                                    f"(last: {reason})")

    def _checked(self, completion) -> dict:
        """The completion as plain data, if it is one (a non-JSON 200 body comes back from the SDK as a str)."""
        if not hasattr(completion, "model_dump"):
            raise JudgeResponseError(f"judge endpoint {self.base_url} answered with a non-JSON body: "
                                     f"{str(completion)[:80]!r}")
        response = completion.model_dump(mode="json")
        if not response.get("choices"):
            raise JudgeResponseError(f"judge endpoint {self.base_url} answered without choices: "
                                     f"{json.dumps(response)[:120]}")
        return response


def _reply(response: dict, cached: bool) -> ChatReply:
    choice = response["choices"][0]
    return ChatReply(text=(choice.get("message") or {}).get("content") or "", logprobs=choice.get("logprobs"),
                     response=response, cached=cached)


def _error_message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    return str(exc)


def _retry_after(exc) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def run_concurrently(fn: Callable[[T], R], items: Sequence[T], concurrency: int = 1) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``concurrency`` threads, results in input order.

    The first exception is re-raised once the calls already running have ended; calls not yet started are
    cancelled, so an endpoint that is down costs one round of retries, not one per item.
    """
    if concurrency <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="judge")
    futures = [pool.submit(fn, item) for item in items]
    try:
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
