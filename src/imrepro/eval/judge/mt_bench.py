"""MT-Bench single-answer grading, following FastChat's ``llm_judge`` (the protocol behind the paper's numbers).

FastChat's judge code needs ``openai<1`` and cannot live next to alpaca-eval, so this module re-implements
the few parts the paper used, from the shipped FastChat data files:

* judge prompt choice: ``single-v1`` for turn 1, ``single-v1-multi-turn`` for turn 2; questions of the
  reference categories (math, reasoning, coding) use ``single-math-v1`` / ``single-math-v1-multi-turn``
  with GPT-4's reference answers;
* prompt filling: ``prompt_template.format(...)`` with FastChat's field names (question, answer,
  ref_answer_1 for turn 1; question_1/2, answer_1/2, ref_answer_1/2 for turn 2), sent as a system
  message (the prompt's ``system_prompt``) plus one user message, at temperature 0 with max_tokens 2048;
* score: FastChat's ``[[x]]`` regex, then its ``[x]`` backup; a verdict matching neither, or a response that
  is not a chat completion, is counted as unparseable (FastChat writes -1 and ``show_result`` drops it);
* aggregation as ``show_result --mode single``: the mean over all parsed judgements (turn 1 and turn 2),
  with per-turn and per-category means alongside.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from statistics import mean

from imrepro.core.jsonl import read_jsonl
from imrepro.eval.judge.client import JudgeResponseError, run_concurrently

log = logging.getLogger(__name__)

NEED_REF_CATS = ("math", "reasoning", "coding")
CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
ONE_SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
JUDGE_TEMPERATURE = 0.0
JUDGE_MAX_TOKENS = 2048


def load_questions(path: str | Path) -> list[dict]:
    """``question.jsonl``: ``{question_id, category, turns: [q1, q2], reference?}``."""
    return read_jsonl(path)


def load_judge_prompts(path: str | Path) -> dict[str, dict]:
    """``judge_prompts.jsonl`` keyed by prompt name (``single-v1``, ``single-math-v1-multi-turn``, ...)."""
    return {record["name"]: record for record in read_jsonl(path)}


def load_answers(path: str | Path) -> dict[int, list[str]]:
    """A FastChat answer file (``{question_id, choices: [{turns}]}`` per line) as question_id -> turns."""
    return {record["question_id"]: record["choices"][0]["turns"] for record in read_jsonl(path)}


def load_reference_answers(path: str | Path) -> dict[int, list[str]]:
    """``reference_answer/gpt-4.jsonl`` (same layout as an answer file)."""
    return load_answers(path)


def judge_prompt_name(category: str, turn: int) -> str:
    name = "single-math-v1" if category in NEED_REF_CATS else "single-v1"
    return f"{name}-multi-turn" if turn == 2 else name


@dataclasses.dataclass(frozen=True)
class JudgeTask:
    question_id: int
    category: str
    turn: int
    prompt_name: str
    messages: list[dict]


def build_judge_task(question: Mapping, answer_turns: Sequence[str], judge_prompts: Mapping[str, dict],
                     reference_turns: Sequence[str] | None = None, turn: int = 1) -> JudgeTask:
    """The judge request for one answer turn, exactly as FastChat's ``run_judge_single`` fills it."""
    if turn not in (1, 2):
        raise ValueError("MT-Bench has turns 1 and 2")
    category = question["category"]
    name = judge_prompt_name(category, turn)
    prompt = judge_prompts[name]
    fields: dict[str, str] = {}
    if category in NEED_REF_CATS:
        if reference_turns is None:
            raise ValueError(f"question {question['question_id']} ({category}) needs a reference answer")
        fields["ref_answer_1"] = reference_turns[0]
        if turn == 2:
            fields["ref_answer_2"] = reference_turns[1]
    if turn == 1:
        fields.update(question=question["turns"][0], answer=answer_turns[0])
    else:
        fields.update(question_1=question["turns"][0], question_2=question["turns"][1],
                      answer_1=answer_turns[0], answer_2=answer_turns[1])
    user_prompt = prompt["prompt_template"].format(**fields)
    # FastChat's judge conversation (the "chatgpt" template) drops an empty system message
    messages = [{"role": "system", "content": prompt["system_prompt"]}] if prompt["system_prompt"] else []
    messages.append({"role": "user", "content": user_prompt})
    return JudgeTask(question["question_id"], category, turn, name, messages)


def build_judge_tasks(questions: Iterable[Mapping], answers: Mapping[int, Sequence[str]],
                      judge_prompts: Mapping[str, dict],
                      references: Mapping[int, Sequence[str]] | None = None) -> list[JudgeTask]:
    """All turn-1 and turn-2 judge requests (160 for the 80 questions), turn 1 first as FastChat orders them."""
    questions = list(questions)
    references = references or {}
    tasks = []
    for turn in (1, 2):
        for q in questions:
            if turn == 2 and len(q["turns"]) != 2:
                continue
            tasks.append(build_judge_task(q, answers[q["question_id"]], judge_prompts,
                                          references.get(q["question_id"]), turn))
    return tasks


def parse_score(judgment: str) -> float | None:
    """The rating in a verdict (``[[x]]``, else ``[x]``), or None if there is none."""
    match = ONE_SCORE_PATTERN.search(judgment) or ONE_SCORE_PATTERN_BACKUP.search(judgment)
    return float(ast.literal_eval(match.group(1))) if match else None


def judge_all(tasks: Iterable[JudgeTask], client, judge_model: str, *, temperature: float = JUDGE_TEMPERATURE,
              max_tokens: int = JUDGE_MAX_TOKENS, concurrency: int = 1) -> list[dict]:
    """Send each task to the judge (``client``: a ``judge_client.JudgeClient``); one record per judgement.

    A response that is not a chat completion (``JudgeResponseError``) becomes an unparseable verdict with an
    ``error`` field, as FastChat scores an API failure -1 and leaves it out; every other judge error is raised.
    """
    def judge_one(task: JudgeTask) -> dict:
        try:
            reply = client.chat(task.messages, judge_model, temperature=temperature, max_tokens=max_tokens)
            text, error = reply.text, None
        except JudgeResponseError as exc:
            text, error = "", str(exc)
        score = parse_score(text)
        if score is None:
            log.warning("unparseable verdict for question %d turn %d: %.80r", task.question_id, task.turn,
                        error or text)
        record = {"question_id": task.question_id, "category": task.category, "turn": task.turn,
                  "judge": [judge_model, task.prompt_name], "user_prompt": task.messages[-1]["content"],
                  "judgment": text, "score": score}
        if error:
            record["error"] = error
        return record

    return run_concurrently(judge_one, list(tasks), concurrency)


def aggregate(records: Iterable[Mapping]) -> dict:
    """Overall, per-turn and per-category means of the parsed scores, and the unparseable count.

    ``overall`` is FastChat's single-mode "Average": the mean over every parsed judgement of both turns
    (with none missing, the mean of the turn-1 and turn-2 means).
    """
    records = list(records)
    parsed = [r for r in records if r.get("score") is not None]
    by_turn: dict[int, list[float]] = defaultdict(list)
    by_category: dict[str, list[float]] = defaultdict(list)
    by_category_turn: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in parsed:
        by_turn[r["turn"]].append(r["score"])
        by_category[r["category"]].append(r["score"])
        by_category_turn[r["category"]][r["turn"]].append(r["score"])
    categories = [c for c in CATEGORIES if c in by_category] + sorted(set(by_category) - set(CATEGORIES))
    return {
        "overall": mean(r["score"] for r in parsed) if parsed else None,
        "turn_1": mean(by_turn[1]) if by_turn[1] else None,
        "turn_2": mean(by_turn[2]) if by_turn[2] else None,
        "per_category": {c: mean(by_category[c]) for c in categories},
        "per_category_turn": {c: {f"turn_{t}": mean(v) for t, v in sorted(by_category_turn[c].items())}
                              for c in categories},
        "n_judgments": len(records),
        "n_parsed": len(parsed),
        "n_unparseable": len(records) - len(parsed),
        "n_invalid_responses": sum(1 for r in records if r.get("error")),
        "unparseable": [[r["question_id"], r["turn"]] for r in records if r.get("score") is None],
    }
