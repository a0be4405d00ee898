"""MT-Bench: single-answer grading of both turns by an LLM judge (FastChat's llm_judge protocol).

    python workflow_scripts/eval_mt_bench_judge.py --answers results/eval/RUN/model_outputs/mt_bench_answers.jsonl \
        --questions resources/eval/mt_bench/question.jsonl \
        --reference resources/eval/mt_bench/reference_answer/gpt-4.jsonl \
        --judge-prompts resources/eval/mt_bench/judge_prompts.jsonl \
        --judge-model gpt-4 --base-url https://api.openai.com/v1 --api-key-env OPENAI_API_KEY \
        --cache results/judge_cache/mt_bench.jsonl \
        --output results/eval/RUN/mt_bench.json --judgments-output results/eval/RUN/generations/mt_bench_judgments.jsonl

A local judge instead of --base-url/--api-key-env: --serve-model DIR [--serve-backend hf] [--serve-max-new-tokens N]
(--serve-backend echo-score: a deterministic stand-in, for tests). Unparseable verdicts are counted and left out
of the means, as FastChat's show_result does; a job in which no response at all was a chat completion fails.
"""

import argparse
import json
import logging
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.core.jsonl import iter_jsonl
from imrepro.eval.judge import mt_bench
from imrepro.eval.judge.client import JudgeError, JudgeResponseError
from imrepro.eval.judge.endpoint import add_judge_arguments, open_judge, positive_int
from imrepro.eval.result_record import BenchmarkResult

log = logging.getLogger("eval_mt_bench_judge")


def read_answers(path: Path) -> tuple[dict[int, list[str]], str]:
    """question_id -> answer turns, and the answering model's id, from a FastChat answer file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such answer file")
    answers, model_ids = {}, set()
    for number, record in iter_jsonl(path):  # a line that is not JSON: "<path>:<line>: not JSON"
        try:
            answers[int(record["question_id"])] = list(record["choices"][0]["turns"])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ValueError(f"{path}:{number}: not a FastChat answer record "
                             f"({{question_id, choices: [{{turns}}]}}): {err}") from None
        model_ids.add(str(record.get("model_id", "")))
    return answers, ",".join(sorted(model_ids))


def select_questions(questions: list[dict], answers: dict[int, list[str]], limit: int | None,
                     answers_path: Path) -> list[dict]:
    selected = questions[:limit] if limit is not None else questions
    for question in selected:
        turns = answers.get(question["question_id"])
        if turns is None:
            raise ValueError(f"{answers_path}: no answer to question {question['question_id']} "
                             f"({len(answers)} answers for {len(selected)} questions; was --limit the same?)")
        if len(turns) < len(question["turns"]):
            raise ValueError(f"{answers_path}: question {question['question_id']} has {len(question['turns'])} "
                             f"turns but the answer only {len(turns)}")
    return selected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", required=True, type=Path, help="FastChat answer JSONL of the judged model")
    parser.add_argument("--questions", required=True, type=Path, help="MT-Bench question.jsonl")
    parser.add_argument("--reference", required=True, type=Path, help="GPT-4 reference answers (math/reasoning/coding)")
    parser.add_argument("--judge-prompts", required=True, type=Path, help="FastChat judge_prompts.jsonl")
    parser.add_argument("--limit", type=positive_int, help="judge only the first N questions of --questions")
    parser.add_argument("--output", required=True, type=Path, help="result JSON")
    parser.add_argument("--judgments-output", required=True, type=Path, help="one JSON line per judgement")
    add_judge_arguments(parser)
    args = parser.parse_args()

    for path in (args.questions, args.reference, args.judge_prompts):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
    answers, model_id = read_answers(args.answers)
    questions = select_questions(mt_bench.load_questions(args.questions), answers, args.limit, args.answers)
    tasks = mt_bench.build_judge_tasks(questions, answers, mt_bench.load_judge_prompts(args.judge_prompts),
                                       mt_bench.load_reference_answers(args.reference))
    log.info("%d questions of %s -> %d judge requests", len(questions), model_id or args.answers, len(tasks))

    with open_judge(args) as judge:
        try:
            records = mt_bench.judge_all(tasks, judge.client, args.judge_model, concurrency=judge.concurrency)
        except JudgeError as err:
            raise ValueError(judge.explain(err)) from None
    summary = mt_bench.aggregate(records)
    if records and summary["n_invalid_responses"] == len(records):
        raise ValueError(judge.explain(JudgeResponseError(
            f"none of the {len(records)} judge responses was a chat completion (first: {records[0]['error']})")))

    with atomic_open(args.judgments_output) as handle:
        for record in records:
            handle.write(json.dumps({"model": model_id, **record}, ensure_ascii=False) + "\n")
    result = BenchmarkResult("mt_bench", "judge", summary["overall"], "score (1-10, mean of both turns)", details={
        "turn_1": summary["turn_1"], "turn_2": summary["turn_2"],
        "by_category": summary["per_category"], "by_category_turn": summary["per_category_turn"],
        "n_questions": len(questions), "n_judgments": summary["n_judgments"],
        "n_unparseable": summary["n_unparseable"], "n_invalid_responses": summary["n_invalid_responses"],
        "unparseable": summary["unparseable"], "model_id": model_id, "judge": judge.info,
    })
    result.write(args.output, indent=2)
    log.info("MT-Bench %s: %s over %d judgements (%d unparseable), judge %s", model_id or "",
             "n/a" if result.value is None else f"{result.value:.3f}", summary["n_judgments"],
             summary["n_unparseable"], judge.info["label"])


if __name__ == "__main__":
    run_main(main)
