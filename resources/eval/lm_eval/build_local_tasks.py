"""Build the offline lm-eval tasks in this folder from the installed harness YAMLs and the shipped eval data.

    python resources/eval/lm_eval/build_local_tasks.py --shared-data ../shared/data

Run once (its outputs are committed); rerun only to change the slices or after an lm-eval upgrade.
Writes, next to this file:

- ``tasks/<benchmark>/*.yaml``: each harness task/group YAML of lm-eval 0.4.13 with its ``include``s
  flattened and only these keys changed: the name (``imrepro_`` prefix, also for tags and group members),
  ``dataset_path: json`` with ``dataset_kwargs.data_files`` (paths relative to this folder), no
  ``dataset_name``, and split keys set to ``null`` where the split is not shipped.  Prompts, targets,
  choices, few-shot settings, filters and metrics are the harness' own.  ``!function`` modules are copied
  unchanged (plus an attribution header).
- ``data/<benchmark>/*.jsonl``: seeded samples of the shipped files, converted to the schema of the
  Hugging Face dataset the harness task reads (so the same templates render them).
- ``data/MANIFEST.json`` (rows taken, sha256 of every source and output) and ``README.md``.

Every source file is checked against the sha256 listed in ``shared/data/SOURCES.md`` first.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import re
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
LM_EVAL_VERSION = "0.4.13"
PREFIX = "imrepro_"
SEED = 0
N_EVAL = 40  # docs per task (bbh: per subtask; mmlu: per subject, see N_MMLU)
N_BBH = 20
N_MMLU = 20  # test docs per subject
MMLU_PER_CATEGORY = 2  # subjects per category (stem, other, social sciences, humanities)
N_POOL = 20  # few-shot pool where the harness draws shots from a split we do not have


# ----------------------------------------------------------------------------------------------
# Raw YAML with !function kept as a reference (lm-eval resolves it to a callable when loading)
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FunctionRef:
    spec: str  # e.g. "utils.process_results_mc2", relative to the YAML's folder
    folder: Path


def _raw_loader(folder: Path):
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: FunctionRef(loader.construct_scalar(node), folder))
    return Loader


def load_flat(path: Path) -> dict:
    """A harness YAML with its includes merged the way lm-eval's ``load_yaml`` merges them."""
    with path.open("rb") as handle:
        cfg = yaml.load(handle, Loader=_raw_loader(path.parent))  # noqa: S506 - SafeLoader subclass
    includes = cfg.pop("include", None)
    if includes is None:
        return cfg
    merged = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        inc_cfg = load_flat(path.parent / inc)
        inc_cfg.pop("task_list", None)
        merged.update(inc_cfg)
    merged.update(cfg)
    return merged


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(FunctionRef, lambda d, ref: d.represent_scalar("!function", ref.spec))
_Dumper.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------

@dataclass
class Source:
    rel: str  # path under shared/data
    repo: str
    commit: str
    upstream_path: str
    sha256: str


def read_sources_md(shared: Path) -> dict[str, Source]:
    text = (shared / "SOURCES.md").read_text(encoding="utf-8")
    commits = dict(re.findall(r"^\| (\S+/\S+) \| `([0-9a-f]{40})` \|", text, flags=re.M))
    out = {}
    for rel, repo, upstream, sha in re.findall(
            r"^\| `(eval/[^`]+)` \| (\S+) @ `[0-9a-f]+` \| `([^`]+)` \| \d+ \| `([0-9a-f]{64})` \|", text, flags=re.M):
        out[rel] = Source(rel, repo, commits[repo], upstream, sha)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Output:
    """One data file written here and where its rows come from."""
    rel: str  # under data/
    sources: list[str]
    rows: list[int]  # 0-based row indices in the (first) source, in source order
    n_source: int
    note: str = ""
    n_rows: int = field(init=False, default=0)


class Builder:
    def __init__(self, shared: Path, out: Path):
        self.shared, self.out = shared, out
        self.sources = read_sources_md(shared)
        self.outputs: list[Output] = []
        self.data_files: dict[str, dict[str, str]] = {}  # harness task name -> split -> path under out/
        self.verified: set[str] = set()

    def src(self, rel: str) -> Path:
        path = self.shared / rel
        if rel not in self.verified:
            expected = self.sources[rel].sha256
            if sha256(path) != expected:
                raise ValueError(f"{path}: sha256 differs from shared/data/SOURCES.md ({expected})")
            self.verified.add(rel)
        return path

    def write(self, rel: str, docs: list[dict], sources: list[str], rows: list[int], n_source: int,
              note: str = "") -> str:
        path = self.out / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for doc in docs:
                handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
        output = Output(rel, sources, rows, n_source, note)
        output.n_rows = len(docs)
        self.outputs.append(output)
        return f"data/{rel}"


def sample(n: int, k: int, seed: int = SEED, exclude: frozenset[int] = frozenset()) -> list[int]:
    pool = [i for i in range(n) if i not in exclude]
    return sorted(random.Random(seed).sample(pool, min(k, len(pool))))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------
# Converters: shipped format -> the harness dataset's schema
# ----------------------------------------------------------------------------------------------

def mmlu_subjects(b: Builder, yamls: list[Path]) -> list[Path]:
    """The MMLU subject YAMLs we ship: per category, the subjects with the shortest 5-shot prompts.

    Every subject adds its docs to each run (``--limit`` is per subtask), and on a CPU the 5-shot prompt
    length sets the cost, so the demo slice takes the cheapest subjects; the selection is by length only.
    """
    by_category: dict[str, list[tuple[float, Path]]] = {}
    for path in yamls:
        cfg = load_flat(path)
        rows = {split: _mmlu_rows(b, cfg["dataset_name"], split) for split in ("dev", "test")}
        size = sum(map(_chars, rows["dev"])) + sum(map(_chars, rows["test"])) / len(rows["test"])
        by_category.setdefault(cfg["tag"], []).append((size, path))
    return sorted(path for group in by_category.values() for _, path in sorted(group)[:MMLU_PER_CATEGORY])


def _chars(row: list[str]) -> int:
    return sum(map(len, row))


def _mmlu_rows(b: Builder, subject: str, split: str) -> list[list[str]]:
    rel = f"eval/mmlu/{split}/{subject}_{split}.csv"
    with b.src(rel).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    if any(len(r) != 6 or r[5] not in "ABCD" for r in rows):
        raise ValueError(f"{rel}: expected question, A, B, C, D, answer letter")
    return rows


def build_mmlu(b: Builder, subjects: list[str]) -> None:
    """cais/mmlu: {question, subject, choices[4], answer 0-3}; test split + the 5-row dev split (first_n shots)."""
    for subject in subjects:
        splits = {}
        for split, k in (("test", N_MMLU), ("dev", None)):
            rows = _mmlu_rows(b, subject, split)
            rel = f"eval/mmlu/{split}/{subject}_{split}.csv"
            idx = list(range(len(rows))) if k is None else sample(len(rows), k)
            docs = [{"question": rows[i][0], "subject": subject, "choices": rows[i][1:5],
                     "answer": "ABCD".index(rows[i][5])} for i in idx]
            splits[split] = b.write(f"mmlu/{split}/{subject}.jsonl", docs, [rel], idx, len(rows))
        b.data_files[f"mmlu_{subject}"] = splits


def build_piqa(b: Builder) -> None:
    """baber/piqa: {goal, sol1, sol2, label}; eval = validation; the harness draws shots from train (not shipped)."""
    rel, rel_labels = "eval/piqa/valid.jsonl", "eval/piqa/valid-labels.lst"
    docs, labels = read_jsonl(b.src(rel)), read_lines(b.src(rel_labels))
    full = [{"goal": d["goal"], "sol1": d["sol1"], "sol2": d["sol2"], "label": int(y)}
            for d, y in zip(docs, labels, strict=True)]
    idx = sample(len(full), N_EVAL)
    pool = sample(len(full), N_POOL, seed=SEED + 1, exclude=frozenset(idx))
    # Then every other validation row in a seeded random order, so that any --limit prefix is a random
    # sample: the study scores hundreds (paired intervals), the demo and tests the first few as before.
    rest = [i for i in range(len(full)) if i not in set(idx) | set(pool)]
    random.Random(SEED + 2).shuffle(rest)
    idx = idx + rest
    b.data_files["piqa"] = {
        "validation": b.write("piqa/validation.jsonl", [full[i] for i in idx], [rel, rel_labels], idx, len(full),
                              note=f"the first {N_EVAL} rows: a seeded sample (sorted); then the "
                                   f"{len(rest)} rows outside it and the few-shot pool, in a seeded random order"),
        "train": b.write("piqa/train_fewshot_pool.jsonl", [full[i] for i in pool], [rel, rel_labels], pool, len(full),
                         note="few-shot pool: validation rows outside the eval slice (PIQA train is not shipped)"),
    }


def _obqa_rows(b: Builder, rel: str) -> list[dict]:
    """allenai/openbookqa main: {id, question_stem, choices{text, label}, answerKey}."""
    with b.src(rel).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    docs = []
    for row in rows:
        parts = re.split(r"\(([A-D])\) ", row["Choices"])
        labels, texts = parts[1::2], [t.strip() for t in parts[2::2]]
        if parts[0] or labels != ["A", "B", "C", "D"]:
            raise ValueError(f"{rel}: cannot split choices of {row['ID']}: {row['Choices']!r}")
        if row["Complete Question"] != f"{row['Question Stem']} {row['Choices']}":
            raise ValueError(f"{rel}: {row['ID']} 'Complete Question' is not stem + choices")
        docs.append({"id": row["ID"], "question_stem": row["Question Stem"],
                     "choices": {"text": texts, "label": labels}, "answerKey": row["Answer Key"]})
    return docs


def build_openbookqa(b: Builder) -> None:
    test, dev = _obqa_rows(b, "eval/openbookqa/test.tsv"), _obqa_rows(b, "eval/openbookqa/dev.tsv")
    idx, pool = sample(len(test), N_EVAL), sample(len(dev), N_POOL)
    b.data_files["openbookqa"] = {
        "test": b.write("openbookqa/test.jsonl", [test[i] for i in idx], ["eval/openbookqa/test.tsv"], idx, len(test)),
        "validation": b.write("openbookqa/validation.jsonl", [dev[i] for i in pool], ["eval/openbookqa/dev.tsv"],
                              pool, len(dev), note="validation rows; few-shot pool if shots are asked for"),
    }


def build_winogrande(b: Builder) -> None:
    """allenai/winogrande: {sentence, option1, option2, answer "1"/"2"}; eval = validation (dev), shots from train."""
    splits = {}
    for name, split, k in (("dev", "validation", N_EVAL), ("train_xs", "train", N_POOL)):
        rel, rel_labels = f"eval/winogrande/{name}.jsonl", f"eval/winogrande/{name}-labels.lst"
        docs, labels = read_jsonl(b.src(rel)), read_lines(b.src(rel_labels))
        if [d["answer"] for d in docs] != labels:
            raise ValueError(f"{rel}: answers disagree with {rel_labels}")
        idx = sample(len(docs), k)
        rows = [{key: docs[i][key] for key in ("sentence", "option1", "option2", "answer")} for i in idx]
        note = "" if name == "dev" else "few-shot pool from train_xs (the harness samples winogrande_xl train)"
        splits[split] = b.write(f"winogrande/{split}.jsonl", rows, [rel, rel_labels], idx, len(docs), note)
    b.data_files["winogrande"] = splits


def build_lambada(b: Builder) -> None:
    """EleutherAI/lambada_openai default: {text}; the OpenAI detokenised test file (lambada_standard not shipped)."""
    rel = "eval/lambada/lambada_test.jsonl"
    docs = read_jsonl(b.src(rel))
    idx = sample(len(docs), N_EVAL)
    b.data_files["lambada_openai"] = {
        "test": b.write("lambada/lambada_openai_test.jsonl", [{"text": docs[i]["text"]} for i in idx], [rel], idx,
                        len(docs))}


def build_gsm8k(b: Builder) -> None:
    """openai/gsm8k main: {question, answer}; the 8 CoT exemplars are inline in the harness YAML."""
    rel = "eval/gsm8k/test.jsonl"
    docs = read_jsonl(b.src(rel))
    idx = sample(len(docs), N_EVAL)
    b.data_files["gsm8k_cot"] = {
        "test": b.write("gsm8k/test.jsonl", [{"question": docs[i]["question"], "answer": docs[i]["answer"]}
                                              for i in idx], [rel], idx, len(docs))}


def build_bbh(b: Builder, subtasks: list[str]) -> None:
    """SaylorTwift/bbh <subtask>: {input, target}; the 3 CoT exemplars are inline in the harness YAMLs."""
    for name in subtasks:
        rel = f"eval/bbh/bbh/{name}.json"
        examples = json.loads(b.src(rel).read_text(encoding="utf-8"))["examples"]
        idx = sample(len(examples), N_BBH)
        b.data_files[f"bbh_cot_fewshot_{name}"] = {
            "test": b.write(f"bbh/{name}.jsonl", [{"input": examples[i]["input"], "target": examples[i]["target"]}
                                                  for i in idx], [rel], idx, len(examples))}


def build_truthfulqa(b: Builder) -> None:
    """truthfulqa/truthful_qa multiple_choice: {question, mc1_targets{choices, labels}, mc2_targets{...}}."""
    rel = "eval/truthfulqa/mc_task.json"
    items = json.loads(b.src(rel).read_text(encoding="utf-8"))
    idx = sample(len(items), N_EVAL)
    docs = [{"question": items[i]["question"],
             **{key: {"choices": list(items[i][key]), "labels": list(items[i][key].values())}
                for key in ("mc1_targets", "mc2_targets")}} for i in idx]
    b.data_files["truthfulqa_mc2"] = {"validation": b.write("truthfulqa/validation.jsonl", docs, [rel], idx,
                                                            len(items))}


def build_ethics(b: Builder) -> None:
    """EleutherAI/hendrycks_ethics, converted as its loading script does (group ids from the row index)."""
    subsets = {  # harness task -> (shipped csv, row -> doc)
        "ethics_cm": ("commonsense/cm_test.csv", lambda k, r: {
            "label": int(r["label"]), "input": r["input"], "is_short": r["is_short"] == "True",
            "edited": r["edited"] == "True"}),
        "ethics_deontology": ("deontology/deontology_test.csv", lambda k, r: {
            "group_id": k // 4, "label": int(r["label"]), "scenario": r["scenario"], "excuse": r["excuse"]}),
        "ethics_justice": ("justice/justice_test.csv", lambda k, r: {
            "group_id": k // 4, "label": int(r["label"]), "scenario": r["scenario"]}),
        "ethics_utilitarianism": ("utilitarianism/util_test.csv", lambda k, r: {
            "activity": r["activity"], "baseline": r["baseline"], "rating": ""}),
        "ethics_virtue": ("virtue/virtue_test.csv", lambda k, r: {
            "group_id": k // 5, "label": int(r["label"]), **dict(zip(("scenario", "trait"),
                                                                      r["scenario"].split(" [SEP] "), strict=True))}),
    }
    for task, (name, convert) in subsets.items():
        rel = f"eval/hendrycks_ethics/{name}"
        with b.src(rel).open(encoding="utf-8", newline="") as handle:
            fieldnames = ["activity", "baseline"] if task == "ethics_utilitarianism" else None
            rows = list(csv.DictReader(handle, fieldnames=fieldnames))
        idx = sample(len(rows), N_EVAL)
        b.data_files[task] = {"test": b.write(f"hendrycks_ethics/{task.removeprefix('ethics_')}_test.jsonl",
                                              [convert(i, rows[i]) for i in idx], [rel], idx, len(rows))}


# ----------------------------------------------------------------------------------------------
# YAMLs
# ----------------------------------------------------------------------------------------------

SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


def _rename(value):
    if isinstance(value, list):
        return [_rename(v) for v in value]
    return PREFIX + value


def localise(cfg: dict, data_files: dict[str, dict[str, str]]) -> dict:
    """The harness config with our name, tags and data; every other key unchanged (and in its order)."""
    if "group" in cfg:
        return {**cfg, "group": _rename(cfg["group"]), "task": _rename(cfg["task"])}
    files = data_files[cfg["task"]]
    out = {}
    for key, value in cfg.items():
        if key in ("task", "tag"):
            out[key] = _rename(value)
        elif key == "dataset_path":
            out["include"] = "../_imrepro_data.yaml"  # reads data_files relative to this folder, from any cwd
            out[key] = "json"
            out["dataset_kwargs"] = {"data_files": files}
        elif key in SPLIT_KEYS:
            out[key] = value if value is None or value in files else None
        elif key not in ("dataset_name", "dataset_kwargs"):
            out[key] = value
    return out


def write_yaml(b: Builder, harness_yaml: Path, bench: str) -> None:
    cfg = load_flat(harness_yaml)
    local = localise(cfg, b.data_files)
    name = local.get("group") or local["task"]
    folder = b.out / "tasks" / bench
    folder.mkdir(parents=True, exist_ok=True)
    rel = harness_yaml.relative_to(_harness_root())
    header = (f"# Written by build_local_tasks.py (next to tasks/) from lm-evaluation-harness {LM_EVAL_VERSION}:\n"
              f"# lm_eval/tasks/{rel} (includes merged; MIT License, see ../../LICENSES/lm-evaluation-harness.txt).\n"
              "# Same prompts, targets, choices, filters and metrics as the harness task; only the name, tags\n"
              "# and data differ. data_files are relative to resources/eval/lm_eval (../_imrepro_data.yaml reads\n"
              "# them from there, whatever the current folder).\n")
    body = yaml.dump(local, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10**6)
    (folder / f"{'_' if 'group' in local else ''}{name}.yaml").write_text(header + body, encoding="utf-8")
    for ref in _function_refs(cfg):
        _copy_module(ref, folder)


def _function_refs(value):
    if isinstance(value, FunctionRef):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _function_refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _function_refs(v)


def _copy_module(ref: FunctionRef, folder: Path) -> None:
    module = ref.spec.rpartition(".")[0]
    source = ref.folder / f"{module.replace('.', '/')}.py"
    target = folder / source.name
    if target.exists():
        return
    rel = source.relative_to(_harness_root())
    header = (f"# Copied unchanged from lm-evaluation-harness {LM_EVAL_VERSION}, lm_eval/tasks/{rel}\n"
              "# Copyright (c) 2020 EleutherAI, MIT License (see ../../LICENSES/lm-evaluation-harness.txt).\n")
    target.write_text(header + source.read_text(encoding="utf-8"), encoding="utf-8")


def _harness_root() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


# ----------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding SOURCES.md and eval/ (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: next to this script)")
    args = parser.parse_args()
    if metadata.version("lm_eval") != LM_EVAL_VERSION:
        raise SystemExit(f"lm_eval {metadata.version('lm_eval')} installed; these tasks mirror {LM_EVAL_VERSION}")
    shutil.rmtree(args.out / "data", ignore_errors=True)
    for folder in (args.out / "tasks").glob("*/"):  # tasks/_imrepro_data.{py,yaml} are kept: not generated
        shutil.rmtree(folder)
    b = Builder(args.shared_data.resolve(), args.out)
    root = _harness_root()

    mmlu_yamls = mmlu_subjects(b, sorted((root / "mmlu" / "default").glob("mmlu_*.yaml")))
    build_mmlu(b, [load_flat(p)["dataset_name"] for p in mmlu_yamls])
    bbh_yamls = sorted(p for p in (root / "bbh" / "cot_fewshot").glob("*.yaml") if not p.name.startswith("_"))
    build_bbh(b, [load_flat(p)["dataset_name"] for p in bbh_yamls])
    for build in (build_piqa, build_openbookqa, build_winogrande, build_lambada, build_gsm8k, build_truthfulqa,
                  build_ethics):
        build(b)

    plan = {
        "mmlu": [root / "mmlu/default" / f for f in ("_mmlu.yaml", "_mmlu_stem.yaml", "_mmlu_other.yaml",
                                                     "_mmlu_social_sciences.yaml", "_mmlu_humanities.yaml")]
        + mmlu_yamls,
        "piqa": [root / "piqa/piqa.yaml"],
        "openbookqa": [root / "openbookqa/openbookqa.yaml"],
        "winogrande": [root / "winogrande/default.yaml"],
        "lambada": [root / "lambada/lambada_openai.yaml"],
        "gsm8k": [root / "gsm8k/gsm8k-cot.yaml"],
        "bbh": [root / "bbh/cot_fewshot/_bbh_cot_fewshot.yaml", *bbh_yamls],
        "truthfulqa": [root / "truthfulqa/truthfulqa_mc2.yaml"],
        "hendrycks_ethics": [root / "hendrycks_ethics" / f"{s}.yaml"
                             for s in ("commonsense", "deontology", "justice", "utilitarianism", "virtue")],
    }
    for bench, yamls in plan.items():
        for path in yamls:
            write_yaml(b, path, bench)
    write_manifest(b)
    write_readme(b)
    copy_licenses(b.out)
    print(f"wrote {len(b.outputs)} data files and {sum(len(v) for v in plan.values())} task YAMLs under {args.out}")


def write_manifest(b: Builder) -> None:
    """data/MANIFEST.json: one line per output file (rows taken, sha256 of it and of its sources)."""
    lines = []
    for out in b.outputs:
        entry = {"rows": out.n_rows, "of": out.n_source, "row_indices": out.rows, "note": out.note,
                 "sha256": sha256(b.out / "data" / out.rel),
                 "sources": [{"file": f"shared/data/{s}", "repo": b.sources[s].repo, "commit": b.sources[s].commit,
                              "path": b.sources[s].upstream_path, "sha256": b.sources[s].sha256} for s in out.sources]}
        lines.append(f"  {json.dumps(f'data/{out.rel}')}: {json.dumps(entry, ensure_ascii=False)}")
    text = f'{{"lm_eval": "{LM_EVAL_VERSION}", "seed": {SEED}, "files": {{\n' + ",\n".join(lines) + "\n}}\n"
    json.loads(text)
    (b.out / "data" / "MANIFEST.json").write_text(text, encoding="utf-8")


# (benchmark folder under data/) -> license of the data, as given by the upstream / shared/data/SOURCES.md
DATA_LICENSES = {
    "mmlu": "MIT (hendrycks/test; LICENSES/MIT-MMLU.txt); the TAGCOS copy has no license file",
    "piqa": "unknown: no license file upstream; the HF card ybisk/piqa says 'unknown'",
    "openbookqa": "Apache-2.0 (allenai OpenBookQA; OpenCompass Apache-2.0; LICENSES/Apache-2.0.txt)",
    "winogrande": "CC-BY (allenai/winogrande README); no license file in the copy's repo",
    "lambada": "CC BY 4.0 (LAMBADA, Paperno et al. 2016, https://creativecommons.org/licenses/by/4.0/)",
    "gsm8k": "MIT (openai/grade-school-math; LICENSES/MIT.txt)",
    "bbh": "MIT (suzgunmirac/BIG-Bench-Hard; LICENSES/MIT-BIG-Bench-Hard.txt)",
    "truthfulqa": "Apache-2.0 (sylinrl/TruthfulQA; LICENSES/Apache-2.0.txt)",
    "hendrycks_ethics": "MIT (hendrycks/ethics; oughtinc/ice MIT; LICENSES/MIT.txt)",
}


# README rows: (key, local task (harness task), docs shipped, differences from the harness task)
TASKS_TABLE = (
    ("mmlu", "`imrepro_mmlu` group (`mmlu`, same 4 category subgroups)",
     "8 of 57 subjects x 20 test rows + their 5 dev rows (the 5 shots, `first_n` as in the harness)",
     "subjects: per category the 2 with the shortest 5-shot prompts ({mmlu}), to keep CPU runs short"),
    ("piqa", "`imrepro_piqa` (`piqa`)", "1,818 validation (a 40-row sample first; `--limit N`: a random N)",
     "shots (10 in the paper) come from a 20-row pool of other validation rows: PIQA train is not shipped"),
    ("openbookqa", "`imrepro_openbookqa` (`openbookqa`)", "40 test + 20 validation",
     "train not shipped: with shots > 0 the harness' own rule takes them from validation (paper: 0 shots)"),
    ("winogrande", "`imrepro_winogrande` (`winogrande`)", "40 validation (dev)",
     "shots (5) from a 20-row sample of `train_xs` instead of `winogrande_xl` train"),
    ("lambada", "tag `imrepro_lambada` = `imrepro_lambada_openai` (`lambada` = `lambada_openai` + `lambada_standard`)",
     "40 test", "**only `lambada_openai` is shipped**: the local score is lambada_openai's acc alone"),
    ("gsm8k", "`imrepro_gsm8k_cot` (`gsm8k_cot`)", "40 test", "none (the 8 CoT exemplars are inline in the YAML)"),
    ("bbh", "`imrepro_bbh_cot_fewshot` group (`bbh_cot_fewshot`, 27 subtasks)", "27 x 20",
     "none (the 3 CoT exemplars per subtask are inline)"),
    ("truthfulqa_mc2", "`imrepro_truthfulqa_mc2` (`truthfulqa_mc2`)", "40 validation (the 2021 v1 `mc_task.json`)",
     "none (the 6-QA preamble is in the prompt)"),
    ("hendrycks_ethics", "tag `imrepro_hendrycks_ethics` = 5 `imrepro_ethics_*` tasks (tag `hendrycks_ethics`)",
     "5 x 40 test", "train not shipped: with shots > 0 the harness' rule falls back to test docs (paper: 0 shots)"),
)


def write_readme(b: Builder) -> None:
    rows = []
    for out in b.outputs:
        bench = out.rel.split("/")[0]
        src = "<br>".join(f"{b.sources[s].repo}@`{b.sources[s].commit[:8]}` `{b.sources[s].upstream_path}` "
                          f"(sha256 `{b.sources[s].sha256}`)" for s in out.sources)
        note = f" {out.note}" if out.note else ""
        rows.append(f"| `data/{out.rel}` | {out.n_rows} of {out.n_source}{note} | {src} | {DATA_LICENSES[bench]} |")
    mmlu = ", ".join(sorted(o.rel.split("/")[-1].removesuffix(".jsonl") for o in b.outputs
                            if o.rel.startswith("mmlu/test/")))
    tasks_table = "\n".join("| " + " | ".join(row) + " |" for row in TASKS_TABLE).replace("{mmlu}", mmlu)
    head = README_HEAD.format(version=LM_EVAL_VERSION, seed=SEED, pool_seed=SEED + 1, tasks_table=tasks_table)
    text = head + "\n".join(rows) + "\n"
    (b.out / "README.md").write_text(text, encoding="utf-8")


def copy_licenses(out: Path) -> None:
    """The license texts the copied code and data ask to travel with them."""
    folder = out / "LICENSES"
    folder.mkdir(exist_ok=True)
    dist = metadata.distribution("lm_eval")
    harness = next(f for f in dist.files if f.name.startswith("LICENSE"))
    (folder / "lm-evaluation-harness.txt").write_text(Path(dist.locate_file(harness)).read_text(), encoding="utf-8")
    (folder / "Apache-2.0.txt").write_text(Path("/usr/share/common-licenses/Apache-2.0").read_text(), encoding="utf-8")
    for name, holder in (("MIT-MMLU.txt", "2020 Dan Hendrycks"), ("MIT-BIG-Bench-Hard.txt", "2022 suzgunmirac"),
                         ("MIT.txt", "<year> <copyright holders named in the README table>")):
        (folder / name).write_text(MIT.format(holder=holder), encoding="utf-8")


MIT = """MIT License

Copyright (c) {holder}

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

README_HEAD = """# Offline lm-evaluation-harness tasks

Small local stand-ins for the paper's lm-eval tasks, for the demo and the tests (no network, no
Hugging Face hub). Everything here except `build_local_tasks.py` itself is written by

    python resources/eval/lm_eval/build_local_tasks.py --shared-data ../shared/data

from the installed lm-evaluation-harness {version} task YAMLs and the shipped eval files in
`shared/data/eval/` (each checked against the sha256 in `shared/data/SOURCES.md`).

**Same prompts as the harness.** Each `tasks/**/*.yaml` is the harness YAML with its includes merged;
only the name (`imrepro_` prefix, also for tags and group members), the dataset (`dataset_path: json`,
`dataset_kwargs.data_files`, no `dataset_name`) and split keys for splits we do not ship (`null`)
differ. Prompts, targets, choices, few-shot settings, filters, metrics and group aggregation are the
harness' own; `!function` modules (`winogrande/preprocess_winogrande.py`, `truthfulqa/utils.py`,
`hendrycks_ethics/utils.py`) are copied unchanged from the harness (MIT, `LICENSES/lm-evaluation-harness.txt`).
`tests/test_lm_eval_tasks.py` renders every local task next to the harness' own config on the same
docs and checks that prompts, targets, choices, few-shot contexts and metrics are identical.
The data files are converted to the schema of the Hugging Face dataset each harness task reads
(e.g. PIQA `valid.jsonl` + `valid-labels.lst` -> `{{goal, sol1, sol2, label}}`; ETHICS as the
`EleutherAI/hendrycks_ethics` loading script does, with its group ids from the row index).

**Use.** `imrepro.eval.lm_eval_tasks.evaluate_tasks(model_dir, keys, source="local")` or
`workflow_scripts/eval_lm_eval.py --tasks KEY... --source local`. `data_files` are relative to this
folder; every task includes `tasks/_imrepro_data.yaml`, whose loader reads them from here, so lm-eval's
own CLI works from any folder: `lm_eval --model hf --model_args pretrained=/abs/model --include_path
/abs/resources/eval/lm_eval/tasks --tasks imrepro_piqa`.

| key (aggregate.PAPER_TASKS) | local task (harness task) | docs shipped | differences from the harness task |
|---|---|---|---|
{tasks_table}

Not shipped (no local data; `--source local` reports `not_shipped`): hellaswag, lambada_multilingual,
wmt14, wmt16, wsc273, arc, coqa, and toxigen. The harness' `toxigen` task scores the human-annotated
`skg/toxigen-data` `annotated` test split (label = mean AI + human toxicity > 5.5); the shipped ToxiGen
files are the unlabelled generation prompts (`prompts/hate_<group>_1k.txt`, all from the hateful prompt
sets), a different text distribution with no per-statement labels, so they cannot stand in for it.

Slices are seeded samples (`random.Random({seed}).sample`, sorted; the PIQA pool uses seed {pool_seed} and
excludes the eval rows); `data/MANIFEST.json` lists the row indices taken and the sha256 of every
source and output file. Scores on slices this small are noisy and not comparable to full-benchmark
numbers: they exercise the pipeline, they do not measure a model.

## Licenses

Task YAMLs and copied modules: lm-evaluation-harness, MIT, Copyright (c) 2020 EleutherAI
(`LICENSES/lm-evaluation-harness.txt`). Data: per file below; full texts in `LICENSES/`
(MIT-MMLU.txt, MIT-BIG-Bench-Hard.txt with their upstream copyright lines; MIT.txt is the MIT text for
GSM8K (OpenAI) and ETHICS (Dan Hendrycks et al.); Apache-2.0.txt for TruthfulQA and OpenBookQA).

## Files

| file | rows taken | source (repo@commit path, sha256 of the source file) | license |
|---|---|---|---|
"""


if __name__ == "__main__":
    main()
