"""The tokenised role record: ids as the authors tokenised them, roles verified by decoding."""

import numpy as np
import pytest

from conftest import SHIPPED
from imrepro.data.chat_format import Role, render_segments, render_text
from imrepro.data.messages import load_messages_jsonl
from imrepro.data.role_record import build_role_record, load_role_record, save_role_record

TWO_TURNS = {"id": "x", "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And 3+3?\n"},
    {"role": "assistant", "content": "6."}]}


def test_rendering_is_the_open_instruct_text():
    assert render_text(TWO_TURNS["messages"]) == (
        "<|system|>\nYou are terse.\n<|user|>\nWhat is 2+2?\n<|assistant|>\n4.</s>\n"
        "<|user|>\nAnd 3+3?\n<|assistant|>\n6.</s>")


def test_token_ids_follow_the_authors_slow_tokenizer(sp_backend):
    ids, starts = sp_backend.encode_batch(["<|user|>\nhi\n<|assistant|>\nyo</s>\n<|user|>\nx"]).per_text()[0]
    assert ids[0] == 1 and starts[0] == -1  # BOS added, not in the text
    eos = list(ids).index(2)
    assert list(ids[eos:eos + 3]) == [2, 29871, 13]  # `</s>\n` -> </s>, dummy-prefix ▁, <0x0A>


def test_roles_of_a_multi_turn_example(sp_backend):
    record = build_role_record([TWO_TURNS], sp_backend, None, progress=False)
    ids, roles = record.example(0)
    assert roles[0] == Role.BOS
    # decoding the tokens of each contiguous role run gives back the rendered segments
    segments = render_segments(TWO_TURNS["messages"])
    runs, start = [], 1
    for t in range(2, len(roles) + 1):
        if t == len(roles) or roles[t] != roles[t - 1]:
            run = ids[start:t]
            is_eos = roles[start] == Role.EOS and list(run) == [sp_backend.eos_id]
            runs.append((Role(roles[start]), "</s>" if is_eos else sp_backend.decode(run)))
            start = t
    expected = [(s.role, s.text) for s in segments]
    assert [r for r, _ in runs] == [r for r, _ in expected]
    for (_, got), (_, text) in zip(runs, expected, strict=True):
        assert got.strip() == text.strip()


@pytest.mark.parametrize("dataset, mean_tokens", [
    ("lima", 687.7), ("alpagasus_dolly_3k", 190.1), ("alpagasus_alpaca_5k", 86.8)])
def test_shipped_datasets_match_the_authors_token_counts(sp_backend, dataset, mean_tokens):
    """Mean tokens per example at max length 2048, as measured with the authors' tokenizer."""
    examples = load_messages_jsonl(SHIPPED[dataset])
    record = build_role_record(examples, sp_backend, 2048, progress=False)
    assert len(record) == len(examples)
    assert record.metadata["n_tokens"] / len(record) == pytest.approx(mean_tokens, abs=0.05)
    # every role run decodes to the segment text it claims to be (verification by decoding)
    for i in range(0, len(record), 97):
        ids, roles = record.example(i)
        content = sp_backend.decode(ids[roles == Role.ASSISTANT_CONTENT])
        first_answer = next(m for m in examples[i]["messages"] if m["role"] == "assistant")
        words = first_answer["content"].split()[:5]
        assert " ".join(words) in " ".join(content.split())


def test_fast_offsets_give_the_same_roles_as_sentencepiece_offsets(sp_backend):
    """The vectorised offset path agrees with SentencePiece's own piece offsets."""
    examples = load_messages_jsonl(SHIPPED["alpagasus_dolly_3k"])[:400]
    record = build_role_record(examples, sp_backend, None, progress=False)
    from imrepro.data.role_record import _segment_table, assign_roles
    for i, example in enumerate(examples):
        segments = render_segments(example["messages"])
        text = "".join(s.text for s in segments)
        ids, starts = [1], [-1]
        offset = 0
        for part in sp_backend._split.split(text):
            if not part:
                continue
            if part in sp_backend.special_ids:
                ids.append(sp_backend.special_ids[part])
                starts.append(offset)
            else:
                part_ids, part_starts = sp_backend._encode_with_proto(part)
                ids += list(part_ids)
                starts += list(part_starts + offset)
            offset += len(part.encode())
        ends, seg_roles = _segment_table(segments, "bytes")
        got_ids, got_roles = record.example(i)
        assert list(got_ids) == ids
        assert (assign_roles(np.array(starts), ends, seg_roles) == got_roles).all()


def test_truncation_and_parquet_round_trip(sp_backend, tmp_path):
    examples = load_messages_jsonl(SHIPPED["lima"])[:50]
    record = build_role_record(examples, sp_backend, 64, progress=False)
    assert record.lengths.max() == 64
    assert record.metadata["n_truncated"] == int((record.n_tokens_full > 64).sum()) > 0
    path = tmp_path / "lima.parquet"
    save_role_record(record, path)
    again = load_role_record(path)
    assert again.ids == record.ids
    assert (again.input_ids == record.input_ids).all() and (again.roles == record.roles).all()
    assert (again.offsets == record.offsets).all()
    assert again.metadata == record.metadata


def test_hf_backend_assigns_roles_from_character_offsets(tmp_path):
    """Any fast HF tokenizer works (OPT and other models): a BPE tokenizer trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from imrepro.data.token_backends import HFBackend

    corpus = [render_text(TWO_TURNS["messages"])] * 20
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(tmp_path)
    backend = HFBackend(str(tmp_path))
    record = build_role_record([TWO_TURNS], backend, None, progress=False)
    ids, roles = record.example(0)
    assert roles[0] == Role.BOS and ids[0] == backend.bos_id
    assert (roles == Role.EOS).sum() == 2
    answer = backend.decode(ids[roles == Role.ASSISTANT_CONTENT])
    assert answer == "4.6."
