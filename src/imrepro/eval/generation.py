"""One text-generation interface for every generating benchmark: vLLM on GPU, transformers ``generate`` otherwise.

    generator = load_generator("results/train/<run>", tokenizer_model="resources/tokenizers/llama2/tokenizer.model")
    texts = generator.generate(prompts, Sampling(temperature=0.1, top_p=0.95, n=20, stop=("\\ndef",)))

Both back-ends get the same prompt token ids, computed here: with ``tokenizer_model`` (the SentencePiece
file the training records were built with) a prompt is tokenised exactly as in training (BOS, then the
authors' legacy SentencePiece ids, ``</s>`` in a chat history as id 2); without it, by the model
directory's tokenizer with a BOS ensured (transformers 5 Llama tokenizers add none). With ``chat_template``
(the tokenizer's ``chat_template`` setting: ``model`` or a .jinja file) a conversation's prompt is that template's
generation prompt, which the role record checked is the training text up to the answer, tokenised without
special tokens (the template renders its own BOS; raw prompts such as HumanEval's get one only if the template
renders one). Prompts that leave
too little room in the context are cut from the left (BOS kept) and counted in ``n_truncated``;
generation ends at the context length (with transformers, that of the longest prompt of the batch).

Results are text only (prompt excluded), ``n`` per prompt in input order, cut at the first stop
sequence (excluded, as vLLM does) and at EOS; an empty completion is returned as ``""``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imrepro.core.models import check_model_dir, load_causal_lm
from imrepro.data.chat_format import HEADER_TEXT, render_text

log = logging.getLogger(__name__)

BACKENDS = ("auto", "hf", "vllm")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEFAULT_BATCH_SIZE = 32  # prompts per generate call; the schema's evaluation.generation.batch_size too


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; the fields mirror vLLM's ``SamplingParams``."""

    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    n: int = 1  # samples per prompt
    stop: tuple[str, ...] = ()
    seed: int = 42
    top_k: int = 0  # 0 = no top-k filter (vLLM's default); HF ``generate`` defaults to 50 otherwise

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(s for s in self.stop if s))
        if self.max_new_tokens < 1 or self.n < 1:
            raise ValueError(f"max_new_tokens and n must be >= 1, got {self.max_new_tokens} and {self.n}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0; got {self.temperature}, "
                             f"{self.top_p}, {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the earliest stop sequence (excluded)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


def chat_prompt(messages: Sequence[dict]) -> str:
    """Tulu generation prompt for a conversation that ends with a user turn: the training text of the
    history (assistant turns closed by ``</s>``) plus the assistant header. One user message gives
    :func:`imrepro.data.chat_format.generation_prompt`."""
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a generation prompt needs a conversation that ends with a user message")
    return render_text(messages) + "\n" + HEADER_TEXT["assistant"]


def count_empty(results: Sequence[Sequence[str]]) -> int:
    return sum(1 for samples in results for text in samples if not text.strip())


# ---------------------------------------------------------------------------------------------
# Back-end selection (module-level probes so tests can monkeypatch them)
# ---------------------------------------------------------------------------------------------

def vllm_importable() -> bool:
    return importlib.util.find_spec("vllm") is not None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def select_backend(backend: str = "auto") -> str:
    """``auto`` = vLLM when it is importable and CUDA is available, else transformers."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown generation backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    if backend == "hf":
        return "hf"
    usable = vllm_importable() and cuda_available()
    if backend == "vllm" and not usable:
        raise ValueError("backend 'vllm' needs the vllm package and a CUDA device "
                         f"(vllm importable: {vllm_importable()}, CUDA: {cuda_available()})")
    return "vllm" if usable else "hf"


def resolve_dtype(precision: str, device: str):
    """``auto`` = bf16 on CUDA, fp32 on CPU."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    if precision == "auto":
        precision = "bf16" if device == "cuda" else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def load_generator(model_dir: str | Path, *, backend: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE,
                   precision: str = "auto", progress: bool = True,
                   tokenizer_model: str | Path | None = None, chat_template: str | None = None) -> Generator:
    """A generator for ``model_dir`` (a Hugging Face model directory with its tokenizer).

    ``tokenizer_model``: the SentencePiece file the model's training records were tokenised with (Llama-2
    runs); prompt ids are then the training ids. ``batch_size`` (transformers only): prompts per
    ``generate`` call, each with ``n`` samples. ``precision``: auto (bf16 on CUDA, fp32 on CPU), bf16,
    fp16 or fp32. ``chat_template``: ``model`` (the model directory's tokenizer's template) or a .jinja file:
    conversations are prompted in that template (None: the Tulu format).
    """
    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    if tokenizer_model is not None and not Path(tokenizer_model).is_file():
        raise FileNotFoundError(f"{tokenizer_model}: SentencePiece tokenizer model not found")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    chosen = select_backend(backend)
    cls = VLLMGenerator if chosen == "vllm" else HFGenerator
    generator = cls(model_dir, batch_size=batch_size, precision=precision, progress=progress,
                    tokenizer_model=tokenizer_model, chat_template=chat_template)
    log.info("generation backend %s for %s (prompt tokens: %s; chat format: %s)", generator.backend_name,
             model_dir, "SentencePiece " + str(tokenizer_model) if tokenizer_model else "model tokenizer",
             chat_template or "Tulu")
    return generator


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------

class Generator:
    """Prompt encoding, truncation and post-processing shared by the back-ends."""

    backend_name = ""

    def __init__(self, model_dir: Path, *, batch_size: int, precision: str, progress: bool,
                 tokenizer_model: str | Path | None, chat_template: str | None = None):
        from transformers import AutoConfig, AutoTokenizer

        self.model_dir = model_dir
        self.batch_size = batch_size
        self.precision = precision
        self.progress = progress
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        config = AutoConfig.from_pretrained(model_dir)
        self.max_positions = getattr(config, "max_position_embeddings", None)
        self.sp = None
        if tokenizer_model is not None:
            from imrepro.data.token_backends import SentencePieceBackend

            self.sp = SentencePieceBackend(tokenizer_model, add_bos=chat_template is None)
        self.template = None
        if chat_template is not None:
            from imrepro.data.chat_template import special_token_strings, template_for

            specials = self.sp.special_token_strings if self.sp is not None else special_token_strings(self.tokenizer)
            self.template = template_for(chat_template, specials, name=str(model_dir), tokenizer=self.tokenizer)
        self.n_truncated = 0

    def chat_prompt(self, messages: Sequence[dict]) -> str:
        """The prompt for the assistant's answer to a conversation that ends with a user message, in the
        format the model was trained in."""
        return self.template.generation_prompt(messages) if self.template is not None else chat_prompt(messages)

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """Prompt token ids, as training tokenised the same text; BOS first where training had one."""
        if self.sp is not None:
            flat = self.sp.encode_batch(list(prompts))
            bounds = [0, *itertools.accumulate(flat.counts.tolist())]
            ids = [flat.ids[lo:hi].tolist() for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
            bos = self.sp.bos_id
        else:
            ids = self.tokenizer(list(prompts), add_special_tokens=self.template is None)["input_ids"]
            bos = self.tokenizer.bos_token_id
        if bos is None or (self.template is not None and not self.template.renders_bos):
            return [list(x) for x in ids]
        return [list(x) if x[:1] == [bos] else [bos, *x] for x in ids]

    def fit(self, ids: list[int], max_new_tokens: int) -> list[int]:
        """Cut a prompt from the left (BOS kept) when fewer than ``min(max_new_tokens, context / 4)`` new
        tokens would fit after it; generation itself ends at the context length, as in vLLM."""
        if not self.max_positions:
            return ids
        room = min(max_new_tokens, self.max_positions // 4)
        if len(ids) + room <= self.max_positions:
            return ids
        keep = self.max_positions - room
        bos = self.tokenizer.bos_token_id
        head = ids[:1] if bos is not None and ids[:1] == [bos] else []
        self.n_truncated += 1
        log.warning("prompt of %d tokens cut to its last %d tokens (context %d)", len(ids), keep, self.max_positions)
        return head + ids[len(ids) - (keep - len(head)):]

    def generate(self, prompts: Sequence[str], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        """``sampling.n`` completions per prompt, in input order, text only, cut at the first stop sequence."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        if not prompts:
            return []
        ids = [self.fit(x, sampling.max_new_tokens) for x in self.encode(prompts)]
        draws = sampling.n
        if sampling.greedy and sampling.n > 1:  # greedy samples are identical: decode once (vLLM refuses n > 1)
            sampling = dataclasses.replace(sampling, n=1)
        texts = self._generate_ids(ids, sampling, desc)
        if len(texts) != len(prompts) or any(len(t) != sampling.n for t in texts):
            raise RuntimeError(f"{self.backend_name}: expected {sampling.n} completions for each of "
                               f"{len(prompts)} prompts")
        return [[cut_at_stop(t, sampling.stop) for t in samples] * (draws // sampling.n) for samples in texts]

    def _generate_ids(self, prompt_ids: list[list[int]], sampling: Sampling, desc: str) -> list[list[str]]:
        raise NotImplementedError


class HFGenerator(Generator):
    """transformers ``generate``: prompts sorted by length, left-padded batches, order restored."""

    backend_name = "hf"

    def __init__(self, model_dir: Path, **kwargs):
        super().__init__(model_dir, **kwargs)
        import torch
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = resolve_dtype(self.precision, self.device)
        self.model, self.attn_implementation = load_causal_lm(model_dir, dtype=dtype, device=self.device)
        self.model.eval()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
        self.pad_id = self._pad_id()

    def _pad_id(self) -> int:
        """The tokenizer's pad token if the model has an embedding for it, else EOS (Llama has no pad)."""
        vocab = self.model.get_input_embeddings().num_embeddings
        for candidate in (self.tokenizer.pad_token_id, self.model.config.pad_token_id, *self.eos_ids):
            if candidate is not None and 0 <= candidate < vocab:
                return int(candidate)
        raise ValueError(f"{self.model_dir}: no usable pad or EOS token id")

    def _generation_config(self, sampling: Sampling):
        from transformers import GenerationConfig

        config = GenerationConfig(max_new_tokens=sampling.max_new_tokens, num_return_sequences=sampling.n,
                                  do_sample=not sampling.greedy, eos_token_id=self.eos_ids,
                                  pad_token_id=self.pad_id, bos_token_id=self.tokenizer.bos_token_id)
        if not sampling.greedy:
            config.temperature, config.top_p, config.top_k = sampling.temperature, sampling.top_p, sampling.top_k
        if sampling.stop:
            config.stop_strings = list(sampling.stop)
        return config

    def _generate_ids(self, prompt_ids, sampling, desc):
        from tqdm.auto import tqdm

        torch = self.torch
        config = self._generation_config(sampling)
        extra = {"tokenizer": self.tokenizer} if sampling.stop else {}
        order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))  # longest first: OOM early
        results: list[list[str] | None] = [None] * len(prompt_ids)
        torch.manual_seed(sampling.seed)
        with tqdm(total=len(prompt_ids), desc=desc, unit="prompt", disable=not self.progress) as bar:
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                width = max(len(prompt_ids[i]) for i in batch)
                input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids = prompt_ids[i]
                    input_ids[row, width - len(ids):] = torch.tensor(ids)
                    mask[row, width - len(ids):] = 1
                batch_config = config
                if self.max_positions and width + config.max_new_tokens > self.max_positions:
                    batch_config = copy.copy(config)  # the context ends the generation, as in vLLM
                    batch_config.max_new_tokens = self.max_positions - width
                with torch.inference_mode():
                    out = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                              generation_config=batch_config, **extra)
                new = out[:, width:].tolist()
                for k, i in enumerate(batch):
                    rows = new[k * sampling.n:(k + 1) * sampling.n]
                    results[i] = [self._decode(prompt_ids[i], self._until_eos(r)) for r in rows]
                bar.update(len(batch))
        return results

    def _until_eos(self, ids: list[int]) -> list[int]:
        for pos, token in enumerate(ids):
            if token in self.eos_ids:
                return ids[:pos]
        return ids

    def _decode(self, prompt: list[int], new: list[int]) -> str:
        """The new tokens' text as it continues the prompt (SentencePiece drops a leading space when
        tokens are decoded on their own: ``▁▁▁return`` must stay ``"   return"``)."""
        if not new:
            return ""
        decode = self.tokenizer.decode
        head = decode(prompt, skip_special_tokens=True)
        full = decode(prompt + new, skip_special_tokens=True)
        return full[len(head):] if full.startswith(head) else decode(new, skip_special_tokens=True)


class VLLMGenerator(Generator):
    """vLLM's offline ``LLM.generate`` over the same prompt token ids (``TokensPrompt`` dicts, vLLM >= 0.4.3).

    Outputs come back in request order; vLLM excludes the stop string and detokenises with the prompt
    as context. Greedy requests with ``n > 1`` are sent with ``n=1`` (older vLLM rejects them)."""

    backend_name = "vllm"

    def __init__(self, model_dir: Path, **kwargs):
        super().__init__(model_dir, **kwargs)
        import torch
        import vllm

        self.vllm = vllm
        dtype = {"auto": "bfloat16", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[self.precision]
        self.llm = vllm.LLM(model=str(model_dir), tokenizer=str(model_dir), dtype=dtype,
                            tensor_parallel_size=max(1, torch.cuda.device_count()))

    def sampling_params(self, sampling: Sampling):
        return self.vllm.SamplingParams(
            n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1, max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop) or None, seed=sampling.seed)

    def _generate_ids(self, prompt_ids, sampling, desc):
        requests = [{"prompt_token_ids": ids} for ids in prompt_ids]
        log.info("%s: %d prompts x %d samples (vLLM)", desc, len(requests), sampling.n)
        outputs = self.llm.generate(requests, self.sampling_params(sampling), use_tqdm=self.progress)
        return [[choice.text for choice in sorted(out.outputs, key=lambda c: c.index)] for out in outputs]
