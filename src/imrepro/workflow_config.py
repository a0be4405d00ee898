"""Checks and derived views of config.yaml that a JSON schema cannot express.

The Snakefile validates types with ``schemas/config.schema.yaml`` first, which also fills in the schema's
defaults (``snakemake.utils.validate(config, schema, set_default=True)``), then calls :func:`prepare`,
which does the same on its own copy (so a config read straight from YAML, as in the tests, gets them too),
expands the analysis-subset families into datasets, checks every
cross-reference (a run group naming an unknown dataset, a dataset naming an unknown source,
converter arguments that the converter does not take, ...) and raises :class:`ConfigError`
naming the offending key before any job runs.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass
from pathlib import Path

from numpy import format_float_positional

from imrepro.core.provenance import REPO
from imrepro.data.converters import CONVERTERS
from imrepro.eval.catalogue import ALL_BENCHMARKS, NEEDS_TRAINING_SET, ordered

SCHEMA = REPO / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"config key '{key}': {problem}")


# Method parameters a run group may sweep (``run_groups.<g>.sweep``), with the labels policies that take
# each (None: every policy). ``learning_rate`` is a training key; the others are method keys.
SWEEPABLE = {"prompt_weight": ("weighted",), "response_weight": ("weighted",), "neftune_alpha": None,
             "kl_lambda": None, "learning_rate": None}


def number_id(number: float) -> str:
    """A number in ids: ``0.5`` -> ``0p5``, ``2e-05`` -> ``0p00002``, ``3.0`` -> ``3`` (no ``.``, ``e`` or ``-``)."""
    text = format_float_positional(float(number), trim="-")
    if "-" in text:
        raise ValueError(f"{number}: negative numbers have no id form")
    return text.replace(".", "p")


@dataclass(frozen=True)
class Run:
    """One training run; several run groups (tables, figures) can share it.

    ``seed`` (None: ``training.seed``) and ``sweep`` (sorted ``(parameter, value)`` pairs overriding the
    method's or the training section's value) are the run group's axes; ``data_seed`` (``seed_draws_data``)
    redraws a dataset drawn at random from a pool with that seed (:func:`drawn_dataset_name`).
    """

    model: str
    dataset: str
    method: str
    epochs: float
    seed: int | None = None
    data_seed: int | None = None
    sweep: tuple[tuple[str, float], ...] = ()

    def __lt__(self, other: Run) -> bool:
        """Sorted by model, dataset, method, epochs, then the axes (no seed before any seed)."""
        def key(run: Run) -> tuple:
            return (run.model, run.dataset, run.method, run.epochs, -1 if run.seed is None else run.seed,
                    -1 if run.data_seed is None else run.data_seed, run.sweep)
        return key(self) < key(other)

    @property
    def run_id(self) -> str:
        """``<model>__<dataset>__<method>__ep<epochs>[__s<seed>[d]][__<parameter><value>...]``; ``d``: the
        seed also drew the data. A run without axes keeps the id it had before the axes existed."""
        parts = [self.model, self.dataset, self.method, f"ep{number_id(self.epochs)}"]
        if self.seed is not None:
            parts.append(f"s{self.seed}" + ("d" if self.data_seed is not None else ""))
        parts += [f"{name}{number_id(value)}" for name, value in self.sweep]
        return "__".join(parts)

    @property
    def train_dataset(self) -> str:
        """The dataset whose record the run trains on: the redrawn copy under ``seed_draws_data``."""
        return self.dataset if self.data_seed is None else drawn_dataset_name(self.dataset, self.data_seed)


# The wildcard of a run id (Snakefile's wildcard_constraints): every form Run.run_id writes.
RUN_ID_PATTERN = (r"[A-Za-z0-9_.-]+__[A-Za-z0-9_]+__[A-Za-z0-9_.-]+__ep[0-9p]+"
                  r"(__s[0-9]+d?)?(__(" + "|".join(SWEEPABLE) + r")[0-9p]+)*")


def drawn_dataset_name(dataset: str, seed: int) -> str:
    return f"{dataset}_draw{seed}"


def ratio_subset_name(source: str, target: float) -> str:
    return f"{source}_ratio{number_id(target)}"


def size_subset_name(source: str, size: int) -> str:
    return f"{source}_n{size}"


def expand_analysis_subsets(config: dict) -> dict[str, list[str]]:
    """Add the generated subset datasets to ``config['datasets']``; return names per family."""
    families: dict[str, list[str]] = {"ratio": [], "size": []}
    datasets = config["datasets"]
    subsets = config["analysis_subsets"]
    for i, spec in enumerate(subsets["ratio"]):
        for target in spec["targets"]:
            name = ratio_subset_name(spec["from"], target)
            datasets[name] = {"from": spec["from"], "converter": "ratio_subset",
                              "args": {"target_ratio": target, "count": spec["count"],
                                       "seed": spec["seed"]},
                              "_origin": f"analysis_subsets.ratio[{i}]"}
            families["ratio"].append(name)
    for i, spec in enumerate(subsets["size"]):
        for size in spec["sizes"]:
            name = size_subset_name(spec["from"], size)
            datasets[name] = {"from": spec["from"], "converter": "size_subset",
                              "args": {"size": size, "target_ratio": spec["target_ratio"],
                                       "pool": spec["pool"], "seed": spec["seed"]},
                              "_origin": f"analysis_subsets.size[{i}]"}
            families["size"].append(name)
    return families


def _check_converter_args(key: str, entry: dict) -> None:
    fn = CONVERTERS[entry["converter"]]
    try:
        inspect.signature(fn).bind([], Path("out"), **entry["args"])
    except TypeError as err:
        raise ConfigError(f"{key}.args", f"converter '{entry['converter']}': {err}") from None


def check_references(config: dict) -> None:
    sources, datasets = config["sources"], config["datasets"]
    for name, entry in datasets.items():
        key = entry.get("_origin", f"datasets.{name}")
        for j, source in enumerate(entry.get("sources", [])):
            if source not in sources:
                raise ConfigError(f"{key}.sources[{j}]", f"unknown source '{source}'")
        if "from" in entry and entry["from"] not in datasets:
            raise ConfigError(f"{key}.from", f"unknown dataset '{entry['from']}'")
        _check_converter_args(key, entry)
    for name in datasets:  # `from` chains must end at a downloaded dataset
        seen, current = [name], name
        while "from" in datasets[current]:
            current = datasets[current]["from"]
            if current in seen:
                raise ConfigError(f"datasets.{name}.from", f"cycle: {' -> '.join(seen + [current])}")
            seen.append(current)
    for name, model in config["models"].items():
        if model["tokenizer"] not in config["tokenizers"]:
            raise ConfigError(f"models.{name}.tokenizer", f"unknown tokenizer '{model['tokenizer']}'")
    for name, tokenizer in config["tokenizers"].items():
        if tokenizer.get("from_model") is not None and tokenizer["from_model"] not in config["models"]:
            raise ConfigError(f"tokenizers.{name}.from_model", f"unknown model '{tokenizer['from_model']}'")
        template = tokenizer.get("chat_template")  # optional: absent = the Tulu format
        if template == "model" and tokenizer["backend"] == "sentencepiece":
            raise ConfigError(f"tokenizers.{name}.chat_template",
                              "a SentencePiece model has no chat template of its own: give a .jinja file")
        if template not in (None, "model") and not (REPO / template).is_file() and not Path(template).is_file():
            raise ConfigError(f"tokenizers.{name}.chat_template", f"no file {template} (nor 'model')")
    for group, spec in config["run_groups"].items():
        for field, known in (("models", config["models"]), ("datasets", datasets),
                             ("methods", config["methods"])):
            for j, value in enumerate(spec.get(field, [])):
                if value not in known:
                    raise ConfigError(f"run_groups.{group}.{field}[{j}]", f"unknown {field[:-1]} '{value}'")
        for family in spec.get("subsets", []):
            if not config["_subset_families"].get(family):
                raise ConfigError(f"run_groups.{group}.subsets", f"analysis_subsets.{family} defines no datasets")
        _check_sweep(config, group, spec)
    _check_methods(config)
    for j, group in enumerate(config["use_run_groups"]):
        if group not in config["run_groups"]:
            raise ConfigError(f"use_run_groups[{j}]", f"unknown run group '{group}'")
    for key in ("heldout_dataset", "reference_dataset"):
        if config.get(key) is not None and config[key] not in datasets:
            raise ConfigError(key, f"unknown dataset '{config[key]}'")
    for j, name in enumerate(config["extra_datasets"]):
        if name not in datasets:
            raise ConfigError(f"extra_datasets[{j}]", f"unknown dataset '{name}'")
    _check_evaluation(config)
    if config["offline"]:
        for name in needed_sources(config):
            if "shipped" not in sources[name]:
                raise ConfigError(f"sources.{name}", "offline is true but this source has no shipped copy")


def _check_methods(config: dict) -> None:
    """Label-policy parameters: ``weighted`` needs a prompt weight (its own or swept by every group that
    runs it); the other policies take none and train responses at weight 1."""
    swept = {}
    for spec in config["run_groups"].values():
        for method in spec["methods"]:
            swept.setdefault(method, []).append(set(spec.get("sweep", {})))
    for name, method in config["methods"].items():
        if method["labels"] == "weighted":
            if "prompt_weight" not in method and any("prompt_weight" not in s for s in swept.get(name, [])):
                raise ConfigError(f"methods.{name}", "labels 'weighted' needs prompt_weight (or a run group "
                                  "that sweeps it wherever the method runs)")
            continue
        if "prompt_weight" in method:
            raise ConfigError(f"methods.{name}.prompt_weight", f"labels '{method['labels']}' takes no prompt "
                              "weight (use labels: weighted)")
        if method["response_weight"] != 1:
            raise ConfigError(f"methods.{name}.response_weight", f"labels '{method['labels']}' trains "
                              "responses at weight 1 (use labels: weighted)")


def _check_sweep(config: dict, group: str, spec: dict) -> None:
    for parameter, values in spec.get("sweep", {}).items():
        key = f"run_groups.{group}.sweep.{parameter}"
        if parameter not in SWEEPABLE:
            raise ConfigError(key, f"cannot sweep '{parameter}' (sweepable: {', '.join(SWEEPABLE)})")
        if len(set(values)) != len(values):
            raise ConfigError(key, f"repeated value in {values}")
        if parameter in ("prompt_weight", "response_weight") and not all(0 <= v <= 1 for v in values):
            raise ConfigError(key, f"weights must be in [0, 1], got {values}")
        policies = SWEEPABLE[parameter]
        for method in spec["methods"]:
            labels = config["methods"][method]["labels"]
            if policies is not None and labels not in policies:
                raise ConfigError(key, f"method '{method}' has labels '{labels}', which takes no {parameter}")
    for method in spec["methods"]:
        entry = config["methods"][method]
        for point in _sweep_points(spec.get("sweep", {})) if entry["labels"] == "weighted" else ():
            weights = {"prompt_weight": entry.get("prompt_weight"), "response_weight": entry["response_weight"],
                       **dict(point)}
            if weights["prompt_weight"] == weights["response_weight"] == 0:
                raise ConfigError(f"run_groups.{group}", f"method '{method}' with prompt_weight 0 and "
                                  "response_weight 0 trains no token")
    if spec["seed_draws_data"] and not spec.get("seeds"):
        raise ConfigError(f"run_groups.{group}.seed_draws_data", "needs seeds: the seeds draw the data")


def _check_evaluation(config: dict) -> None:
    evaluation = config["evaluation"]
    lists = [("evaluation.benchmarks", evaluation.get("benchmarks", []))]
    lists += [(f"run_groups.{g}.benchmarks", spec.get("benchmarks", [])) for g, spec in config["run_groups"].items()]
    for key, names in lists:
        for j, name in enumerate(names):
            if name not in ALL_BENCHMARKS:
                raise ConfigError(f"{key}[{j}]", f"unknown benchmark '{name}' (known: {', '.join(ALL_BENCHMARKS)})")
    serve = evaluation["judge"]["serve"]
    if serve and serve.get("model") not in config["models"]:
        raise ConfigError("evaluation.judge.serve.model", f"unknown model '{serve.get('model')}'")
    named = [("comparisons.against", config["comparisons"]["against"])]
    named += [(f"comparisons.pairs[{j}][{k}]", m) for j, pair in enumerate(config["comparisons"]["pairs"])
              for k, m in enumerate(pair)]
    for key, method in named:
        if method not in config["methods"]:
            raise ConfigError(key, f"unknown method '{method}'")


def _splice_benchmark_lists(config: dict) -> None:
    """Benchmark lists may hold lists (YAML aliases of a shared list): splice them in; a name given twice is an
    error that names the key."""
    specs = [("evaluation", config["evaluation"])] + [(f"run_groups.{g}", spec)
                                                       for g, spec in config["run_groups"].items()]
    for where, spec in specs:
        if "benchmarks" not in spec:
            continue
        flat = [name for item in spec["benchmarks"] for name in (item if isinstance(item, list) else [item])]
        repeated = sorted({name for name in flat if flat.count(name) > 1})
        if repeated:
            raise ConfigError(f"{where}.benchmarks", f"benchmark(s) listed twice: {', '.join(repeated)}")
        spec["benchmarks"] = flat


def _copy(value):
    """A deep copy that shares nothing: the schema's ``default: {}`` puts one dict object into every entry
    that lacks the key (e.g. each dataset's ``args``), and ``copy.deepcopy`` would keep them shared."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def prepare(config: dict) -> dict:
    """Return a checked copy of ``config``: the schema's defaults filled in, analysis subsets expanded into
    ``datasets``. The functions below read that copy's keys without fallbacks."""
    from snakemake.utils import validate  # the workflow's own venv has it; no job env imports this module

    config = _copy(config)
    validate(config, str(SCHEMA), set_default=True)
    config = _copy(config)
    _splice_benchmark_lists(config)
    config["_subset_families"] = expand_analysis_subsets(config)
    check_references(config)
    expand_drawn_datasets(config)
    return config


# ---- derived views --------------------------------------------------------------------------


def drawn_at_random(config: dict, dataset: str) -> bool:
    """Whether ``dataset`` is a seeded random draw from another dataset (a ratio or size subset, a sample),
    which ``seed_draws_data`` redraws per seed."""
    entry = config["datasets"][dataset]
    return "from" in entry and "seed" in inspect.signature(CONVERTERS[entry["converter"]]).parameters


def expand_drawn_datasets(config: dict) -> None:
    """Add a redrawn copy (its ``seed`` argument replaced) of every dataset drawn at random that a run group
    with ``seed_draws_data`` trains on, one per seed."""
    datasets = config["datasets"]
    for group, spec in config["run_groups"].items():
        if not spec["seed_draws_data"]:
            continue
        for dataset in _group_datasets(config, spec):
            if not drawn_at_random(config, dataset):
                continue
            for seed in spec["seeds"]:
                name = drawn_dataset_name(dataset, seed)
                entry = {**datasets[dataset], "args": {**datasets[dataset]["args"], "seed": seed},
                         "_origin": f"run_groups.{group}.seed_draws_data"}
                if name in datasets and datasets[name].get("_origin", "").endswith(".seed_draws_data"):
                    continue  # the same redraw, asked for by an earlier run group
                if name in datasets and datasets[name] != entry:
                    raise ConfigError(f"datasets.{name}", f"the name of {dataset}'s redraw with seed {seed}")
                datasets[name] = entry


def _group_datasets(config: dict, spec: dict) -> list[str]:
    names = list(spec.get("datasets", []))
    for family in spec.get("subsets", []):
        names += config["_subset_families"][family]
    return names


def _sweep_points(sweep: dict) -> list[tuple[tuple[str, float], ...]]:
    """The grid of a ``sweep`` mapping, each point as sorted (parameter, value) pairs."""
    names = sorted(sweep)
    return [tuple(zip(names, values, strict=True)) for values in itertools.product(*(sweep[n] for n in names))]


def runs_by_group(config: dict) -> dict[str, list[Run]]:
    """The runs of each active run group (``use_run_groups``): models x datasets x methods x epochs x seeds
    x the sweep's grid."""
    training_epochs = config["training"]["epochs"]
    groups = {}
    for group in config["use_run_groups"]:
        spec = config["run_groups"][group]
        seeds = spec.get("seeds", [None])
        groups[group] = [
            Run(model, dataset, method, epochs, seed,
                seed if spec["seed_draws_data"] and drawn_at_random(config, dataset) else None, point)
            for model in spec["models"] for dataset in _group_datasets(config, spec)
            for method in spec["methods"] for epochs in spec.get("epochs", [training_epochs])
            for seed in seeds for point in _sweep_points(spec.get("sweep", {}))]
    return groups


RUN_SETTING_KEYS = ("labels", "prompt_weight", "response_weight", "weight_normalisation", "neftune_alpha",
                    "kl_lambda", "learning_rate", "seed")


def run_settings(config: dict, run: Run) -> dict:
    """The method-level settings of ``run``: its method's labels policy and parameters, the seed and the
    learning rate, with the run's sweep values applied (rules/train_helpers.smk, runs.csv)."""
    method = config["methods"][run.method]
    settings = {"labels": method["labels"], "prompt_weight": method.get("prompt_weight"),
                "response_weight": method["response_weight"],
                "weight_normalisation": method["weight_normalisation"],
                "neftune_alpha": method.get("neftune_alpha"), "kl_lambda": method.get("kl_lambda"),
                "learning_rate": config["training"]["learning_rate"],
                "seed": config["training"]["seed"] if run.seed is None else run.seed}
    settings.update(run.sweep)
    assert tuple(settings) == RUN_SETTING_KEYS
    return settings


def runs(config: dict) -> list[Run]:
    """Every distinct run of the active groups."""
    return sorted({run for group in runs_by_group(config).values() for run in group})


def dataset_closure(config: dict, names) -> list[str]:
    """``names`` plus every dataset they are derived from, in config order."""
    wanted = set()
    for name in names:
        while name not in wanted:
            wanted.add(name)
            if "from" not in config["datasets"][name]:
                break
            name = config["datasets"][name]["from"]
    return [d for d in config["datasets"] if d in wanted]


def trained_datasets(config: dict) -> list[str]:
    names = {run.train_dataset for run in runs(config)}
    return [d for d in config["datasets"] if d in names]


def evaluated_datasets(config: dict) -> list[str]:
    """Datasets built and tokenised besides the trained ones: held-out and reference sets, extras."""
    names = list(config["extra_datasets"])
    names += [config[key] for key in ("heldout_dataset", "reference_dataset") if config.get(key)]
    return names


def needed_datasets(config: dict) -> list[str]:
    return dataset_closure(config, set(trained_datasets(config)) | set(evaluated_datasets(config)))


def needed_sources(config: dict) -> list[str]:
    names = {s for d in needed_datasets(config) for s in config["datasets"][d].get("sources", [])}
    return [s for s in config["sources"] if s in names]


def record_targets(config: dict) -> list[tuple[str, str]]:
    """(tokenizer, dataset) pairs of role records: each run's, plus the held-out and extra
    datasets for every tokenizer in use (loss analysis on them)."""
    active = runs(config)
    pairs = {(config["models"][run.model]["tokenizer"], run.train_dataset) for run in active}
    tokenizers = {config["models"][run.model]["tokenizer"] for run in active}
    pairs |= {(t, d) for t in tokenizers for d in evaluated_datasets(config)}
    return sorted(pairs)


@dataclass(frozen=True)
class EvalTarget:
    """One evaluated model: a fine-tuned run, or a base model (``run`` None, id ``base__<model>``)."""

    target_id: str
    model: str
    run: Run | None
    benchmarks: tuple[str, ...]


def base_target_id(model: str) -> str:
    return f"base__{model}"


def eval_targets(config: dict) -> dict[str, EvalTarget]:
    """Every evaluated model of the active run groups, with its benchmarks.

    A run gets the union of the ``benchmarks`` of the groups it belongs to (default
    ``evaluation.benchmarks``); with ``evaluation.base_models`` each model is evaluated before
    fine-tuning on the union of its runs' benchmarks (minus those that need a training set).
    """
    evaluation = config["evaluation"]
    default = evaluation.get("benchmarks", ALL_BENCHMARKS)  # no schema default: the catalogue is the list
    wanted: dict[Run, set[str]] = {}
    for group, group_runs in runs_by_group(config).items():
        benchmarks = config["run_groups"][group].get("benchmarks", default)
        for run in group_runs:
            wanted.setdefault(run, set()).update(benchmarks)
    targets = {run.run_id: EvalTarget(run.run_id, run.model, run, ordered(names))
               for run, names in sorted(wanted.items())}
    if evaluation["base_models"]:
        for model in sorted({run.model for run in wanted}):
            names = set().union(*(b for r, b in wanted.items() if r.model == model)) - set(NEEDS_TRAINING_SET)
            if names:
                targets[base_target_id(model)] = EvalTarget(base_target_id(model), model, None, ordered(names))
    return {tid: t for tid, t in targets.items() if t.benchmarks}
