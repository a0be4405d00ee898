"""AlpacaEval 1.0 / 2.0 win rate of a model's outputs, judged through alpaca_eval.

    python workflow_scripts/eval_alpaca_eval.py --version 1 \
        --outputs results/eval/RUN/model_outputs/alpaca_eval_outputs.json \
        --reference resources/eval/alpaca_eval/text_davinci_003_outputs.json \
        --judge-model gpt-4 --base-url https://api.openai.com/v1 --api-key-env OPENAI_API_KEY \
        --cache results/judge_cache/RUN/alpaca_eval_1.jsonl \
        --output results/eval/RUN/alpaca_eval_1.json \
        --annotations-output results/eval/RUN/generations/alpaca_eval_1_annotations.json

Version 1: annotator alpaca_eval_gpt4 vs text-davinci-003 (resources/eval/alpaca_eval/text_davinci_003_outputs.json);
version 2: weighted_alpaca_eval_gpt4_turbo vs gpt-4-1106-preview (gpt4_1106_preview_outputs.json). --limit N judges
the first N outputs, against the reference records of the same instructions. A local judge instead of
--base-url/--api-key-env: --serve-model DIR [--serve-backend hf|echo-score]. The reported value is the raw win rate
(what the paper reports); version 2 also gives alpaca_eval's length-controlled win rate where it can be computed.
"""

import argparse
import json
import logging
import tempfile
from pathlib import Path

from imrepro.core.atomic import atomic_path
from imrepro.core.cli import run_main
from imrepro.eval.judge import alpaca_eval_judge as ae
from imrepro.eval.judge.client import JudgeError, JudgeResponseError
from imrepro.eval.judge.endpoint import add_judge_arguments, open_judge, positive_int
from imrepro.eval.result_record import BenchmarkResult

log = logging.getLogger("eval_alpaca_eval")
REPORTED = ("win_rate", "standard_error", "lc_win_rate", "lc_standard_error", "lc_note", "discrete_win_rate",
            "n_wins", "n_wins_base", "n_draws", "n_total", "n_examples", "n_unparseable", "avg_length")


def read_json_list(path: Path) -> list:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON: {err}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", required=True, type=int, choices=[1, 2], help="AlpacaEval 1.0 or 2.0")
    parser.add_argument("--outputs", required=True, type=Path, help="model outputs: JSON list of {instruction, output}")
    parser.add_argument("--reference", required=True, type=Path,
                        help="reference outputs of every instruction of --outputs (the full 805)")
    parser.add_argument("--limit", type=positive_int, help="judge only the first N model outputs")
    parser.add_argument("--output", required=True, type=Path, help="result JSON")
    parser.add_argument("--annotations-output", required=True, type=Path, help="alpaca_eval's annotations (JSON)")
    add_judge_arguments(parser)
    args = parser.parse_args()

    outputs, references, positions = ae.pair_with_reference(
        read_json_list(args.outputs), read_json_list(args.reference), args.limit, str(args.outputs),
        str(args.reference))
    log.info("AlpacaEval %d.0: %d outputs of %s vs %s", args.version, len(outputs), args.outputs, args.reference)

    with open_judge(args, extra_top_logprobs=("m", "M") if args.version == 2 else ()) as judge, \
            tempfile.TemporaryDirectory(prefix="alpaca_eval_config.") as workdir:
        completions = ae.JudgeCompletions(judge.client, judge.concurrency)
        try:
            row, annotations = ae.run_alpaca_eval(outputs, references, positions, args.version, args.judge_model,
                                                  completions, Path(workdir))
        except JudgeError as err:
            raise ValueError(judge.explain(err)) from None
    if completions.n_invalid == len(outputs):
        raise ValueError(judge.explain(JudgeResponseError(
            f"none of the {len(outputs)} judge responses was a chat completion (first: {completions.errors[0]})")))

    with atomic_path(args.annotations_output) as tmp:
        annotations.to_json(tmp, orient="records", indent=2, force_ascii=False)
    result = BenchmarkResult(f"alpaca_eval_{args.version}", "judge", row.get("win_rate"), "win_rate", details={
        **{key: row.get(key) for key in REPORTED}, "n_invalid_responses": completions.n_invalid,
        "reference": ae.REFERENCES[args.version], "annotator_config": ae.ANNOTATORS[args.version],
        "generator": row["generator"], "judge": judge.info})
    result.write(args.output, indent=2)
    log.info("AlpacaEval %d.0 win rate %s (LC %s) over %d verdicts, %d unparseable; judge %s", args.version,
             result.value, row.get("lc_win_rate"), row.get("n_total"), row.get("n_unparseable"), judge.info["label"])


if __name__ == "__main__":
    run_main(main)
