"""Label policies: golden tests against the authors' masking, trained shares, unit cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from authors_masking import encode_with_messages_format, make_tokenize
from imrepro.data.chat_format import Role
from imrepro.data.messages import load_messages_jsonl
from imrepro.data.role_record import build_role_record
from imrepro.data.token_backends import SentencePieceBackend
from imrepro.train.label_policies import (
    IGNORE_INDEX,
    label_weights,
    resolve_policy,
    trained_share,
    weights_to_labels,
)

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "resources/tokenizers/llama2/tokenizer.model"
DATA = ROOT / "resources/data"
MAX_LENGTH = 2048

# Paper notes §6 point 3: share of the L-1 label positions trained, summed over the dataset.
EXPECTED_SHARES = {
    "lima_data": {"it": 0.891, "im_authors": 0.991, "im": 0.980},
    "alpagasus_3k_dolly": {"it": 0.557, "im_authors": 0.968, "im": 0.931},
    "alpagasus_claude_t45_alpaca": {"it": 0.538, "im_authors": 0.930, "im": 0.849},
}
DATASETS = list(EXPECTED_SHARES)


@pytest.fixture(scope="module")
def backend():
    return SentencePieceBackend(TOKENIZER)


@pytest.fixture(scope="module")
def datasets(backend):
    """Examples and role record per dataset, tokenised once for the module."""
    out = {}
    for name in DATASETS:
        examples = load_messages_jsonl(DATA / f"{name}.jsonl")
        record = build_role_record(examples, backend, max_length=MAX_LENGTH, progress=False)
        out[name] = (examples, record)
    return out


def record_of(messages, backend, max_length=MAX_LENGTH):
    record = build_role_record([{"id": "x", "messages": messages}], backend,
                               max_length=max_length, progress=False)
    return record.example(0)


def trained_runs(roles, policy, prompt_weight=None):
    """Role names of the trained tokens, consecutive repeats collapsed (position 0 excluded)."""
    weights = label_weights(policy, roles, prompt_weight)
    names = [Role(r).name for r in roles[weights > 0]]
    return [name for i, name in enumerate(names) if i == 0 or name != names[i - 1]]


# --- golden tests: token for token against the authors' encode_with_messages_format ---

@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize(("policy", "use_lm_loss"), [("it", False), ("im_authors", True)])
def test_labels_match_authors(datasets, backend, name, policy, use_lm_loss):
    examples, record = datasets[name]
    tokenize = make_tokenize(backend, MAX_LENGTH)
    mismatched = []
    for i, example in enumerate(examples):
        ids, roles = record.example(i)
        their_ids, their_labels = encode_with_messages_format(
            example, tokenize, MAX_LENGTH, use_lm_loss=use_lm_loss)
        ours = weights_to_labels(ids, label_weights(policy, roles))
        if not (np.array_equal(their_ids, ids) and np.array_equal(their_labels, ours)):
            mismatched.append(record.ids[i])
    assert not mismatched, f"{len(mismatched)} examples differ, first: {mismatched[:5]}"


def test_truncated_examples_are_covered(datasets):
    _, record = datasets["lima_data"]
    assert record.metadata["n_truncated"] > 0
    assert record.lengths.max() == MAX_LENGTH


@pytest.mark.parametrize("name", DATASETS)
def test_trained_shares_match_paper_notes(datasets, name):
    _, record = datasets[name]
    measured = {policy: round(trained_share(record, policy), 3) for policy in EXPECTED_SHARES[name]}
    assert measured == EXPECTED_SHARES[name]


@pytest.mark.parametrize("name", DATASETS)
def test_weighted_endpoints_on_data(datasets, name):
    _, record = datasets[name]
    for i in range(0, len(record), 50):
        _, roles = record.example(i)
        for prompt_weight, policy in ((0.0, "it"), (1.0, "im")):
            np.testing.assert_array_equal(label_weights("weighted", roles, prompt_weight),
                                          label_weights(policy, roles))


# --- unit tests on tiny inline examples ---

def test_single_turn(backend):
    _, roles = record_of([{"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Yo"}], backend)
    assert trained_runs(roles, "it") == ["ASSISTANT_CONTENT", "EOS"]
    assert trained_runs(roles, "im") == ["USER_CONTENT", "SEPARATOR", "ASSISTANT_CONTENT", "EOS"]
    assert trained_runs(roles, "im_authors") == ["USER_CONTENT", "SEPARATOR", "ASSISTANT_HEADER",
                                              "ASSISTANT_CONTENT", "EOS"]
    for policy in ("it", "im", "im_authors"):
        assert label_weights(policy, roles)[0] == 0


def test_multi_turn_trains_newline_after_inner_eos(backend):
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    ids, roles = record_of(messages, backend)
    # open-instruct quirk: the "▁\n" after the inner </s> is trained, the second user turn is not.
    assert trained_runs(roles, "it") == ["ASSISTANT_CONTENT", "EOS", "SEPARATOR",
                                         "ASSISTANT_CONTENT", "EOS"]
    weights = label_weights("it", roles)
    assert ids[(roles == Role.SEPARATOR) & (weights > 0)].tolist() == [29871, 13]
    # IM trains no header; seed-IM trains every header but the first.
    assert trained_runs(roles, "im") == ["USER_CONTENT", "SEPARATOR", "ASSISTANT_CONTENT", "EOS",
                                         "SEPARATOR", "USER_CONTENT", "SEPARATOR",
                                         "ASSISTANT_CONTENT", "EOS"]
    assert trained_runs(roles, "im_authors") == [
        "USER_CONTENT", "SEPARATOR", "ASSISTANT_HEADER", "ASSISTANT_CONTENT", "EOS", "SEPARATOR",
        "USER_HEADER", "USER_CONTENT", "SEPARATOR", "ASSISTANT_HEADER", "ASSISTANT_CONTENT", "EOS"]
    labels = weights_to_labels(ids, weights)
    kept = labels != IGNORE_INDEX
    assert labels[0] == IGNORE_INDEX and (labels[kept] == ids[kept]).all()


def test_system_message(backend):
    messages = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Yo"}]
    _, roles = record_of(messages, backend)
    assert trained_runs(roles, "it") == ["ASSISTANT_CONTENT", "EOS"]
    assert trained_runs(roles, "im")[:2] == ["SYSTEM_CONTENT", "SEPARATOR"]
    assert trained_runs(roles, "im_authors")[:3] == ["SYSTEM_CONTENT", "SEPARATOR", "USER_HEADER"]


@pytest.mark.parametrize("messages", [
    [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"},
     {"role": "assistant", "content": "c"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
     {"role": "assistant", "content": "c"}],
    [{"role": "system", "content": "s"}, {"role": "assistant", "content": "b"},
     {"role": "user", "content": "u"}, {"role": "user", "content": "v"},
     {"role": "assistant", "content": "c"}],
])
@pytest.mark.parametrize(("policy", "use_lm_loss"), [("it", False), ("im_authors", True)])
def test_unusual_orders_match_authors(backend, messages, policy, use_lm_loss):
    """Assistant first, two assistant turns in a row, consecutive user turns."""
    ids, roles = record_of(messages, backend)
    _, their = encode_with_messages_format({"messages": messages}, make_tokenize(backend),
                                           use_lm_loss=use_lm_loss)
    ours = weights_to_labels(ids, label_weights(policy, roles))
    np.testing.assert_array_equal(ours[1:], their[1:])  # position 0 is never a target


def test_assistant_header_after_assistant_is_trained_by_it(backend):
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "assistant", "content": "c"}]
    _, roles = record_of(messages, backend)
    assert trained_runs(roles, "it") == ["ASSISTANT_CONTENT", "EOS", "SEPARATOR",
                                         "ASSISTANT_HEADER", "ASSISTANT_CONTENT", "EOS"]


def test_weighted(backend):
    _, roles = record_of([{"role": "user", "content": "Tell me"},
                          {"role": "assistant", "content": "Sure"}], backend)
    it, im = label_weights("it", roles), label_weights("im", roles)
    np.testing.assert_array_equal(label_weights("weighted", roles, 0.0), it)
    np.testing.assert_array_equal(label_weights("weighted", roles, 1.0), im)
    half = label_weights("weighted", roles, 0.5)
    assert half.dtype == np.float32
    np.testing.assert_array_equal(half[it > 0], 1.0)
    np.testing.assert_array_equal(half[(im > 0) & (it == 0)], 0.5)
    np.testing.assert_array_equal(half[im == 0], 0.0)
    both = label_weights("weighted", roles, 0.2, 0.7)  # lambda_p, lambda_r (WIT)
    np.testing.assert_array_equal(both[it > 0], np.float32(0.7))
    np.testing.assert_array_equal(both[(im > 0) & (it == 0)], np.float32(0.2))
    np.testing.assert_array_equal(both[im == 0], 0.0)
    np.testing.assert_array_equal(label_weights("weighted", roles, 1.0, 0.0) > 0, (im > 0) & (it == 0))


def test_truncation(backend):
    messages = [{"role": "user", "content": "word " * 40}, {"role": "assistant", "content": "ok"}]
    full_ids, full_roles = record_of(messages, backend)
    ids, roles = record_of(messages, backend, max_length=20)
    assert len(ids) == 20 and (ids == full_ids[:20]).all()
    for policy in ("it", "im", "im_authors"):
        np.testing.assert_array_equal(label_weights(policy, roles),
                                      label_weights(policy, full_roles)[:20])
    _, their = encode_with_messages_format({"messages": messages}, make_tokenize(backend, 20), 20)
    np.testing.assert_array_equal(weights_to_labels(ids, label_weights("it", roles)), their)


def test_example_without_trained_token_for_it(backend):
    """Truncated inside the instruction: IT trains nothing, IM still does."""
    messages = [{"role": "user", "content": "word " * 40}, {"role": "assistant", "content": "ok"}]
    _, roles = record_of(messages, backend, max_length=20)
    assert not label_weights("it", roles).any()
    assert label_weights("im", roles).sum() == 20 - 1 - 6  # BOS + the 6 header tokens


def test_trained_share_counts_label_positions(backend):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    record = build_role_record([{"id": "a", "messages": messages}], backend, MAX_LENGTH,
                               progress=False)
    _, roles = record.example(0)
    expected = np.count_nonzero(label_weights("it", roles)) / (len(roles) - 1)
    assert trained_share(record, "it") == pytest.approx(expected)


def test_bad_arguments():
    roles = np.array([Role.BOS, Role.USER_HEADER], np.uint8)
    with pytest.raises(ValueError, match="unknown"):
        label_weights("nope", roles)
    with pytest.raises(ValueError, match="response_weight must be in"):
        label_weights("weighted", roles, 0.5, 1.2)
    with pytest.raises(ValueError, match="trains responses at weight 1"):
        label_weights("it", roles, None, 0.5)
    with pytest.raises(ValueError, match="prompt_weight"):
        label_weights("weighted", roles)
    with pytest.raises(ValueError, match="prompt_weight"):
        label_weights("it", roles, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        label_weights("weighted", roles, 1.5)


def test_degenerate_lengths():
    for roles in (np.zeros(0, np.uint8), np.array([Role.BOS], np.uint8)):
        for policy in ("it", "im", "im_authors"):
            assert not label_weights(policy, roles).any()


def test_old_policy_name_is_an_alias_with_a_deprecation_message(caplog):
    roles = np.array([Role.BOS, Role.USER_HEADER, Role.USER_CONTENT, Role.ASSISTANT_HEADER, Role.ASSISTANT_CONTENT],
                     np.uint8)
    assert resolve_policy("im_seed") == "im_authors" and "deprecated" in caplog.text
    np.testing.assert_array_equal(label_weights("im_seed", roles), label_weights("im_authors", roles))
    with pytest.raises(ValueError, match="unknown label policy 'im_sed'"):
        resolve_policy("im_sed")
