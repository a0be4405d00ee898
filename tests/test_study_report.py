"""The real-model study's tables and figure (imrepro.report.study) from evaluation result files."""

import json

import pandas as pd
import pytest

from imrepro.report import study
from imrepro.report.paired_stats import paired_difference

HELDOUT = {"it": [3.0, 3.1, 3.2], "im_seed": [2.5, 2.55, 2.6], "im": [2.9, 3.3, 3.05]}
LABELS = {"it": "IT", "im_seed": "IM", "im": "IM (Eq. 4)"}  # method id -> paper_name (display only)


def _write(root, target, benchmark, payload):
    path = root / target / f"{benchmark}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": benchmark, "status": "scored", **payload}))
    return path


@pytest.fixture
def results(tmp_path):
    return _results(tmp_path, LABELS)


def _results(tmp_path, labels):
    paths, targets = [], {"base__m": {"dataset": None, "arm": "base", "labels": None, "seed": None, "label": "base"}}
    paths.append(_write(tmp_path, "base__m", "output_loss", {"kind": "loss", "heldout": {"mean": 3.5}}))
    paths.append(_write(tmp_path, "base__m", "winogrande", {"kind": "lm_eval", "value": 0.5}))
    for arm, losses in HELDOUT.items():
        for seed, loss in enumerate(losses, 1):
            target = f"m__d__{arm}__ep2__s{seed}"
            targets[target] = {"dataset": "d", "arm": arm, "labels": arm, "seed": seed, "label": labels[arm]}
            paths.append(_write(tmp_path, target, "output_loss",
                                {"kind": "loss", "train": {"mean": 1.0 + seed / 10}, "heldout": {"mean": loss}}))
            paths.append(_write(tmp_path, target, "regen_bleu", {"kind": "generation", "value": 10.0 * seed}))
    paths.append(_write(tmp_path, "base__m", "openbookqa", {"kind": "lm_eval", "status": "not_shipped",
                                                            "value": None}))
    return paths, targets


def test_long_table_and_summary(results):
    paths, targets = results
    long = study.long_table(paths, targets)
    assert set(long["metric"]) == {"train_output_loss", "heldout_output_loss", "regen_bleu", "winogrande"}
    assert len(long[long["arm"] == "it"]) == 9  # 3 seeds x 3 metrics; the unscored file gives nothing
    summary = study.summarise(long).set_index(["dataset", "arm", "metric"])
    it = summary.loc[("d", "it", "heldout_output_loss")]
    assert it["n"] == 3 and it["mean"] == pytest.approx(3.1) and it["spread"] == pytest.approx(0.1)
    assert summary.loc[("d", "base", "heldout_output_loss")]["mean"] == 3.5  # the base row, per dataset
    assert summary.loc[("d", "base", "heldout_output_loss")]["spread"] == 0.0


def test_verdict_says_whether_im_is_below_it_beyond_the_spread(results):
    paths, targets = results
    summary = study.summarise(study.long_table(paths, targets))
    assert study.below_beyond_spread(summary, "d", "im_seed")[0] == "below"
    assert study.below_beyond_spread(summary, "d", "im")[0] == "not distinguishable"
    lines = study.verdict_lines(summary)
    assert lines[0].startswith("d: IM's held-out output loss is below IT's beyond the spread: IM 2.550 +- 0.050 (n=3)")
    assert "not distinguishable" in lines[1]


def test_renamed_arms_keep_their_rows_and_verdicts(tmp_path):
    """Arms are joined on method ids and compared by labels policy: a new paper_name drops nothing."""
    renamed = {"it": "Instruction tuning", "im_seed": "Loss on everything", "im": "Eq. 4"}
    paths, targets = _results(tmp_path, renamed)
    summary = study.summarise(study.long_table(paths, targets))
    lines = study.verdict_lines(summary)
    assert len(lines) == 2
    assert lines[0].startswith("d: Loss on everything's held-out output loss is below Instruction tuning's")
    table = study.study_table(summary, {"d": 4.0}, ["it", "im_seed", "im"])
    assert list(table["arm"]) == ["base", "Instruction tuning", "Loss on everything", "Eq. 4"]


def test_unknown_target_is_an_error(results, tmp_path):
    paths, targets = results
    stray = _write(tmp_path, "not_a_target", "regen_bleu", {"kind": "generation", "value": 1.0})
    with pytest.raises(ValueError, match="not_a_target"):
        study.long_table([*paths, stray], targets)


def test_tables_and_figure_are_written(results, tmp_path):
    paths, targets = results
    long = study.long_table(paths, targets)
    summary = study.summarise(long)
    out = tmp_path / "out"
    paths = {name: out / f"{name}.out" for name in ("table", "csv", "summary", "long")}
    study.write_tables(summary, long, paths, {"d": 4.0}, ["it", "im_seed"], "TEST LABEL")
    table = pd.read_csv(paths["csv"])
    assert list(table["arm"]) == ["base", "IT", "IM", "IM (Eq. 4)"]
    assert table.set_index("arm").loc["IT", "heldout_output_loss"] == "3.100 ± 0.100"
    text = paths["table"].read_text()
    assert "TEST LABEL" in text and "below IT's beyond the spread" in text
    study.save_figure(study.figure(summary, long, {"d": 4.0}, ["it", "im_seed"]), out / "fig.png")
    assert (out / "fig.png").stat().st_size > 10_000


def test_instruction_output_ratio_and_shares_table():
    assert study.instruction_output_ratio({"avg_instruction": 15.0, "avg_output": 300.0}) == pytest.approx(0.05)
    text = study.shares_table({"LIMA": {"it": 0.5, "im": 0.9}})
    assert text.splitlines()[0] == "| dataset | `it` | `im` |" and "| LIMA | 0.500 | 0.900 |" in text


def test_paired_verdicts_over_heldout_examples_across_seeds(tmp_path):
    """IM's per-example held-out losses sit 0.2 nats below IT's on the same 40 examples: the paired verdict
    says below, with the interval; IM (Eq. 4) equals IT: not distinguishable."""
    import numpy as np

    rng = np.random.default_rng(0)
    truth = rng.uniform(1.0, 3.0, 40)
    paths, targets = [], {}
    for arm, shift in (("it", 0.0), ("im_seed", -0.2), ("im", 0.0)):  # method ids; their labels policy = the id
        for seed in (1, 2):
            target = f"m__d__{arm}__ep2__s{seed}"
            targets[target] = {"dataset": "d", "arm": arm, "labels": arm, "seed": seed}
            losses = list(truth + shift + rng.normal(0, 0.05, 40))
            paths.append(_write(tmp_path, target, "output_loss", {
                "kind": "loss", "heldout": {"mean": float(np.mean(losses)), "ids": [f"e{i}" for i in range(40)],
                                            "losses": losses}}))
    lines = study.paired_verdict_lines(paths, targets, n_resamples=999)
    assert len(lines) == 2
    assert lines[0].startswith("d: im_seed's held-out output loss is below it's: -0.2")
    assert "40 held-out examples" in lines[0] and "2 vs 2 seeds" in lines[0]
    assert lines[1].startswith("d: im's held-out output loss is not distinguishable from it's")


# ---- the curves (imrepro.report.study_curves) -------------------------------------------------------

def _curve_results(tmp_path):
    """Two sets; per example i the loss is base_i + an arm offset + a seed offset, so every paired gain is known:
    on set "hi" IM is 0.3 below IT, plw at 0.1 is 0.2 below; on "lo" IM is 0.05 above IT."""
    from imrepro.report import study_curves  # noqa: F401  (the module under test)

    offsets = {"hi": {"it": 0.0, "im": -0.3, "plw__prompt_weight0.1": -0.2},
               "lo": {"it": 0.0, "im": 0.05, "plw__prompt_weight0.1": 0.0}}
    base = [2.0, 2.5, 3.0, 3.5, 2.2, 2.9]
    paths, targets = [], {}
    for dataset, arms in offsets.items():
        for k, (arm, offset) in enumerate(arms.items()):
            for seed in (1, 2, 3):
                target = f"m__{dataset}__{arm}__s{seed}"
                pw = 0.1 if arm.startswith("plw") else None
                targets[target] = {"dataset": dataset, "arm": arm, "labels": "weighted" if pw else arm, "seed": seed,
                                   "label": f"PLW (prompt_weight {pw:g})" if pw else arm.upper(), "prompt_weight": pw}
                noise = [0.01 * ((i * seed + k * i) % 3 - 1) for i in range(len(base))]  # differs per item and arm
                losses = [b + offset + n for b, n in zip(base, noise, strict=True)]
                part = {"ids": [f"x{i}" for i in range(len(base))], "losses": losses, "mean": sum(losses) / len(losses)}
                paths.append(_write(tmp_path, target, "output_loss",
                                    {"kind": "loss", "heldout": part, "reference": {**part, "ids": part["ids"]},
                                     "train": None}))
    return paths, targets


def test_paired_gains_and_the_three_curves(tmp_path):
    from imrepro.report import study_curves

    paths, targets = _curve_results(tmp_path)
    items = study_curves.item_losses(paths, targets)
    assert len(items) == 2 * 3 * 3 * 6 * 2  # sets x arms x seeds x examples x splits
    hi = study_curves.paired_gain(items, "hi", "im", "it", "heldout", n_resamples=999)
    assert hi["n_items"] == 6 and hi["seeds_arm"] == hi["seeds_it"] == 3
    assert hi["gain"] == pytest.approx(0.3, abs=0.01) and hi["ci_low"] < hi["gain"] < hi["ci_high"]
    assert hi["ci_low"] > 0.25 and hi["p_value"] < 0.05  # the paired bootstrap and sign-flip test of comparisons
    means = items[(items["dataset"] == "hi") & (items["split"] == "heldout")].groupby(["arm", "item"])["loss"].mean()
    expected = paired_difference((means["im"]).to_numpy(), means["it"].to_numpy(), n_resamples=999)
    assert (hi["gain"], hi["ci_low"], hi["ci_high"]) == (expected.delta, expected.ci_low, expected.ci_high)
    lo = study_curves.paired_gain(items, "lo", "im", "it", "heldout", n_resamples=999)
    assert lo["gain"] == pytest.approx(-0.05, abs=0.01) and lo["ci_high"] < 0
    assert study_curves.paired_gain(items, "nowhere", "im", "it", "heldout") is None

    curves = {"reference_arm": "it", "im_arm": "im", "ratio_sets": ["lo", "hi"], "size_sets": ["hi"],
              "prompt_weight": {"sets": {"short": "hi", "long": "lo"}}}
    swept = {"plw__prompt_weight0.1": {"label": "PLW (prompt_weight 0.1)", "prompt_weight": 0.1}}
    table = study_curves.curve_table(items, curves, {"lo": 0.05, "hi": 8.0}, {"hi": 32}, swept, n_resamples=999)
    heldout = table[table["split"] == "heldout"].set_index(["curve", "set", "dataset", "arm"])
    assert heldout.loc[("ratio", "", "hi", "im"), "x"] == 8.0
    assert heldout.loc[("size", "", "hi", "im"), "x"] == 32
    assert heldout.loc[("prompt_weight", "short", "hi", "plw__prompt_weight0.1"), "gain"] == pytest.approx(0.2)
    assert heldout.loc[("prompt_weight", "short", "hi", "im"), "x"] == 1.0  # IM is prompt weight 1
    lines = study_curves.trend_lines(table)  # slope: (0.3 + 0.05) / (ln 8 - ln 0.05) = 0.069
    assert lines[0].startswith("ratio: IM's gain over IT (held-out (Dolly)) changes by +0.069 nats per unit of "
                               "ln(instruction/output ratio) over 2 points; 1 point(s) above 0 and 1 below 0")
    assert any(line.startswith("prompt weight, short (hi): the largest gain over weight 0 is at weight 1: +0.300")
               for line in lines)
    assert "| ratio | — | hi | 8 | IM |" in study_curves.curves_markdown(table)
    reading = study_curves.reading_lines(table)
    assert reading[0].startswith("Fig. 2 left (the paper: IM's gain grows with ln ratio): ours agrees: gain -0.050")
    assert not any(line.startswith("Fig. 2 right") for line in reading)  # one size only: no trend to read
    short, long = (next(line for line in reading if f"Prompt weight, {name}" in line) for name in ("short", "long"))
    assert "ours disagrees: best inner weight 0.1 +0.200" in short  # weight 1 (+0.3) beats 0.1 beyond the intervals
    assert "ours disagrees" in long  # IM is 0.05 worse than IT beyond its interval: an effect
    fig = study_curves.curves_figure(table, {"left": (18.85, 25.83), "right": None}, "label")
    assert len(fig.axes) == 4  # three panels and the paper's axis beside the ratio panel
