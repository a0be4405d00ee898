"""LoRA through PEFT in the training loop (imrepro.train.lora): only the adapter trains, with every
label policy, packed or padded, with NEFTune; the run directory holds the adapter and a merged plain
model; QLoRA fails clearly on CPU; the QLoRA merge path (into a full-precision base read again)
equals PEFT's in-place merge.

The same tiny Llama and Dolly record as tests/test_trainer.py (its fixtures, imported).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_trainer import inputs, load_weights, max_abs_diff, one_thread, settings  # noqa: F401 (fixtures)

from imrepro.train import lora
from imrepro.train.trainer import train

SPEC = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear", "modules_to_save": [],
        "load_in_4bit": False}
HIDDEN, INTERMEDIATE, LAYERS = 32, 64, 2  # test_trainer's model
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def adapter_size(r: int) -> int:
    """LoRA parameters of all-linear on that model: r x (in + out) per linear layer, lm_head excluded."""
    shapes = [(HIDDEN, HIDDEN)] * 4 + [(HIDDEN, INTERMEDIATE)] * 2 + [(INTERMEDIATE, HIDDEN)]
    return LAYERS * sum(r * (a + b) for a, b in shapes)


@pytest.fixture(scope="module")
def lora_trained(inputs, tmp_path_factory):  # noqa: F811
    """``lora_trained(**overrides) -> (summary, merged weights, run directory)``, memoised."""
    runs: dict = {}

    def run(**overrides):
        overrides = {"lora": SPEC, **overrides}
        key = json.dumps(overrides, sort_keys=True)
        if key not in runs:
            s = settings(inputs, tmp_path_factory.mktemp("lora"), **overrides)
            train(s)
            out = Path(s.output_dir)
            runs[key] = (json.loads((out / "train_summary.json").read_text()), load_weights(out), out)
        return runs[key]

    return run


def test_only_the_adapter_trains_and_the_run_holds_adapter_and_merged_model(lora_trained, inputs):  # noqa: F811
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    summary, merged, out = lora_trained()
    base = load_weights(inputs["model"])
    assert summary["trainable_parameters"] == adapter_size(SPEC["r"])
    assert summary["total_parameters"] == sum(v.size for v in base.values()) + adapter_size(SPEC["r"])
    assert summary["adapter"] == "adapter" and summary["settings"]["lora"] == SPEC
    assert summary["logits_positions"] == "trained"  # logits_to_keep passes through the PEFT wrapper
    # the adapter in PEFT's format, non-empty
    adapter = out / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == SPEC["r"]
    tensors = load_weights(adapter)
    assert len(tensors) == 2 * LAYERS * len(LINEAR) and all(t.size > 0 for t in tensors.values())
    # the merged model is plain (the base's tensor names) and only its linear weights moved
    assert merged.keys() == base.keys()
    moved = {k for k in base if np.abs(merged[k] - base[k]).max() > 0}
    assert moved == {k for k in base if k.split(".")[-2] in LINEAR}
    # and it is PEFT's merge of that adapter into the base
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(inputs["model"]), adapter)
    again = {k: v.numpy() for k, v in model.merge_and_unload().state_dict().items()}
    assert max_abs_diff(merged, again) < 1e-6


def test_every_policy_trains_packed_or_padded(lora_trained):
    weights = {}
    for labels, prompt_weight in (("it", None), ("im", None), ("im_seed", None), ("weighted", 0.5)):
        summary, weights[labels], _ = lora_trained(labels=labels, prompt_weight=prompt_weight)
        assert summary["labels"] == labels and all(np.isfinite(h["loss"]) for h in summary["history"])
    assert min(max_abs_diff(weights[a], weights[b]) for a in weights for b in weights if a < b) > 1e-5
    packed, packed_weights, _ = lora_trained(labels="im")
    padded, padded_weights, _ = lora_trained(labels="im", packing=False, per_device_batch_size=4)
    for a, b in zip(packed["history"], padded["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    assert max_abs_diff(packed_weights, padded_weights) < 1e-5


def test_neftune_noise_reaches_the_peft_model(lora_trained):
    """The hook sits on the base model's embedding module, which the PEFT wrapper calls: the noise
    changes the loss, and is the same noise on a second run."""
    plain, plain_weights, _ = lora_trained()
    noisy, noisy_weights, _ = lora_trained(neftune_alpha=5.0)
    assert noisy["history"][0]["loss"] != pytest.approx(plain["history"][0]["loss"], abs=1e-4)
    assert max_abs_diff(noisy_weights, plain_weights) > 1e-6
    again, again_weights, _ = lora_trained(neftune_alpha=5.0, seed=0, warmup_ratio=0.0)  # a new run, same settings
    assert [h["loss"] for h in again["history"]] == [h["loss"] for h in noisy["history"]]
    assert max_abs_diff(again_weights, noisy_weights) == 0.0


def test_modules_to_save_train_in_full(lora_trained, inputs):  # noqa: F811
    summary, merged, out = lora_trained(lora={**SPEC, "modules_to_save": ["lm_head"]})
    base = load_weights(inputs["model"])
    assert summary["trainable_parameters"] == adapter_size(SPEC["r"]) + base["lm_head.weight"].size
    assert np.abs(merged["lm_head.weight"] - base["lm_head.weight"]).max() > 0
    assert any("lm_head" in k for k in load_weights(out / "adapter"))


def test_qlora_on_cpu_fails_before_loading(inputs, tmp_path):  # noqa: F811
    s = settings(inputs, tmp_path, lora={**SPEC, "load_in_4bit": True})
    with pytest.raises(RuntimeError, match=r"load_in_4bit \(QLoRA\) needs a CUDA GPU") as error:
        train(s)
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        assert "bitsandbytes package, which is not installed" in str(error.value)
    assert not Path(s.output_dir).exists()


def test_incomplete_lora_settings_name_the_keys(inputs, tmp_path):  # noqa: F811
    s = settings(inputs, tmp_path, lora={"r": 4, "rank": 8})
    with pytest.raises(ValueError, match=r"missing key\(s\) \['alpha', .*unknown key\(s\) \['rank'\]"):
        train(s)


def test_qlora_merge_path_equals_the_in_place_merge(tmp_path):
    """The merge QLoRA uses (the base read again in full precision, resized like the trainer does, the
    trained embedding rows copied, the adapter merged) gives PEFT's in-place merge, here on a
    full-precision model whose vocabulary lacks the pad row (so the resize draws it at random)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "base")

    def configure(model):
        model.resize_token_embeddings(51)  # the trainer's <pad> row
        return model

    model = lora.wrap(configure(LlamaForCausalLM.from_pretrained(tmp_path / "base")), SPEC, False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a trained adapter (lora_B starts at zero)
    merged = lora.merge_into_full_precision_base(model, str(tmp_path / "base"), SPEC, configure).state_dict()
    expected = model.merge_and_unload().state_dict()
    assert merged.keys() == expected.keys()
    assert max(float((merged[k] - expected[k]).abs().max()) for k in merged) < 1e-6


def test_an_empty_adapter_is_refused(tmp_path):
    """What a save of ungathered ZeRO-3 shards writes (every LoRA tensor of size 0) is not taken for an adapter."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    model = lora.wrap(LlamaForCausalLM(config), SPEC, False)
    assert lora.save_adapter(model, tmp_path / "whole").is_dir()
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = torch.empty(0)  # a ZeRO-3 partitioned parameter outside GatheredParameters
    with pytest.raises(RuntimeError, match="the saved adapter is empty"):
        lora.save_adapter(model, tmp_path / "sharded")
