"""The real-model study's tables, figure, token shares and docs page (imrepro.report.study).

    python workflow_scripts/study_report.py tables \
        --targets '{"<target>": {"dataset": ..., "arm": "it", "labels": "it", "seed": 1, "label": "IT"}}' \
        --stats study_lima=results/data/stats/study_lima.json --arm-order it im_authors im \
        --label "STUDY: ..." --output table=results/study/study_table.md --output csv=... (summary, long, png,
        pdf; with --curves also curves, curves_csv, curves_png, curves_pdf) results/eval/*/output_loss.json ...
    python workflow_scripts/study_report.py shares --tokenizer results/models/gemma3_270m --max-length 2048 \
        --dataset LIMA=results/data/canonical/lima.jsonl --policy it=it --policy "weighted 0.5=weighted:0.5" \
        --output results/study/token_shares.md
    python workflow_scripts/study_report.py docs --template docs/study/STUDY.template.md \
        --insert study_table=results/study/study_table.md --output docs/STUDY.md
"""

import argparse
import json
import logging
import re
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.cli import run_main
from imrepro.report import study, study_curves

log = logging.getLogger("study_report")


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


TABLE_OUTPUTS = ("table", "csv", "summary", "long", "png", "pdf")  # study_table.md/.csv, ..., the figure
CURVES_OUTPUTS = ("curves", "curves_csv", "curves_png", "curves_pdf")  # study_curves.md/.csv, its figure


def tables(args) -> None:
    targets = json.loads(args.targets)
    stats = {name: json.loads(Path(path).read_text()) for name, path in args.stats}
    ratios = {name: study.instruction_output_ratio(row) for name, row in stats.items()}
    long = study.long_table(args.results, targets)
    if long.empty:
        raise ValueError("no scored study result among the inputs")
    summary = study.summarise(long)
    outputs = dict(args.output)
    needed = TABLE_OUTPUTS + (CURVES_OUTPUTS if args.curves else ())
    missing = sorted(set(needed) - set(outputs))
    if missing:
        raise ValueError(f"tables: no --output for {', '.join(missing)} (needs {', '.join(needed)})")
    verdicts = study.paired_verdict_lines(args.results, targets) or study.verdict_lines(summary)
    study.write_tables(summary, long, outputs, ratios, args.arm_order, args.label, verdicts)
    fig = study.figure(summary, long, ratios, args.arm_order, args.label)
    for name in ("png", "pdf"):
        study.save_figure(fig, outputs[name])
    for line in verdicts:
        log.info("%s", line)
    if args.curves:
        write_curves(args, outputs, targets, ratios, {name: int(row["n_examples"]) for name, row in stats.items()})


def write_curves(args, outputs: dict, targets: dict, ratios: dict, sizes: dict) -> None:
    """study_curves.{csv,md} and fig_study_curves.{png,pdf}: the three curves with paired intervals."""
    from imrepro.report.figures import paper_fig2
    from imrepro.report.report_inputs import load_paper

    curves = json.loads(args.curves)
    items = study_curves.item_losses([p for p in args.results if Path(p).name == "output_loss.json"], targets)
    swept = {t["arm"]: {"label": t["label"], "prompt_weight": t["prompt_weight"]} for t in targets.values()
             if t.get("prompt_weight") is not None}
    table = study_curves.curve_table(items, curves, ratios, sizes, swept)
    with atomic_open(outputs["curves_csv"]) as handle:
        table.to_csv(handle, index=False)
    lines = study_curves.reading_lines(table) + study_curves.trend_lines(table)
    with atomic_open(outputs["curves"]) as handle:
        handle.write(study_curves.curves_markdown(table) + "\n" + "".join(f"* {line}\n" for line in lines))
    paper = load_paper(args.paper)
    fits = {side: paper_fig2(paper, side)[1] for side in ("left", "right")}
    fig = study_curves.curves_figure(table, fits, args.label)
    for name in ("curves_png", "curves_pdf"):
        study.save_figure(fig, outputs[name])
    for line in lines:
        log.info("%s", line)


def shares(args) -> None:
    from imrepro.data.messages import load_messages_jsonl
    from imrepro.data.role_record import build_role_record
    from imrepro.data.token_backends import HFBackend

    backend = HFBackend(str(args.tokenizer))
    policies = {}
    for column, spec in args.policy:
        policy, _, weight = spec.partition(":")
        policies[column] = (policy, float(weight) if weight else None)
    records = {name: build_role_record(load_messages_jsonl(path), backend, args.max_length, progress=False)
               for name, path in args.dataset}
    table = study.shares_table(study.trained_token_shares(records, policies))
    with atomic_open(args.output) as handle:
        handle.write(f"Trained label positions / all label positions ({args.tokenizer.name} tokenizer, "
                     f"max length {args.max_length}):\n\n{table}")
    log.info("\n%s", table)


def docs(args) -> None:
    text = args.template.read_text()
    for key, path in args.insert:
        marker = "{{" + key + "}}"
        if marker not in text:
            raise ValueError(f"{args.template}: no {marker} placeholder")
        text = text.replace(marker, Path(path).read_text().strip())
    left = re.findall(r"\{\{[a-z_]+\}\}", text)
    if left:
        raise ValueError(f"{args.template}: placeholders without --insert: {', '.join(left)}")
    with atomic_open(args.output) as handle:
        handle.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("tables")
    p.add_argument("--targets", required=True, help="JSON: target id -> {dataset, arm, seed}")
    p.add_argument("--stats", type=_pair, action="append", default=[], help="DATASET=stats JSON")
    p.add_argument("--arm-order", nargs="*", default=[])
    p.add_argument("--label", default="")
    p.add_argument("--curves", default="", help="JSON: the config's study.curves (none: no curves)")
    p.add_argument("--paper", type=Path, default=None, help="paper_results.csv (the paper's Fig. 2 fits)")
    p.add_argument("--output", type=_pair, action="append", default=[], metavar="NAME=PATH",
                   help=f"one per output: {', '.join(TABLE_OUTPUTS)} (with --curves: {', '.join(CURVES_OUTPUTS)})")
    p.add_argument("results", nargs="+", help="results/eval/<target>/<benchmark>.json files")
    p.set_defaults(func=tables)
    p = commands.add_parser("shares")
    p.add_argument("--tokenizer", type=Path, required=True)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--dataset", type=_pair, action="append", required=True, help="NAME=canonical JSONL")
    p.add_argument("--policy", type=_pair, action="append", required=True, help="COLUMN=policy[:prompt weight]")
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(func=shares)
    p = commands.add_parser("docs")
    p.add_argument("--template", type=Path, required=True)
    p.add_argument("--insert", type=_pair, action="append", default=[], help="PLACEHOLDER=file")
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(func=docs)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    run_main(main)
