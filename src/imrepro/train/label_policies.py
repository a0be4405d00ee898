"""Label policies: which tokens of one example get loss, as pure functions of its roles.

Every policy maps the per-token :class:`~imrepro.data.chat_format.Role` array of ONE example to a
float32 weight array ``w`` of the same length: ``w[t]`` is the loss weight of predicting
token ``t`` from the tokens before it. ``w[0]`` is always 0 (nothing predicts the first
token; Hugging Face's causal-LM loss shifts labels and never reads position 0). Truncated
examples need no special care: their roles just end early, and every rule below only looks
backwards.

Policies (see paper_notes.md §6 and docs/DESIGN.md, "The data model"):

* ``it`` - the paper's IT exactly as open-instruct masks it: each non-assistant message, from
  its header to the end of the ``<|assistant|>\\n`` header that follows it, gets no loss;
  everything else does. So assistant content and ``</s>`` are trained, and so are the
  separator tokens (``▁``, ``\\n``) after the ``</s>`` of a non-final assistant turn. An
  assistant header is masked only when a system/user message precedes it (after BOS or after
  another assistant turn it is trained - a quirk that never occurs in the shipped data).
* ``im`` - the paper's IM (Eq. 4): all tokens except BOS and the role headers (template
  tokens T); content, ``</s>`` and the separator newlines are trained.
* ``im_authors`` - what the authors' ``--use_lm_loss`` code trains: only BOS and the first role
  header are masked (their pattern search can match only at position 0, see paper_notes.md §6).
  Modelled for the Llama-2 tokenizer, where a standalone header tokenises as BOS + the
  in-context header tokens. Its old name ``im_seed`` is still accepted (:func:`resolve_policy` logs
  that it is deprecated): the name collided with random seeds (run groups' ``seeds``).
* ``weighted`` - the tokens ``it`` trains get ``response_weight`` (lambda_r, default 1), the
  other tokens ``im`` trains get ``prompt_weight`` (lambda_p); (0, 1) reproduces ``it``, (1, 1)
  reproduces ``im`` (given that ``it`` trains no header, true for every example that starts
  with a user/system message and never has two assistant turns in a row). What the loss
  divides by (the weights' sum or the count of non-zero weights) is ``loss.py``'s
  ``weight_normalisation``.
"""

from __future__ import annotations

import logging

import numpy as np

from imrepro.data.chat_format import Role

POLICIES = ("it", "im", "im_authors", "weighted")
DEPRECATED_POLICIES = {"im_seed": "im_authors"}  # old name -> its policy
IGNORE_INDEX = -100

HEADERS = np.array([Role.SYSTEM_HEADER, Role.USER_HEADER, Role.ASSISTANT_HEADER], np.uint8)
_NOT_TRAINED_BY_IM = np.array([Role.BOS, *HEADERS], np.uint8)

# Which message each role belongs to; separators belong to the message they close.
_NONE, _SYSTEM, _USER, _ASSISTANT, _INHERIT = 0, 1, 2, 3, 255
_MESSAGE_OF_ROLE = np.full(max(Role) + 1, _INHERIT, np.uint8)
_MESSAGE_OF_ROLE[[Role.BOS]] = _NONE
_MESSAGE_OF_ROLE[[Role.SYSTEM_HEADER, Role.SYSTEM_CONTENT]] = _SYSTEM
_MESSAGE_OF_ROLE[[Role.USER_HEADER, Role.USER_CONTENT]] = _USER
_MESSAGE_OF_ROLE[[Role.ASSISTANT_HEADER, Role.ASSISTANT_CONTENT, Role.EOS]] = _ASSISTANT


def _forward_fill(values: np.ndarray, missing: int, default: int) -> np.ndarray:
    """Replace each ``missing`` entry by the last non-missing one before it."""
    index = np.where(values != missing, np.arange(len(values)), 0)
    np.maximum.accumulate(index, out=index)
    filled = values[index]
    filled[filled == missing] = default  # missing from the very start
    return filled


def _message_kinds(roles: np.ndarray) -> np.ndarray:
    """Per token: the kind of message (none/system/user/assistant) it belongs to."""
    return _forward_fill(_MESSAGE_OF_ROLE[roles], _INHERIT, _NONE)


def _run_starts(roles: np.ndarray) -> np.ndarray:
    """Per token: index of the first token of its run of equal roles (e.g. of its header)."""
    new_run = np.ones(len(roles), bool)
    new_run[1:] = roles[1:] != roles[:-1]
    return np.maximum.accumulate(np.where(new_run, np.arange(len(roles)), 0))


def _as_weights(trained: np.ndarray) -> np.ndarray:
    weights = trained.astype(np.float32)
    weights[:1] = 0.0
    return weights


def it_weights(roles: np.ndarray) -> np.ndarray:
    """IT, token for token as open-instruct's ``encode_with_messages_format`` masks it."""
    roles = np.asarray(roles, np.uint8)
    kinds = _message_kinds(roles)
    starts = _run_starts(roles)
    previous_kind = np.where(starts > 0, kinds[np.maximum(starts - 1, 0)], _NONE)
    masked_header = (roles == Role.ASSISTANT_HEADER) & np.isin(previous_kind, [_SYSTEM, _USER])
    return _as_weights((kinds == _ASSISTANT) & ~masked_header)


def im_weights(roles: np.ndarray) -> np.ndarray:
    """IM of the paper (Eq. 4): everything but BOS and the role headers."""
    return _as_weights(~np.isin(np.asarray(roles, np.uint8), _NOT_TRAINED_BY_IM))


def im_authors_weights(roles: np.ndarray) -> np.ndarray:
    """The authors' ``--use_lm_loss`` labels: BOS and the first system/user header masked."""
    roles = np.asarray(roles, np.uint8)
    trained = np.ones(len(roles), bool)
    trained[:1] = False
    if len(roles) > 1 and roles[1] in (Role.SYSTEM_HEADER, Role.USER_HEADER):
        trained[1:][_run_starts(roles)[1:] == 1] = False
    return _as_weights(trained)


def weighted_weights(roles: np.ndarray, prompt_weight: float, response_weight: float = 1.0) -> np.ndarray:
    """IT tokens weight ``response_weight``, the other IM tokens ``prompt_weight`` ((0, 1) = ``it``,
    (1, 1) = ``im``)."""
    for name, value in (("prompt_weight", prompt_weight), ("response_weight", response_weight)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    response = it_weights(roles) > 0
    prompt = (im_weights(roles) > 0) & ~response
    return np.select([response, prompt], [np.float32(response_weight), np.float32(prompt_weight)],
                     np.float32(0)).astype(np.float32)


def resolve_policy(policy: str) -> str:
    """The policy's current name; a deprecated name is accepted with a warning in the log."""
    if policy in DEPRECATED_POLICIES:
        logging.getLogger(__name__).warning("label policy %r is deprecated: it is now called %r", policy,
                                            DEPRECATED_POLICIES[policy])
        return DEPRECATED_POLICIES[policy]
    if policy not in POLICIES:
        raise ValueError(f"unknown label policy {policy!r} (expected one of {', '.join(POLICIES)})")
    return policy


def label_weights(policy: str, roles: np.ndarray, prompt_weight: float | None = None,
                  response_weight: float = 1.0) -> np.ndarray:
    """Weights of one example under the named policy; only ``weighted`` takes weights (the others train
    responses at 1)."""
    if policy == "weighted":
        if prompt_weight is None:
            raise ValueError("policy 'weighted' needs a prompt_weight")
        return weighted_weights(roles, prompt_weight, response_weight)
    if prompt_weight is not None:
        raise ValueError(f"policy {policy!r} takes no prompt_weight")
    policy = DEPRECATED_POLICIES.get(policy, policy)  # resolve_policy has said so once
    if response_weight != 1.0:
        raise ValueError(f"policy {policy!r} trains responses at weight 1, not {response_weight}")
    functions = {"it": it_weights, "im": im_weights, "im_authors": im_authors_weights}
    if policy not in functions:
        raise ValueError(f"unknown label policy {policy!r} (expected one of {', '.join(POLICIES)})")
    return functions[policy](roles)


def weights_to_labels(input_ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Hugging Face labels: the input ids, with ``-100`` wherever the weight is 0."""
    input_ids = np.asarray(input_ids, np.int64)
    return np.where(np.asarray(weights) > 0, input_ids, IGNORE_INDEX)


def trained_share(record, policy: str, prompt_weight: float | None = None, response_weight: float = 1.0) -> float:
    """Trained label positions / all label positions (L - 1 per example), over the dataset."""
    trained = total = 0
    for i in range(len(record)):
        _, roles = record.example(i)
        if len(roles) < 2:
            continue
        weights = label_weights(policy, roles, prompt_weight, response_weight)
        trained += int(np.count_nonzero(weights[1:]))
        total += len(roles) - 1
    return trained / total if total else 0.0
