"""The real-model study's tables and figure (imrepro.report.study) from evaluation result files."""

import json

import pandas as pd
import pytest

from imrepro.report import study

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
    study.write_tables(summary, long, out, {"d": 4.0}, ["it", "im_seed"], "TEST LABEL")
    table = pd.read_csv(out / "study_table.csv")
    assert list(table["arm"]) == ["base", "IT", "IM", "IM (Eq. 4)"]
    assert table.set_index("arm").loc["IT", "heldout_output_loss"] == "3.100 ± 0.100"
    text = (out / "study_table.md").read_text()
    assert "TEST LABEL" in text and "below IT's beyond the spread" in text
    study.save_figure(study.figure(summary, long, {"d": 4.0}, ["it", "im_seed"]), out / "fig.png")
    assert (out / "fig.png").stat().st_size > 10_000


def test_instruction_output_ratio_and_shares_table():
    assert study.instruction_output_ratio({"avg_instruction": 15.0, "avg_output": 300.0}) == pytest.approx(0.05)
    text = study.shares_table({"LIMA": {"it": 0.5, "im": 0.9}})
    assert text.splitlines()[0] == "| dataset | `it` | `im` |" and "| LIMA | 0.500 | 0.900 |" in text
