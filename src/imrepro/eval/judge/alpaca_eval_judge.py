"""AlpacaEval 1.0 and 2.0 through the ``alpaca_eval`` package (0.6.6), judged through ``judge_client``.

alpaca_eval does the benchmark: the annotator configs and prompt templates (1.0: ``alpaca_eval_gpt4``, the
ranking prompt, vs text-davinci-003; 2.0: ``weighted_alpaca_eval_gpt4_turbo``, the 'm'/'M' logprob classifier,
vs gpt-4-1106-preview), the seeded random order of the two outputs, the completion parsers, and the metrics
(``get_winrate``; ``get_length_controlled_winrate``). Three things go through its own extension points instead
of its defaults, without touching site-packages:

* the judge model name replaces ``completions_kwargs.model_name`` in a copy of the installed config;
* ``fn_completions`` (the annotator's decoder) is ``JudgeCompletions``: every request goes through
  ``JudgeClient``, so it is cached on disk (a rerun makes no request), retried with bounded exponential backoff
  on 429/5xx/connection errors, and authenticated from a named environment variable. alpaca_eval's own
  ``openai_completions`` retries only errors whose text contains "rate " (fixed 2 s sleep, 10 times) on top of
  the OpenAI SDK's 2 retries, re-raises anything else (a burst of 5xx ends the run), and after 10 rate-limit
  failures returns an empty completion, which its annotation cache then stores as a missing verdict;
* ``fn_metric`` is ``winrate_metrics``: verdicts that did not parse (alpaca_eval keeps them as NaN/None
  preferences) are counted and left out before ``get_winrate``, which otherwise crashes when none parsed
  ("Expected numeric dtype, got object"), as with a random judge model on the 1.0 ranking prompt.

The length-controlled win rate (2.0 only) is alpaca_eval's GLM. It reads ``df_gamed.csv`` from the Hugging Face
dataset ``tatsu-lab/alpaca_eval`` (``hf_hub_download``); where that is not reachable (offline), or the fit fails,
it is reported as null with the reason in ``lc_note``; offline (``HF_HUB_OFFLINE``) it is not even tried.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from imrepro.core.offline import is_offline
from imrepro.eval.judge.client import JudgeClient, JudgeResponseError, run_concurrently

log = logging.getLogger(__name__)

ANNOTATORS = {1: "alpaca_eval_gpt4", 2: "weighted_alpaca_eval_gpt4_turbo"}
REFERENCES = {1: "text_davinci_003", 2: "gpt4_1106_preview"}
_CHAT_KWARGS = ("max_tokens", "temperature", "logprobs", "top_logprobs")


def installed_configs_dir() -> Path:
    return Path(importlib.util.find_spec("alpaca_eval").submodule_search_locations[0]) / "evaluators_configs"


def write_annotator_config(root: Path, version: int, judge_model: str) -> Path:
    """A copy of the version's installed annotator config under ``root``, judging with ``judge_model``.

    ``fn_completions`` is dropped from the copy: the decoder is passed in as an annotator argument instead.
    """
    import yaml

    name = ANNOTATORS[version]
    source = installed_configs_dir()
    (entry,) = yaml.safe_load((source / name / "configs.yaml").read_text()).values()
    template = source / entry["prompt_template"]
    if entry.pop("fn_completions", "openai_completions") != "openai_completions":
        raise ValueError(f"alpaca_eval config {name} does not use openai_completions; cannot replace its decoder")
    target = root / name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, target / template.name)
    entry["prompt_template"] = f"{name}/{template.name}"  # alpaca_eval resolves it against the config dir's parent
    entry["completions_kwargs"] = {**entry["completions_kwargs"], "model_name": judge_model}
    (target / "configs.yaml").write_text(yaml.safe_dump({name: entry}, sort_keys=False))
    return target / "configs.yaml"


class JudgeCompletions:
    """alpaca_eval ``fn_completions`` over a ``JudgeClient`` (chat endpoint), returning what ``openai_completions``
    returns: ``completions`` (texts), ``completions_all`` (the choices, with ``text`` and ``total_tokens``; the 2.0
    parser reads their ``logprobs``), ``price_per_example`` and ``time_per_example``.

    A response that is not a chat completion gives an empty completion, which alpaca_eval's parsers turn into a
    missing verdict; those are counted in ``n_invalid``.
    """

    def __init__(self, client: JudgeClient, concurrency: int = 1):
        self.client, self.concurrency = client, concurrency
        self.errors: list[str] = []
        self._lock = threading.Lock()

    @property
    def n_invalid(self) -> int:
        return len(self.errors)

    def __call__(self, prompts: Sequence[str], model_name: str, **kwargs) -> dict[str, list]:
        from alpaca_eval.utils import prompt_to_chatml

        unknown = sorted(set(kwargs) - set(_CHAT_KWARGS))
        if unknown:
            raise ValueError(f"annotator completions_kwargs {unknown} are not supported by the judge client")
        chat_kwargs = {"max_tokens": 2048, "temperature": 0.7, **kwargs}  # openai_completions' defaults

        def complete(prompt: str) -> tuple[dict, float]:
            start = time.monotonic()
            try:
                reply = self.client.chat(prompt_to_chatml(prompt.strip()), model_name, **chat_kwargs)
            except JudgeResponseError as exc:
                log.warning("%s", exc)
                with self._lock:
                    self.errors.append(str(exc))
                return {"text": "", "total_tokens": 0}, time.monotonic() - start
            choice = dict(reply.response["choices"][0])
            choice["text"] = reply.text or " "  # as openai_completions: alpaca_eval refuses an empty string
            choice["total_tokens"] = (reply.response.get("usage") or {}).get("total_tokens") or 0
            return choice, time.monotonic() - start

        results = run_concurrently(complete, list(prompts), self.concurrency)
        choices = [choice for choice, _ in results]
        return {"completions": [c["text"] for c in choices], "completions_all": choices,
                "price_per_example": [math.nan] * len(choices), "time_per_example": [t for _, t in results]}


def pair_with_reference(outputs: list[dict], references: list[dict], limit: int | None = None,
                        outputs_name: str = "outputs", references_name: str = "reference"
                        ) -> tuple[list[dict], list[dict], list[int]]:
    """The (first ``limit``) model outputs, the reference records of the same instructions in the same order,
    and each instruction's position in the full reference file (the row index the LC GLM expects)."""
    for name, records in ((outputs_name, outputs), (references_name, references)):
        if not isinstance(records, list):
            raise ValueError(f"{name}: expected a JSON list of {{instruction, output, generator}} records")
        for i, record in enumerate(records):
            if not (isinstance(record, dict) and isinstance(record.get("instruction"), str)
                    and isinstance(record.get("output"), str)):
                raise ValueError(f"{name}: record {i} has no string 'instruction' and 'output'")
    if limit is not None:
        outputs = outputs[:limit]
    if not outputs:
        raise ValueError(f"{outputs_name}: no model outputs to judge")
    position = {r["instruction"]: i for i, r in enumerate(references)}
    seen = set()
    for i, record in enumerate(outputs):
        if record["instruction"] not in position:
            raise ValueError(f"{outputs_name}: the instruction of record {i} ({record['instruction'][:60]!r}) "
                             f"is not in {references_name}")
        if record["instruction"] in seen:
            raise ValueError(f"{outputs_name}: record {i} repeats an instruction ({record['instruction'][:60]!r})")
        seen.add(record["instruction"])
    positions = [position[r["instruction"]] for r in outputs]
    return outputs, [references[p] for p in positions], positions


def winrate_metrics(annotations, version: int, positions_by_instruction: dict[str, int]) -> dict:
    """alpaca_eval's win rate (and, for 2.0, its length-controlled win rate) over the verdicts that parsed.

    Used as ``fn_metric``: ``annotations`` are alpaca_eval's, with ``preference`` NaN/None where the verdict
    did not parse; those are counted in ``n_unparseable`` and excluded.
    """
    import pandas as pd
    from alpaca_eval.metrics import get_winrate
    from alpaca_eval.utils import convert_to_dataframe

    df = convert_to_dataframe(annotations).copy()
    preference = pd.to_numeric(df["preference"], errors="coerce")
    parsed = preference.notna()
    out = {"n_examples": len(df), "n_unparseable": int((~parsed).sum()), "win_rate": None, "standard_error": None,
           "n_total": 0, "lc_win_rate": None, "lc_standard_error": None,
           "lc_note": None if version == 2 else "AlpacaEval 1.0 has no length-controlled win rate"}
    if not parsed.any():
        if version == 2:
            out["lc_note"] = "no verdict parsed"
        return out
    df = df[parsed].assign(preference=preference[parsed])
    df.index = [positions_by_instruction[i] for i in df["instruction"]]  # the GLM looks instructions up by it
    out.update(get_winrate(df))
    if version == 2:
        out.update(_length_controlled(df))
    return out


OFFLINE_LC_NOTE = ("not computed offline (HF_HUB_OFFLINE): alpaca_eval's length-controlled GLM needs df_gamed.csv "
                   "from the Hugging Face dataset tatsu-lab/alpaca_eval")


def _length_controlled(df) -> dict:
    if is_offline():  # alpaca_eval would retry the hub download for minutes before failing
        log.info("length-controlled win rate skipped: %s", OFFLINE_LC_NOTE)
        return {"lc_note": OFFLINE_LC_NOTE}
    from alpaca_eval.metrics import get_length_controlled_winrate

    try:
        lc = get_length_controlled_winrate(df, save_weights_dir=None, is_add_glm_preference_inplace=False)
    except Exception as exc:  # noqa: BLE001 - any failure of the optional GLM is reported, not fatal
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}"
        if "hub" in type(exc).__module__ or "huggingface" in type(exc).__module__:
            reason = ("alpaca_eval's GLM needs df_gamed.csv from the Hugging Face dataset tatsu-lab/alpaca_eval, "
                      f"which could not be fetched (offline?): {reason}")
        log.warning("length-controlled win rate not computed: %s", reason)
        return {"lc_note": reason}
    return {"lc_win_rate": lc["length_controlled_winrate"], "lc_standard_error": lc["lc_standard_error"],
            "lc_note": None}


def run_alpaca_eval(outputs: list[dict], references: list[dict], positions: list[int], version: int,
                    judge_model: str, completions: JudgeCompletions, workdir: Path):
    """Annotate and score with ``alpaca_eval.main.evaluate``: (its leaderboard row, with ``generator``, as plain
    data; the annotations as a DataFrame)."""
    import pandas as pd
    from alpaca_eval.main import evaluate

    config = write_annotator_config(workdir, version, judge_model)
    generators = {str(r.get("generator") or "") for r in outputs}
    name = generators.pop() if len(generators) == 1 and "" not in generators else "model"
    model_df = pd.DataFrame({"instruction": [r["instruction"] for r in outputs],
                             "output": [r["output"] for r in outputs], "generator": name})
    reference_df = pd.DataFrame({"instruction": [r["instruction"] for r in references],
                                 "output": [r["output"] for r in references],
                                 "generator": [r.get("generator") or REFERENCES[version] for r in references]})
    by_instruction = {r["instruction"]: p for r, p in zip(outputs, positions, strict=True)}
    leaderboard, annotations = evaluate(
        model_outputs=model_df, reference_outputs=reference_df, annotators_config=str(config), name=name,
        output_path=None, precomputed_leaderboard=None, is_return_instead_of_print=True, is_cache_leaderboard=False,
        fn_metric=lambda a: winrate_metrics(a, version, by_instruction), sort_by="n_total",
        caching_path=None,  # every request is in the JudgeClient cache; alpaca_eval's own would also keep failures
        fn_completions=completions)
    row = {k: _plain(v) for k, v in leaderboard.loc[name].to_dict().items()}
    return {**row, "generator": name}, pd.DataFrame(annotations)


def _plain(value):
    """numpy scalars as Python numbers, NaN as None (JSON null)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
