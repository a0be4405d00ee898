"""Table 5 statistics reproduce the paper's printed values for the three shipped datasets."""

import csv

import pytest

from conftest import RESOURCES, SHIPPED
from imrepro.data.messages import load_messages_jsonl
from imrepro.data.stats import instruction_output_words, table5_row

PAPER_NAMES = {"lima": "LIMA", "alpagasus_dolly_3k": "Alpagasus Dolly 3k",
               "alpagasus_alpaca_5k": "Alpagasus Alpaca 5k"}
PAPER_METRICS = {
    "size (#examples)": "n_examples", "avg total length": "avg_total",
    "avg output length": "avg_output", "output length std": "std_output",
    "avg instruction length": "avg_instruction", "instruction length std": "std_instruction",
    "output/instruction ratio": "ratio_output_instruction",
}


def paper_table5(dataset: str) -> dict:
    with open(RESOURCES / "paper" / "paper_results.csv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle)
                if r["table"] == "Table 5" and r["train_dataset"] == PAPER_NAMES[dataset]]
    return {PAPER_METRICS[r["metric"]]: float(r["value"]) for r in rows if r["metric"] in PAPER_METRICS}


@pytest.mark.parametrize("dataset", sorted(PAPER_NAMES))
def test_table5_matches_paper(dataset):
    ours = table5_row(dataset, load_messages_jsonl(SHIPPED[dataset]))
    paper = paper_table5(dataset)
    assert set(paper) == set(PAPER_METRICS.values())
    for key, value in paper.items():
        digits = 4 if key == "ratio_output_instruction" else 2
        assert round(ours[key], digits) == pytest.approx(value, abs=10**-digits / 2), key


def test_word_unit_counts_the_role_header():
    example = {"messages": [{"role": "system", "content": "Be kind."},
                            {"role": "user", "content": "  two words "},
                            {"role": "assistant", "content": "one"},
                            {"role": "user", "content": "x"},
                            {"role": "assistant", "content": "a b c"}]}
    # each message contributes its words + 1 for "<|role|>"; system counts as instruction
    assert instruction_output_words(example) == (3 + 3 + 2, 2 + 4)


def test_empty_dataset_is_an_error():
    with pytest.raises(ValueError, match="no examples"):
        table5_row("empty", [])
