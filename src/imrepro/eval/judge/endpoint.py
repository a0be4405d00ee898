"""The judge of a judged benchmark: a remote OpenAI-compatible endpoint, or a local model served for one job.

Both judging scripts (MT-Bench, AlpacaEval) take the same flags (``add_judge_arguments``) and open the judge
with ``open_judge(args)``, which yields a cached, retrying ``JudgeClient`` and the ``judge`` block of the result:

* remote: ``--base-url URL --api-key-env VAR``; the key is read from ``$VAR`` at the first request that is not
  in the cache (never from argv, never logged or stored);
* served: ``--serve-backend hf --serve-model DIR`` (or the ``echo-score`` test double) starts
  ``judge_server`` on a free local port for the duration of the block and stops it afterwards, also on error.
  With ``--serve-shared DIR`` (what the workflow passes) the judge jobs of a run share one server process per
  judge configuration instead: the first job starts it in the background (port file and lock in DIR), later
  jobs find it there, and it exits by itself after ``SHARED_IDLE_EXIT_S`` seconds without a request.
  Cache entries are keyed by a digest of the model directory and the serving settings instead of the
  per-run URL, so a rerun is answered from the cache either way.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from imrepro.core.models import check_model_dir
from imrepro.eval.judge.client import JudgeClient, JudgeError, JudgeUnavailableError
from imrepro.eval.judge.server import MAX_NEW_TOKENS

log = logging.getLogger(__name__)


def positive_int(text: str) -> int:
    """argparse type of ``--limit``-like flags."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("judge")
    group.add_argument("--judge-model", required=True, help="model name sent to the endpoint (gpt-4, ...)")
    group.add_argument("--base-url", help="OpenAI-compatible base URL, e.g. https://api.openai.com/v1 "
                                          "(not with --serve-*)")
    group.add_argument("--api-key-env", default="OPENAI_API_KEY",
                       help="environment variable holding the API key ('' for an endpoint that needs none)")
    group.add_argument("--cache", required=True, type=Path,
                       help="JSON-lines cache of judge responses; shared by reruns and by concurrent jobs")
    group.add_argument("--serve-model", type=Path, help="serve this Hugging Face model directory as the judge")
    group.add_argument("--serve-backend", choices=["hf", "echo-score"],
                       help="served judge: hf (the model, default with --serve-model) or echo-score (test double)")
    group.add_argument("--serve-max-new-tokens", type=int, default=MAX_NEW_TOKENS,
                       help="served judge: cap on generated tokens (default: %(default)s)")
    group.add_argument("--serve-shared", type=Path, metavar="DIR",
                       help="served judge: share one background server per judge configuration with the other "
                            "jobs of this run (its port file, lock and log in DIR)")
    group.add_argument("--label", help="how reports name this judge (default: --judge-model)")
    group.add_argument("--concurrency", type=int, default=4, help="judge requests in flight at once")
    group.add_argument("--max-attempts", type=int, default=6, help="attempts per request on 429/5xx/connection errors")
    group.add_argument("--initial-backoff-s", type=float, default=2.0, help="first retry delay (doubles, max 60 s)")


@dataclasses.dataclass
class Judge:
    client: JudgeClient
    info: dict  # the "judge" block of a result file
    concurrency: int
    api_key_env: str | None

    def explain(self, err: JudgeError) -> str:
        """One line for a judge failure that ends the job: what failed, at which endpoint, and where the key is read."""
        where = f"judge endpoint {self.info['base_url']} (model {self.info['model']!r}"
        where += f", API key from ${self.api_key_env})" if self.api_key_env else ")"
        if isinstance(err, JudgeUnavailableError):
            return f"{err}: is {where} up and reachable?"
        return f"{err} [{where}]"

    def log_stats(self) -> None:
        stats = self.client.stats
        log.info("judge: %d requests (%d retries), %d answered from the cache %s", stats["requests"],
                 stats["retries"], stats["cache_hits"], self.client.cache.path if self.client.cache else "")


def directory_digest(path: Path) -> str:
    """sha256 over the names and bytes of every file below ``path`` (a model directory)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def served_cache_scope(backend: str, model_dir: Path | None, max_new_tokens: int,
                       extra_top_logprobs: Sequence[str]) -> str:
    """The cache identity of a served judge: what determines its answers, not the per-run port."""
    if backend == "echo-score":
        return "local:echo-score"
    return (f"local:hf:{directory_digest(model_dir)}:max_new_tokens={max_new_tokens}"
            f":extra_top_logprobs={','.join(extra_top_logprobs)}")


def _client(args, base_url: str, api_key_env: str | None, cache_scope: str | None = None) -> JudgeClient:
    if args.concurrency < 1:
        raise ValueError("--concurrency must be at least 1")
    return JudgeClient(base_url, api_key_env=api_key_env, cache_path=args.cache, cache_scope=cache_scope,
                       max_attempts=args.max_attempts, initial_backoff_s=args.initial_backoff_s)


@contextlib.contextmanager
def open_judge(args, extra_top_logprobs: Sequence[str] = ()) -> Iterator[Judge]:
    """The judge the flags describe; a served one runs until the block exits (``extra_top_logprobs``: see HFBackend)."""
    served = args.serve_model is not None or args.serve_backend is not None
    label = args.label or args.judge_model
    if not served:
        if not args.base_url:
            raise ValueError("no judge: give --base-url (with --api-key-env) or --serve-model/--serve-backend")
        api_key_env = args.api_key_env or None
        client = _client(args, args.base_url, api_key_env)
        judge = Judge(client, {"model": args.judge_model, "base_url": client.base_url, "label": label,
                               "served_backend": None}, args.concurrency, api_key_env)
        try:
            yield judge
        finally:
            judge.log_stats()
        return

    from imrepro.eval.judge.server import make_backend, serve_in_thread

    if args.base_url:
        raise ValueError("--base-url and --serve-model/--serve-backend exclude each other")
    backend_kind = args.serve_backend or "hf"
    if backend_kind == "hf":
        if args.serve_model is None:
            raise ValueError("--serve-backend hf needs --serve-model DIR")
        check_model_dir(args.serve_model)
    extra = tuple(extra_top_logprobs) if backend_kind == "hf" else ()
    scope = served_cache_scope(backend_kind, args.serve_model, args.serve_max_new_tokens, extra)
    shown = f"local:{args.serve_model}" if args.serve_model else f"local:{backend_kind}"
    info = {"model": args.judge_model, "base_url": shown, "label": label, "served_backend": backend_kind}
    if args.serve_shared is not None:
        base_url = shared_server(args.serve_shared, backend_kind, args.serve_model, args.judge_model,
                                 args.serve_max_new_tokens, extra, scope)
        judge = Judge(_client(args, base_url, None, cache_scope=scope), info, args.concurrency, None)
        try:
            yield judge
        finally:
            judge.log_stats()
        return
    backend = make_backend(backend_kind, str(args.serve_model) if args.serve_model else None,
                           args.serve_max_new_tokens, extra)
    with serve_in_thread(backend, args.judge_model, default_max_tokens=args.serve_max_new_tokens) as server:
        log.info("serving judge %r (%s backend) at %s", args.judge_model, backend_kind, server.base_url)
        client = _client(args, server.base_url, None, cache_scope=scope)
        judge = Judge(client, info, args.concurrency, None)
        try:
            yield judge
        finally:
            judge.log_stats()
            log.info("local judge server answered %d POST requests", server.stats["POST /v1/chat/completions"])


SHARED_IDLE_EXIT_S = 120.0  # a shared server outlives a gap between judge jobs, not the run
SHARED_START_TIMEOUT_S = 600.0


def shared_server(state_dir: Path, backend_kind: str, model_dir: Path | None, judge_model: str, max_new_tokens: int,
                  extra_top_logprobs: Sequence[str], scope: str) -> str:
    """Base URL of the background judge server for this judge configuration, started if none answers.

    One lock per configuration serialises the check-or-start, so concurrent judge jobs start one server; the
    server is a detached ``python -m imrepro.eval.judge.server --idle-exit`` (log: ``<key>.log`` in
    ``state_dir``) that removes its port file when it stops.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{scope}|{judge_model}".encode()).hexdigest()[:16]
    port_file, log_file = state_dir / f"{key}.port", state_dir / f"{key}.log"
    with open(state_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = _answering(port_file, judge_model)
        if url is not None:
            log.info("shared judge server %r (%s backend) at %s", judge_model, backend_kind, url)
            return url
        port_file.unlink(missing_ok=True)
        command = [sys.executable, "-m", "imrepro.eval.judge.server", "--backend", backend_kind,
                   "--served-name", judge_model, "--max-new-tokens", str(max_new_tokens),
                   "--extra-top-logprobs", ",".join(extra_top_logprobs), "--port-file", str(port_file),
                   "--idle-exit", str(SHARED_IDLE_EXIT_S)]
        if model_dir is not None:
            command += ["--model", str(model_dir)]
        src = str(Path(__file__).resolve().parents[3])  # the server imports this library, installed or not
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
        with open(log_file, "a") as out:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)  # not killed with this job's group
        deadline = time.monotonic() + SHARED_START_TIMEOUT_S
        while (url := _answering(port_file, judge_model)) is None:
            if process.poll() is not None:
                tail = log_file.read_text(errors="replace").splitlines()[-5:]
                raise JudgeUnavailableError(f"the shared judge server exited with status {process.returncode} "
                                            f"(log {log_file}): {' | '.join(tail)}")
            if time.monotonic() > deadline:
                process.terminate()
                raise JudgeUnavailableError(f"the shared judge server did not start in {SHARED_START_TIMEOUT_S:.0f} s "
                                            f"(log {log_file})")
            time.sleep(0.2)
        log.info("started shared judge server %r (%s backend, pid %d) at %s", judge_model, backend_kind,
                 process.pid, url)
        return url


def _answering(port_file: Path, judge_model: str) -> str | None:
    """The base URL in ``port_file`` if a judge server there serves ``judge_model``, else None."""
    try:
        port = int(port_file.read_text().strip())
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost, never a proxy
        with no_proxy.open(f"http://127.0.0.1:{port}/v1/models", timeout=5) as response:
            served = [entry["id"] for entry in json.load(response)["data"]]
    except (OSError, ValueError, KeyError):
        return None
    return f"http://127.0.0.1:{port}/v1" if judge_model in served else None
