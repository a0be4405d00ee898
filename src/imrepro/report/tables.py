"""The paper's Tables 1-5 and 7, our numbers next to the published ones.

Every cell holds our value, the paper's value and the difference (ours - paper). A paper row that
this configuration did not run is kept and marked ``not run``, never filled in; a run of ours without
a paper counterpart (our Eq.-4 IM, a demo slice without ``compare_as``, another model) is shown with
the paper value ``—``. Which run matches which paper row: :mod:`imrepro.report.report_inputs`.

Which of our runs enter a table (tables 1-4, 7): trained runs at the main epoch count (``--epochs``,
default the most common one; epoch sweeps belong to Fig. 4/10/11) whose ``arm`` (the paper's method,
from the run's declared labels policy, NEFTune and KL settings: ``report_inputs.paper_arm``) is one
of the table's methods and that either match a paper row or share (model, dataset) with a run of the
table's *anchor* method (Table 1: NEFTune, Table 3: IT w/ KL (lambda=1.0), Table 4: IM+NEFTune,
Table 7: any KL; Table 2: a regeneration BLEU value). The anchor keeps, e.g., the IT/IM runs of the
Fig. 2 subsets out of Table 1. Base-model rows: a base run that matches the paper's base row, or whose
model has another run in the table.

Long CSV, one row per cell: ``table,row,model,dataset,method,epochs,run,paper_model,paper_dataset,
paper_method,benchmark,metric,ours,paper,diff,status,judge,note`` with status one of ``ok``, ``not run``
(``not built`` in Table 5), ``missing`` (run, but no value), ``no paper value``; ``note`` is eval_long's note
of our value, e.g. ``partial: 1 of 5 tasks (mmlu)`` for a mean over only the scored tasks (marked ``‡`` in
the Markdown; the status stays ``ok``); ``vs_it*``: the paired difference from the IT arm of the same model,
training set and epochs, its interval, Holm-adjusted p and significance (comparisons.csv, joined on the run id;
empty where there is none).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from imrepro.catalogue import TABLE_STEMS
from imrepro.core.atomic import atomic_open
from imrepro.eval.aggregate import CATEGORIES, MEAN_NAME
from imrepro.report.report_inputs import (
    IM,
    IM_EQ4,
    IT,
    JUDGED_BENCHMARKS,
    is_partial,
    main_epochs,
    name_key,
    present,
)

NOT_RUN, NOT_BUILT, MISSING, NO_PAPER_VALUE, OK = "not run", "not built", "missing", "no paper value", "ok"
NO_PAPER = "—"
VS_IT_COLUMNS = ("vs_it", "vs_it_low", "vs_it_high", "vs_it_p_holm", "vs_it_significant")
LONG_COLUMNS = ("table", "row", "model", "dataset", "method", "epochs", "run", "paper_model", "paper_dataset",
                "paper_method", "benchmark", "metric", "ours", "paper", "diff", "status", "judge", "note",
                *VS_IT_COLUMNS)
PARTIAL_FOOTNOTE = "‡ partial: averaged over the tasks (categories) that were scored, see the run's summary.json"
VS_IT_FOOTNOTE = ("vs IT: the paired difference from the IT run of the same model, training set and epochs on the "
                  "items both scored, with its 95 % interval; * significant after Holm's correction "
                  "(comparisons.md says which, in words)")



@dataclass(frozen=True)
class Column:
    label: str  # Markdown header
    benchmark: str  # eval_long benchmark (Table 5: the stats CSV column)
    metric: str  # eval_long metric
    paper_benchmark: str  # paper_results.csv benchmark (Table 5: its metric)
    decimals: int = 2


@dataclass(frozen=True)
class TableSpec:
    key: str
    filename: str
    paper_table: str
    title: str
    columns: tuple[Column, ...]
    methods: Callable[[str], bool] = lambda m: False
    anchor: Callable[[str], bool] | None = None  # None: a run with a value in the table's columns
    paper_method_alias: Mapping[str, str] = field(default_factory=dict)  # paper method -> ours
    include_base: bool = True


def _in(*names: str) -> Callable[[str], bool]:
    keys = {name_key(n) for n in names}
    return lambda method: name_key(method) in keys


def _is_kl(method: str) -> bool:
    return name_key(method).startswith("itwkl")


_MEAN = Column("Mean (18 NLP)", MEAN_NAME, "mean_of_6_categories", MEAN_NAME)
_AE1 = Column("AlpacaEval 1.0", "AlpacaEval 1.0", "win_rate", "AlpacaEval 1.0")
_AE2 = Column("AlpacaEval 2.0", "AlpacaEval 2.0", "win_rate", "AlpacaEval 2.0")
_LAMBDA1 = "IT w/ KL (lambda=1.0)"

TABLES: dict[str, TableSpec] = {spec.key: spec for spec in (
    TableSpec(
        "table1", TABLE_STEMS["table1"], "Table 1",
        "Table 1: 6 NLP categories (%), their mean, MT-Bench (1-10), AlpacaEval 1.0/2.0 win rates (%)",
        tuple(Column(name, name, "category_mean", name) for name in CATEGORIES.values())
        + (_MEAN, Column("MT-Bench", "MT-Bench", "score", "MT-Bench"), _AE1, _AE2),
        methods=_in(IT, "NEFTune", IM, IM_EQ4), anchor=_in("NEFTune")),
    TableSpec(
        "table2", TABLE_STEMS["table2"], "Table 2",
        "Table 2: BLEU of greedy regenerations of the training outputs (lower = less overfitting)",
        (Column("Regeneration BLEU", "Regeneration BLEU", "bleu", "train-set regeneration BLEU"),),
        methods=_in(IT, IM, IM_EQ4), anchor=None, include_base=False),
    TableSpec(
        "table3", TABLE_STEMS["table3"], "Table 3",
        "Table 3: IT with and without the KL regulariser (lambda = 1.0)",
        (_MEAN, _AE2), methods=_in(IT, _LAMBDA1), anchor=_in(_LAMBDA1),
        paper_method_alias={"IT w/o KL": IT}),
    TableSpec(
        "table4", TABLE_STEMS["table4"], "Table 4",
        "Table 4: IM versus IM + NEFTune",
        (_AE1, _MEAN), methods=_in(IM, "IM+NEFTune"), anchor=_in("IM+NEFTune"), include_base=False),
    TableSpec(
        "table7", TABLE_STEMS["table7"], "Table 7",
        "Table 7: KL-regularised IT for lambda in {0.01, 0.1, 1.0}",
        (_MEAN, _AE2), methods=_is_kl, anchor=_is_kl),
)}

TABLE5 = TableSpec(
    "table5", TABLE_STEMS["table5"], "Table 5",
    "Table 5: training-set statistics (whitespace words per example)",
    (Column("#examples", "n_examples", "", "size (#examples)", 0),
     Column("avg total", "avg_total", "", "avg total length"),
     Column("avg output", "avg_output", "", "avg output length"),
     Column("output std", "std_output", "", "output length std"),
     Column("avg instruction", "avg_instruction", "", "avg instruction length"),
     Column("instruction std", "std_instruction", "", "instruction length std"),
     Column("output/instruction", "ratio_output_instruction", "", "output/instruction ratio", 4),
     Column("instruction/output", "ratio_instruction_output", "", "instruction/output ratio", 4)),
)
ALL_TABLES = tuple(TABLE_STEMS)
TABLE5_STATS_COLUMNS = ("dataset", "n_examples", "avg_total", "avg_output", "std_output", "avg_instruction",
                        "std_instruction", "ratio_output_instruction")


def filenames(key: str) -> tuple[str, str]:
    """The CSV and Markdown file names of one table."""
    stem = TABLE5.filename if key == "table5" else TABLES[key].filename
    return f"{stem}.csv", f"{stem}.md"


# ----------------------------------------------------------------------------------------------
# Tables 1-4, 7
# ----------------------------------------------------------------------------------------------

def _paper_rows(spec: TableSpec, paper: pd.DataFrame) -> tuple[dict, dict]:
    """Paper row key -> display names (in paper order), and (key, benchmark) -> value."""
    rows, cells = {}, {}
    for item in paper[paper["table"] == spec.paper_table].itertuples():
        method = spec.paper_method_alias.get(item.method, item.method)
        key = (name_key(item.model), name_key(item.train_dataset), name_key(method))
        rows.setdefault(key, {"model": item.model, "dataset": _clean(item.train_dataset), "method": item.method})
        if (key, item.benchmark) in cells:
            raise ValueError(f"paper results: two values for {spec.paper_table} {key} {item.benchmark!r}")
        cells[(key, item.benchmark)] = item.value
    return rows, cells


def paper_row_keys(spec: TableSpec, paper: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(model, training set, method) keys of the paper's rows of one table, in paper order."""
    return list(_paper_rows(spec, paper)[0])


def _clean(dataset: str) -> str:
    """'LIMA (inferred: ...)' -> 'LIMA (inferred)': the note stays short in a table cell."""
    head, sep, _ = dataset.partition(" (inferred")
    return head + " (inferred)" if sep else dataset


def _run_key(run) -> tuple[str, str, str]:
    return name_key(run.compare_model), name_key(run.compare_dataset), name_key(run.arm)


def table_runs(spec: TableSpec, runs: pd.DataFrame, eval_long: pd.DataFrame, paper_keys: Iterable,
               epochs: float | None) -> pd.DataFrame:
    """The runs (rows of runs.csv) that one of Tables 1-4, 7 shows (rule: module docstring)."""
    paper_keys = set(paper_keys)
    trained = runs[~runs["is_base"] & runs["arm"].map(spec.methods)]
    if epochs is not None:
        trained = trained[trained["epochs"] == epochs]
    groups = {(r.model, r.dataset) for r in trained.itertuples() if _anchors(spec, r, eval_long)}
    keep = [_run_key(r) in paper_keys or (r.model, r.dataset) in groups for r in trained.itertuples()]
    chosen = trained[np.array(keep, dtype=bool)]
    if spec.include_base:
        base = runs[runs["is_base"]]
        models = set(chosen["model"])
        keep = [_run_key(r) in paper_keys or r.model in models for r in base.itertuples()]
        chosen = pd.concat([base[np.array(keep, dtype=bool)], chosen])
    return chosen


def _anchors(spec: TableSpec, run, eval_long: pd.DataFrame) -> bool:
    if spec.anchor is not None:
        return spec.anchor(run.arm)
    mine = eval_long[(eval_long["run"] == run.run) & eval_long["benchmark"].isin([c.benchmark for c in spec.columns])]
    return bool(mine["value"].notna().any())


def build_table(spec: TableSpec, eval_long: pd.DataFrame, runs: pd.DataFrame, paper: pd.DataFrame,
                epochs: float | None = None, comparisons: pd.DataFrame | None = None) -> list[dict]:
    """Long rows (one per cell) of one of Tables 1-4, 7."""
    epochs = main_epochs(runs, epochs)
    paper_rows, paper_cells = _paper_rows(spec, paper)
    chosen = table_runs(spec, runs, eval_long, paper_rows, epochs)
    ours = {(r, b, m): v for r, b, m, v in eval_long[["run", "benchmark", "metric", "value"]].itertuples(index=False)}
    notes = ({} if "note" not in eval_long.columns else  # a frame not read by load_eval_long may lack it
             {(r, b, m): n for r, b, m, n in eval_long[["run", "benchmark", "metric", "note"]].itertuples(index=False)})

    entries = []  # (paper key or None, run row or None)
    used = set()
    for key in paper_rows:
        hits = [r for r in chosen.itertuples() if _run_key(r) == key]
        entries += [(key, r) for r in hits] or [(key, None)]
        used.update(r.run for r in hits)
    rest = chosen[~chosen["run"].isin(used)]
    model_order = {m: i for i, m in enumerate(dict.fromkeys(runs["model"]))}
    data_order = {d: i for i, d in enumerate(dict.fromkeys(runs["dataset"]))}
    rest = rest.assign(_m=rest["model"].map(model_order), _b=~rest["is_base"], _d=rest["dataset"].map(data_order))
    for run in rest.sort_values(["_m", "_b", "_d"], kind="stable").itertuples():
        # next to the paper's rows of the same model and training set when there are any
        group = _run_key(run)[:2]
        spots = [i for i, (k, r) in enumerate(entries) if (k or _run_key(r))[:2] == group]
        entries.insert(spots[-1] + 1 if spots else len(entries), (None, run))

    it_runs = frozenset(runs.loc[runs["arm"] == IT, "run"])  # the IT arm by declared attributes, not by label
    rows = []
    for index, (key, run) in enumerate(entries):
        shown = paper_rows.get(key, {})
        for col in spec.columns:
            paper_value = paper_cells.get((key, col.paper_benchmark), math.nan) if key else math.nan
            value = ours.get((run.run, col.benchmark, col.metric), math.nan) if run is not None else math.nan
            note = notes.get((run.run, col.benchmark, col.metric), "") if run is not None else ""
            rows.append({**_cell(spec.key, index, col, run, shown, value, paper_value, NOT_RUN, note),
                         **_vs_it(comparisons, run, col, it_runs)})
    return rows


def _vs_it(comparisons: pd.DataFrame | None, run, col: Column, it_runs: frozenset[str]) -> dict:
    """The comparisons.csv row of this run's arm against the IT arm in this column (joined on run ids:
    the run among ``runs_b``, every baseline run among ``it_runs``)."""
    empty = dict.fromkeys(VS_IT_COLUMNS)
    if comparisons is None or comparisons.empty or run is None:
        return empty
    baseline_is_it = comparisons["runs_a"].map(lambda ids: bool(str(ids).split()) and set(str(ids).split()) <= it_runs)
    hits = comparisons[baseline_is_it & (comparisons["benchmark"] == col.benchmark)
                       & (comparisons["metric"] == col.metric)
                       & comparisons["runs_b"].map(lambda ids: run.run in str(ids).split())]
    if hits.empty:
        return empty
    hit = hits.iloc[0]
    return {"vs_it": hit["delta"], "vs_it_low": hit["ci_low"], "vs_it_high": hit["ci_high"],
            "vs_it_p_holm": hit["p_holm"], "vs_it_significant": bool(hit["significant"])}


def _cell(table: str, index: int, col: Column, run, shown: Mapping, value: float, paper_value: float,
          not_run: str, note: str = "") -> dict:
    if run is None:
        status = not_run
    elif not present(value):
        status = MISSING
    elif not present(paper_value):
        status = NO_PAPER_VALUE
    else:
        status = OK
    judged = run is not None and col.benchmark in JUDGED_BENCHMARKS and getattr(run, "judge_label", "")
    return {
        "table": table, "row": index,
        "model": shown.get("model", "") if run is None else (run.model_paper_name or run.model),
        "dataset": shown.get("dataset", "") if run is None else run.dataset_label,
        "method": shown.get("method", "") if run is None else run.method_paper_name,
        "epochs": "" if run is None or not present(run.epochs) else _number(run.epochs),
        "run": "" if run is None else run.run,
        "paper_model": shown.get("model", ""), "paper_dataset": shown.get("dataset", ""),
        "paper_method": shown.get("method", ""),
        "benchmark": col.benchmark, "metric": col.metric,
        "ours": value if present(value) else None,
        "paper": paper_value if present(paper_value) else None,
        "diff": round(value - paper_value, 10) if status == OK else None,
        "status": status, "judge": judged or "", "note": (note or "") if run is not None else "",
        "_label": col.label, "_decimals": col.decimals,
    }


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# ----------------------------------------------------------------------------------------------
# Table 5
# ----------------------------------------------------------------------------------------------

def load_table5_stats(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Table 5 statistics not found")
    frame = pd.read_csv(path, keep_default_na=False, dtype={"dataset": str})
    missing = [c for c in TABLE5_STATS_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: Table 5 statistics lack column(s) {', '.join(missing)}")
    for column in TABLE5_STATS_COLUMNS[1:]:
        frame[column] = pd.to_numeric(frame[column].replace("", math.nan), errors="raise")
    # instruction/output as the paper prints it: ratio of the two mean lengths
    frame["ratio_instruction_output"] = (frame["avg_instruction"] / frame["avg_output"]).round(4)
    return frame


def build_table5(stats: pd.DataFrame, paper: pd.DataFrame, runs: pd.DataFrame | None = None,
                 dataset_names: Mapping[str, str] | None = None) -> list[dict]:
    """Long rows of Table 5. Our dataset key -> paper name: ``dataset_names``, else a ``paper_name``
    column of the stats, else runs.csv's ``dataset_paper_name``, else the key itself (``tulu_v2_10pct``
    matches "Tulu V2 (10%)" under :func:`name_key`). ``compare_as`` is not used: a slice's statistics
    are not the full dataset's."""
    spec = TABLE5
    paper5 = paper[paper["table"] == spec.paper_table]
    paper_names = list(dict.fromkeys(paper5["train_dataset"]))
    by_key = {name_key(n): n for n in paper_names}
    cells = {(name_key(d), m): v for d, m, v in paper5[["train_dataset", "metric", "value"]].itertuples(index=False)}
    from_runs = {} if runs is None else dict(zip(runs["dataset"], runs["dataset_paper_name"], strict=True))

    def paper_name(row) -> str | None:
        for candidate in ((dataset_names or {}).get(row.dataset), getattr(row, "paper_name", None),
                          from_runs.get(row.dataset), row.dataset):
            if candidate and name_key(candidate) in by_key:
                return by_key[name_key(candidate)]
        return None

    matched = {}
    for row in stats.itertuples():
        matched.setdefault(paper_name(row), []).append(row)
    entries = [(name, r) for name in paper_names for r in matched.get(name, [None])]
    entries += [(None, r) for r in matched.get(None, [])]
    rows = []
    for index, (name, row) in enumerate(entries):
        shown = {"dataset": name or ""}
        run = None if row is None else _StatsRow(row.dataset)
        for col in spec.columns:
            paper_value = cells.get((name_key(name), col.paper_benchmark), math.nan) if name else math.nan
            value = math.nan if row is None else float(getattr(row, col.benchmark))
            cell = _cell(spec.key, index, col, run, shown, value, paper_value, NOT_BUILT)
            cell["dataset"] = name if row is None else row.dataset
            cell["benchmark"] = col.paper_benchmark
            cell["metric"] = col.benchmark
            rows.append(cell)
    return rows


@dataclass(frozen=True)
class _StatsRow:
    """What :func:`_cell` reads from a run, for a Table 5 dataset row."""
    dataset: str
    run: str = ""
    model: str = ""
    model_paper_name: str = ""
    method_paper_name: str = ""
    epochs: float = math.nan
    judge_label: str = ""

    @property
    def dataset_label(self) -> str:
        return self.dataset


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

def _fmt(value, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def format_cell(cell: Mapping) -> str:
    """'ours / paper (Δ diff)' as the Markdown shows it."""
    decimals = cell["_decimals"]
    paper = NO_PAPER if cell["paper"] is None else _fmt(cell["paper"], decimals)
    if cell["status"] in (NOT_RUN, NOT_BUILT):
        return f"{cell['status']} / {paper}"
    ours = MISSING if cell["ours"] is None else _fmt(cell["ours"], decimals)
    if cell["judge"] and cell["ours"] is not None:
        ours += "†"
    if is_partial(cell.get("note")) and cell["ours"] is not None:
        ours += "‡"
    text = f"{ours} / {paper}" if cell["diff"] is None else f"{ours} / {paper} (Δ {cell['diff']:+.{decimals}f})"
    if present(cell.get("vs_it")):
        text += (f"; vs IT {cell['vs_it']:+.{decimals}f} [{cell['vs_it_low']:+.{decimals}f}, "
                 f"{cell['vs_it_high']:+.{decimals}f}]" + ("*" if cell["vs_it_significant"] else ""))
    return text


def to_markdown(rows: list[dict], spec: TableSpec, label: str | None = None, epochs: float | None = None) -> str:
    """A readable Markdown table: one line per model row, 'ours / paper (Δ)' per cell."""
    lines = []
    if label:
        lines += [f"> **{label}**", ""]
    lines += [f"### {spec.title}", "",
              f"Reproduces paper {spec.paper_table}. Each cell: ours / paper (Δ = ours − paper). "
              f"`{NOT_RUN if spec.key != 'table5' else NOT_BUILT}`: this configuration has no such "
              f"{'run' if spec.key != 'table5' else 'dataset'}; `{NO_PAPER}`: the paper has no such number; "
              f"`{MISSING}`: run, but this score is missing."]
    if epochs is not None and spec.key != "table5":
        lines[-1] += f" Trained rows: runs of {_number(epochs)} epochs."
    lines.append("")
    labels = list(dict.fromkeys(r["_label"] for r in rows)) or [c.label for c in spec.columns]
    if spec.key == "table5":
        head = ["Dataset (ours)", "Paper dataset"]
    else:
        head = ["Model", "Training data", "Method", "Run"]
    lines.append("| " + " | ".join(head + labels) + " |")
    lines.append("|" + "---|" * (len(head) + len(labels)))
    judges, partial = set(), False
    for _, group in _group_rows(rows):
        first = group[0]
        if spec.key == "table5":
            lead = [first["dataset"] if first["status"] != NOT_BUILT else "", first["paper_dataset"] or NO_PAPER]
        else:
            dataset = first["dataset"]
            if first["run"] and first["paper_dataset"] and name_key(first["paper_dataset"]) != name_key(dataset):
                dataset += f" (vs paper {first['paper_dataset']})"
            lead = [first["model"], dataset, first["method"], f"`{first['run']}`" if first["run"] else ""]
        judges.update(c["judge"] for c in group if c["judge"])
        partial = partial or any(is_partial(c.get("note")) and c["ours"] is not None for c in group)
        lines.append("| " + " | ".join(_escape(x) for x in lead + [format_cell(c) for c in group]) + " |")
    if judges:
        lines += ["", f"† judged by {', '.join(sorted(judges))}, not by the paper's GPT-4 judges."]
    if partial:
        lines += ["", PARTIAL_FOOTNOTE]
    if any(present(c.get("vs_it")) for c in rows):
        lines += ["", VS_IT_FOOTNOTE]
    if not rows:
        lines += ["", "No rows: neither the paper nor this configuration has any."]
    return "\n".join(lines) + "\n"


def _group_rows(rows: list[dict]):
    groups: dict[int, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["row"], []).append(row)
    return sorted(groups.items())


def _escape(text) -> str:
    return str(text).replace("|", "\\|")


def write_table(rows: list[dict], spec: TableSpec, outdir: str | Path, label: str | None = None,
                epochs: float | None = None) -> tuple[Path, Path]:
    csv_name, md_name = filenames(spec.key)
    outdir = Path(outdir)
    frame = pd.DataFrame([{k: r.get(k) for k in LONG_COLUMNS} for r in rows], columns=list(LONG_COLUMNS))
    with atomic_open(outdir / csv_name) as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")
    with atomic_open(outdir / md_name) as handle:
        handle.write(to_markdown(rows, spec, label, epochs))
    return outdir / csv_name, outdir / md_name


def make_tables(keys: Iterable[str], eval_long: pd.DataFrame, runs: pd.DataFrame, paper: pd.DataFrame,
                stats: pd.DataFrame | None, outdir: str | Path, label: str | None = None,
                epochs: float | None = None, dataset_names: Mapping[str, str] | None = None,
                comparisons: pd.DataFrame | None = None) -> list[Path]:
    """Build and write the named tables; return the files written."""
    written = []
    epochs = main_epochs(runs, epochs)
    for key in keys:
        if key == "table5":
            if stats is None:
                raise ValueError("table5 needs the dataset statistics (--table5)")
            written += write_table(build_table5(stats, paper, runs, dataset_names), TABLE5, outdir, label)
        elif key in TABLES:
            spec = TABLES[key]
            rows = build_table(spec, eval_long, runs, paper, epochs, comparisons)
            written += write_table(rows, spec, outdir, label, epochs)
        else:
            raise ValueError(f"unknown table {key!r}; known: {', '.join(ALL_TABLES)}")
    return written
