import json
import random
import re
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SHIPPED
from imrepro.data.converters import run_converter
from imrepro.data.messages import DataFormatError, load_messages_jsonl, make_example
from imrepro.data.subsets import instruction_output_ratio, ratio_subset, size_subset
from imrepro.data.tulu_templates import TEMPLATES_WITH_INPUT, TEMPLATES_WITHOUT_INPUT, choose_template


def template_regex(template: str) -> re.Pattern:
    """The template as a regex; fields were stripped, so they start and end with non-space."""
    pattern = re.escape(template)
    for field in ("instruction", "input"):
        pattern = pattern.replace(re.escape("{" + field + "}"), rf"(?P<{field}>\S(?:.*\S)?)")
    return re.compile(pattern + r"\Z", re.DOTALL)


def reconstruct_raw(examples, rng: random.Random) -> list[dict]:
    """Recover {instruction, input, output} from the authors' converted file.

    Replays their random stream: each example consumed one draw, from the with-input table if
    the record had an input. The drawn template (whichever table matches) must parse the prompt.
    """
    raw = []
    for example in examples:
        prompt = example["messages"][0]["content"]
        completion = example["messages"][1]["content"]
        state = rng.getstate()
        with_input = choose_template(rng, True)
        rng.setstate(state)
        without_input = choose_template(rng, False)
        match = template_regex(with_input[0]).match(prompt)
        if match and match["input"].strip():
            record = {"instruction": match["instruction"], "input": match["input"]}
            completion_template = with_input[1]
        else:
            match = template_regex(without_input[0]).match(prompt)
            assert match, f"{example['id']}: prompt does not fit the template the seed-42 stream drew"
            record = {"instruction": match["instruction"], "input": ""}
            completion_template = without_input[1]
        prefix = completion_template.split("{output}")[0]
        assert completion.startswith(prefix)
        record["output"] = completion[len(prefix):]
        raw.append(record)
    return raw


@pytest.mark.parametrize("dataset, file_dataset, id_prefix, skip_draws", [
    ("alpagasus_alpaca_5k", "alpagasus_claude_t45_alpaca", "alpagasus_", 0),
    ("alpagasus_dolly_3k", "alpagasus_3k_dolly", "alpagasus_3k_", 5305 + 9229),
])
def test_alpagasus_rebuild_is_byte_identical(tmp_path, dataset, file_dataset, id_prefix, skip_draws):
    """Our port of reformat_alpagasus_data.py (random Tulu-v1 templates, seed 42) rebuilds the
    authors' file byte for byte from raw records; the raw records are recovered from their file."""
    shipped = SHIPPED[dataset]
    rng = random.Random(42)
    for _ in range(skip_draws):
        rng.random()
    raw = reconstruct_raw(load_messages_jsonl(shipped), rng)
    raw_path = tmp_path / "raw.json"
    raw_path.write_text(json.dumps(raw))
    out = tmp_path / "rebuilt.jsonl"
    run_converter("instruction_json", [raw_path], out,
                  {"dataset": file_dataset, "id_prefix": id_prefix, "seed": 42, "skip_draws": skip_draws})
    assert out.read_bytes() == shipped.read_bytes()


def test_wrong_skip_draws_breaks_the_template_stream():
    rng = random.Random(42)  # Dolly 3k without replaying the 14,534 earlier draws
    with pytest.raises(AssertionError, match="does not fit"):
        reconstruct_raw(load_messages_jsonl(SHIPPED["alpagasus_dolly_3k"]), rng)


def test_template_tables_are_the_authors():
    assert len(TEMPLATES_WITH_INPUT) == len(TEMPLATES_WITHOUT_INPUT) == 14
    assert sum(w for *_, w in TEMPLATES_WITH_INPUT) == pytest.approx(1.0)


def write_jsonl(path, examples):
    path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    return path


def synthetic(counts: dict[str, int]) -> list[dict]:
    return [make_example(source, f"{source}_{i}", f"q{i} " * (1 + i % 7), f"a{i} " * (1 + i % 3))
            for source, n in counts.items() for i in range(n)]


def test_stratified_fraction_is_proportional_per_source(tmp_path):
    examples = synthetic({"flan": 50, "sharegpt": 33, "lima": 17})
    src = write_jsonl(tmp_path / "tulu.jsonl", examples)
    out = tmp_path / "tenth.jsonl"
    assert run_converter("stratified_fraction", [src], out, {"fraction": 0.1}) == 10
    kept = [e["id"] for e in load_messages_jsonl(out)]
    # quotas int(50/100*10)=5, int(3.3)=3, int(1.7)=1; the deficit of 1 goes to the next example
    # in file order that is over quota (flan_5)
    assert kept == ["flan_0", "flan_1", "flan_2", "flan_3", "flan_4", "flan_5",
                    "sharegpt_0", "sharegpt_1", "sharegpt_2", "lima_0"]


def test_source_filter_with_prefix_and_sample(tmp_path):
    src = write_jsonl(tmp_path / "mix.jsonl", synthetic({"science.a": 3, "science.b": 2, "wizardlm": 4}))
    out = tmp_path / "sci.jsonl"
    assert run_converter("source_filter", [src], out, {"sources": ["science.*"]}) == 5
    assert run_converter("source_filter", [src], out, {"sources": ["wizardlm"], "sample": 2}) == 2
    first = [e["id"] for e in load_messages_jsonl(out)]
    run_converter("source_filter", [src], out, {"sources": ["wizardlm"], "sample": 2})
    assert [e["id"] for e in load_messages_jsonl(out)] == first  # seeded
    with pytest.raises(ValueError, match="no example"):
        run_converter("source_filter", [src], out, {"sources": ["oasst1"]})


def test_less_zip_member_by_name(tmp_path):
    member = "tydiqa_adam_sim_trainp0.05_seed3_p0.05.jsonl"
    rows = synthetic({"flan_v2": 3})
    archive = tmp_path / "less-data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"data/selected_data/tydiqa/{member}", "".join(json.dumps(r) + "\n" for r in rows))
        zf.writestr("data/selected_data/other.jsonl", "{}\n")
    out = tmp_path / "tydiqa.jsonl"
    assert run_converter("less_zip", [archive], out, {"member": member}) == 3
    with pytest.raises(DataFormatError, match="found 0"):
        run_converter("less_zip", [archive], tmp_path / "x.jsonl", {"member": "absent.jsonl"})
    assert not (tmp_path / "x.jsonl").exists()


def test_parquet_shards_like_the_hub_mixture(tmp_path):
    shards = []
    for k in range(2):
        rows = synthetic({f"src{k}": 3})
        path = tmp_path / f"train-{k}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        shards.append(path)
    out = tmp_path / "tulu.jsonl"
    assert run_converter("parquet_messages", shards, out) == 6
    assert load_messages_jsonl(out)[3]["dataset"] == "src1"


def test_bad_line_fails_the_conversion_without_output(tmp_path):
    lines = [json.dumps(e) for e in synthetic({"x": 3})]
    lines[1] = '{"messages": [{"role": "user", "content": "no answer"}]}'
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2: field 'messages': no assistant turn"):
        run_converter("messages", [src], out)
    assert not out.exists()


def test_empty_dataset_file_is_rejected_naming_the_file(tmp_path):
    """An empty source (or one with no example in it) fails the conversion, naming the file, with no output."""
    import subprocess
    import sys

    from conftest import REPO

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    out = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match=r"empty.jsonl: empty file"):
        run_converter("messages", [empty], out)
    no_records = tmp_path / "none.json"
    no_records.write_text("[]")
    with pytest.raises(ValueError, match=r"none.json: converter 'instruction_json' found no examples"):
        run_converter("instruction_json", [no_records], out, {"dataset": "d", "id_prefix": "d_"})
    assert not out.exists()
    proc = subprocess.run([sys.executable, "workflow_scripts/convert_dataset.py", "--converter", "messages",
                           "--output", str(out), str(empty)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and f"{empty}: empty file" in proc.stderr and "wrote" not in proc.stderr
    assert not out.exists()


def test_bytes_that_are_not_utf8_are_named_like_any_bad_input(tmp_path):
    """Two bytes \\xff\\xfe (a UTF-16 mark) give file:line: what, not a bare UnicodeDecodeError."""
    import subprocess
    import sys

    from conftest import REPO

    src = tmp_path / "utf16.jsonl"
    src.write_bytes(b"\xff\xfe")
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "workflow_scripts/convert_dataset.py", "--converter", "messages",
                           "--output", str(out), str(src)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{src}:1: field '<encoding>': not UTF-8 (byte 0xff at column 1)" in proc.stderr
    records = tmp_path / "records.json"
    records.write_bytes(b'[\n{"instruction": "caf\xe9"}]')
    with pytest.raises(ValueError, match=r"records.json:2: not UTF-8 \(byte 0xe9 at column 21\)"):
        run_converter("instruction_json", [records], out, {"dataset": "d", "id_prefix": "d_"})
    assert not out.exists()


def test_ratio_subset_takes_the_examples_nearest_the_target():
    examples = synthetic({"mix": 200})
    subset = ratio_subset(examples, target_ratio=2.0, count=30, seed=1)
    chosen = sorted(abs(instruction_output_ratio(e) - 2.0) for e in subset)
    rest = sorted(abs(instruction_output_ratio(e) - 2.0) for e in examples if e not in subset)
    assert chosen[-1] <= rest[0]
    assert ratio_subset(examples, 2.0, 30, seed=1) == subset
    with pytest.raises(ValueError, match="asked for 300"):
        ratio_subset(examples, 2.0, 300)


def test_size_subsets_are_deterministic_random_draws_from_one_pool():
    examples = synthetic({"mix": 300})
    pool = ratio_subset(examples, 1.0, 120, seed=3)
    small = size_subset(examples, 40, 1.0, pool=120, seed=3)
    assert len(small) == 40 and all(e in pool for e in small)
    assert small == size_subset(examples, 40, 1.0, pool=120, seed=3)
    assert small != size_subset(examples, 40, 1.0, pool=120, seed=4)


def test_word_limits_keep_only_examples_that_fit(tmp_path):
    """max_words (size subsets) and max_instruction_words (held-out and reference slices) draw only from
    examples within the limit, so a short max length cuts no example's whole answer."""
    from conftest import REPO
    from imrepro.data.stats import instruction_output_words

    examples = synthetic({"mix": 300})
    fit = size_subset(examples, 20, 1.0, pool=60, seed=3, max_words=6)
    assert len(fit) == 20 and all(sum(instruction_output_words(e)) <= 6 for e in fit)
    assert any(sum(instruction_output_words(e)) > 6 for e in size_subset(examples, 20, 1.0, pool=60, seed=3))
    source = write_jsonl(tmp_path / "in.jsonl", examples)
    out = tmp_path / "head.jsonl"
    assert run_converter("head", [source], out, {"count": 10, "max_instruction_words": 4}) == 10
    short = [e for e in examples if instruction_output_words(e)[0] <= 4][:10]
    assert [e["id"] for e in load_messages_jsonl(out)] == [e["id"] for e in short]
    with pytest.raises(ValueError, match="with at most 1 instruction words"):
        run_converter("head", [source], out, {"count": 10, "max_instruction_words": 1})
    reference = REPO / "resources/eval/alpaca_eval/gpt4_1106_preview_outputs.json"
    run_converter("alpaca_eval_outputs", [reference], out, {"count": 64, "seed": 0, "max_instruction_words": 20})
    assert all(instruction_output_words(e)[0] <= 20 for e in load_messages_jsonl(out))


def test_alpaca_eval_reference_outputs_become_scorable_examples(tmp_path):
    """The shipped GPT-4-turbo reference (AlpacaEval 2.0): a seeded sample, instruction and answer
    verbatim as the user and assistant turns, in the file's order; a record without its output is
    rejected naming the record."""
    from conftest import REPO

    source = REPO / "resources/eval/alpaca_eval/gpt4_1106_preview_outputs.json"
    records = json.loads(source.read_text())
    out = tmp_path / "ref.jsonl"
    assert run_converter("alpaca_eval_outputs", [source], out, {"count": 64, "seed": 0}) == 64
    examples = load_messages_jsonl(out)
    indices = [int(e["id"].removeprefix("alpaca_eval_")) for e in examples]
    assert indices == sorted(indices) and len(set(indices)) == 64
    assert indices == sorted(random.Random(0).sample(range(len(records)), k=64))
    for example, i in zip(examples, indices, strict=True):
        assert [m["content"] for m in example["messages"]] == [records[i]["instruction"], records[i]["output"]]
        assert example["dataset"] == "alpaca_eval/gpt4_1106_preview"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**records[0]}, {k: v for k, v in records[1].items() if k != "output"}]))
    with pytest.raises(DataFormatError, match=r"\[1\]\.output"):
        run_converter("alpaca_eval_outputs", [bad], tmp_path / "bad.jsonl", {"count": 1})
    with pytest.raises(ValueError, match="asked for 900 records"):
        run_converter("alpaca_eval_outputs", [source], tmp_path / "big.jsonl", {"count": 900})
