"""The demo's data stage end to end: real Snakemake jobs on the shipped files."""

import csv
import json
import shutil

import pytest

from conftest import REPO, SHIPPED, snakemake
from imrepro.data.chat_format import Role
from imrepro.data.role_record import load_role_record
from test_stats import PAPER_METRICS, paper_table5

DEMO = str(REPO / "profiles" / "demo")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    result = snakemake("--profile", DEMO, "--directory", str(workdir), "data")
    assert result.returncode == 0, result.stdout[-3000:]
    return workdir


def test_table5_of_the_demo_equals_the_paper(demo_dir):
    with open(demo_dir / "results" / "tables" / "table5_dataset_stats.csv") as handle:
        rows = {r["dataset"]: r for r in csv.DictReader(handle)}
    for dataset in SHIPPED:
        for key, value in paper_table5(dataset).items():
            assert float(rows[dataset][key]) == pytest.approx(value, abs=0.006), (dataset, key)
    assert set(PAPER_METRICS.values()) < set(rows["lima"])


def test_role_records_cover_every_trained_dataset(demo_dir):
    records = sorted((demo_dir / "results" / "data" / "records" / "llama2_ml256").glob("*.parquet"))
    assert {p.stem for p in records} >= set(SHIPPED) | {"alpagasus_dolly_3k_ratio2", "alpagasus_dolly_3k_n64"}
    lima = load_role_record(demo_dir / "results/data/records/llama2_ml256/lima.parquet")
    assert len(lima) == 1030 and lima.lengths.max() == 256
    assert lima.metadata["tokenizer_backend"] == "sentencepiece"
    assert (lima.roles == Role.ASSISTANT_CONTENT).mean() > 0.5


def test_second_run_has_nothing_to_do(demo_dir):
    result = snakemake("--profile", DEMO, "--directory", str(demo_dir), "-n", "data")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout


def build_lima_from(workdir, source_override: dict):
    """Build the demo's canonical LIMA in ``workdir`` with the ``im_lima`` source overridden."""
    overlay = workdir / "overlay.yaml"
    overlay.write_text(json.dumps({"sources": {"im_lima": source_override}}))
    return snakemake("results/data/canonical/lima.jsonl", "--profile", DEMO, "--directory", str(workdir),
                     "--configfile", str(REPO / "profiles/demo/demo_config.yaml"), str(overlay))


def test_corrupt_source_fails_cleanly(tmp_path):
    """A shipped file whose bytes changed fails its checksum; nothing downstream is written."""
    corrupt = tmp_path / "lima_data.jsonl"
    shutil.copy(SHIPPED["lima"], corrupt)
    with open(corrupt, "a") as handle:
        handle.write('{"messages": [{"role": "user", "content": "tampered"}]}\n')
    result = build_lima_from(tmp_path, {"shipped": str(corrupt)})
    assert result.returncode != 0
    log = (tmp_path / "logs/data/download_source/im_lima/lima_data.jsonl.log").read_text()
    assert "sha256 mismatch: expected c15ce7ca" in log
    assert not (tmp_path / "results/data/raw/im_lima/lima_data.jsonl").exists()
    assert not (tmp_path / "results/data/canonical/lima.jsonl").exists()


def test_invalid_line_names_file_line_field_and_writes_nothing(tmp_path):
    """A canonical source with a bad record: the conversion fails, naming where and what."""
    bad = tmp_path / "lima_data.jsonl"
    lines = SHIPPED["lima"].read_text().splitlines()
    lines[41] = lines[41].replace('"role": "assistant"', '"role": "bot"', 1)
    bad.write_text("\n".join(lines) + "\n")
    from imrepro.data.download import sha256_file
    result = build_lima_from(tmp_path, {"shipped": str(bad), "sha256": sha256_file(bad)})
    assert result.returncode != 0
    log = (tmp_path / "logs/data/convert_dataset/lima.log").read_text()
    assert "lima_data.jsonl:42: field 'messages[1].role': 'bot' is not one of" in log
    assert not (tmp_path / "results/data/canonical/lima.jsonl").exists()
