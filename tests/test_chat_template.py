"""Role records in a chat template (imrepro.data.chat_template) with the real Llama-2 SentencePiece tokenizer:
the Tulu format written as a template gives the built-in record; Llama 3.1 and Qwen 2.5 style templates put
their injected text (date, default system prompt) in headers, which IM does not train; a Qwen3-style template
is refused as not prefix-stable; generation prompts are the training prefix, token for token. The Gemma
tokenizer with Gemma 3's template, and return_assistant_tokens_mask, are in test_real_model.py."""

import json

import pytest

from conftest import REPO, SHIPPED
from imrepro.data.chat_format import Role
from imrepro.data.chat_template import TemplateError, template_for
from imrepro.data.role_record import build_role_record
from imrepro.data.token_backends import TokenizerSpec, load_backend
from imrepro.train.label_policies import label_weights

SP_MODEL = REPO / "resources/tokenizers/llama2/tokenizer.model"
TULU = REPO / "resources/chat_templates/tulu.jinja"
FIXTURES = REPO / "tests/fixtures/chat_templates"
CONVERSATION = {"id": "c1", "messages": [
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."}, {"role": "user", "content": " And of Italy? "},
    {"role": "assistant", "content": "Rome."}]}
NO_SYSTEM = {"id": "c2", "messages": CONVERSATION["messages"][1:]}


def backend(template, name="llama2_chat"):
    return load_backend(TokenizerSpec(name, "sentencepiece", str(SP_MODEL), chat_template=str(template)))


def shipped(n=30):
    out = []
    for name in ("lima", "alpagasus_dolly_3k"):
        out += [json.loads(line) for line in SHIPPED[name].read_text().splitlines()[:n]]
    return out


def trained_text(be, record, i, policy):
    ids, roles = record.example(i)
    return be.sp.decode([int(x) for x in ids[label_weights(policy, roles) > 0]])


def test_tulu_as_a_template_gives_the_built_in_record():
    examples = shipped() + [CONVERSATION]
    tulu = load_backend(TokenizerSpec("llama2", "sentencepiece", str(SP_MODEL)))
    built_in = build_role_record(examples, tulu, None, progress=False)
    templated = build_role_record(examples, backend(TULU), None, progress=False)
    for i in range(len(examples)):
        ids, roles = built_in.example(i)
        t_ids, t_roles = templated.example(i)
        assert len(t_ids) == len(ids) + 2  # the template closes the last answer with "\n" too (EOS role)
        assert (t_ids[:len(ids)] == ids).all() and t_ids[0] == tulu.bos_id and t_ids[1] != tulu.bos_id
        for policy in ("it", "im", "im_seed"):
            assert (label_weights(policy, t_roles[:len(ids)]) == label_weights(policy, roles)).all(), (i, policy)


@pytest.mark.parametrize(("fixture", "injected"), [
    ("llama3_1_style.jinja", "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024"),
    ("qwen2_5_style.jinja", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")])
def test_injected_text_is_template_text_not_instruction(fixture, injected):
    be = backend(FIXTURES / fixture)
    record = build_role_record([CONVERSATION, NO_SYSTEM], be, None, progress=False)
    for i, example in enumerate((CONVERSATION, NO_SYSTEM)):
        ids, roles = record.example(i)
        headers = be.sp.decode([int(x) for x, r in zip(ids, roles, strict=True)
                                if r in (Role.SYSTEM_HEADER, Role.USER_HEADER)])
        im, it = trained_text(be, record, i, "im"), trained_text(be, record, i, "it")
        if example is NO_SYSTEM or fixture.startswith("llama"):  # Qwen's default prompt only stands in for a system
            assert injected in headers
        assert injected.split("\n")[0] not in im and "start_header_id" not in im and "im_start" not in im
        for message in example["messages"]:
            assert message["content"].strip() in im
            assert (message["content"].strip() in it) == (message["role"] == "assistant")


def test_a_template_that_rewrites_earlier_turns_is_refused_naming_tokenizer_and_conversation():
    be = backend(FIXTURES / "qwen3_style.jinja", name="qwen3_like")
    with pytest.raises(TemplateError, match=r"tokenizer 'qwen3_like'.*conversation c1: not prefix-stable.*"
                                            r"first 3 message\(s\)"):
        build_role_record([CONVERSATION], be, None, progress=False)
    # one turn is prefix-stable, but its generation prompt stops before the empty <think> block it adds
    with pytest.raises(TemplateError, match=r"conversation c3: not prefix-stable: the generation prompt"):
        build_role_record([{"id": "c3", "messages": NO_SYSTEM["messages"][:2]}], be, None, progress=False)


def test_refusals_name_what_is_wrong(tmp_path):
    twice = tmp_path / "twice.jinja"
    twice.write_text(TULU.read_text().replace("{{- bos_token -}}", "{{- bos_token + bos_token -}}"))
    with pytest.raises(TemplateError, match="tokenizer 'llama2_chat'.*renders bos_token twice"):
        build_role_record([NO_SYSTEM], backend(twice), None, progress=False)
    user_marked = tmp_path / "user_marked.jinja"  # {% generation %} around user text: markers disagree
    user_marked.write_text("{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>\n{% generation %}"
                           "{{ m.content }}{% endgeneration %}\n{% endfor %}"
                           "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    with pytest.raises(TemplateError, match="generation %} markers disagree"):
        build_role_record([NO_SYSTEM], backend(user_marked), None, progress=False)
    with pytest.raises(TemplateError, match="tokenizer 'plain': chat_template: model, but the tokenizer has no"):
        template_for("model", {"bos_token": "<s>"}, name="plain", tokenizer=object())
    with pytest.raises(FileNotFoundError, match="tokenizer 'x': chat template file .*missing.jinja not found"):
        template_for(tmp_path / "missing.jinja", {}, name="x")


@pytest.mark.parametrize("template", [TULU, FIXTURES / "llama3_1_style.jinja", FIXTURES / "qwen2_5_style.jinja"])
def test_generation_prompts_are_the_training_prefix_token_for_token(template):
    be = backend(template)
    examples = [CONVERSATION, NO_SYSTEM, *shipped(5)]
    record = build_role_record(examples, be, None, progress=False)
    for i, example in enumerate(examples):
        ids, roles = record.example(i)
        for k, message in enumerate(example["messages"]):
            if message["role"] != "assistant":
                continue
            prompt = be.encode_batch([be.template.generation_prompt(example["messages"][:k])]).ids
            assert (ids[:len(prompt)] == prompt).all()
            assert roles[len(prompt)] == Role.ASSISTANT_CONTENT and roles[len(prompt) - 1] == Role.ASSISTANT_HEADER


def test_dates_are_fixed_so_records_are_reproducible(tmp_path):
    dated = tmp_path / "dated.jinja"  # Llama 3.2 renders today's date with strftime_now
    dated.write_text(TULU.read_text().replace("{{- bos_token -}}", "{{- bos_token + strftime_now('%d %b %Y') -}}"))
    be = backend(dated)
    segments = be.template.segments(NO_SYSTEM["messages"])
    assert segments[0].role == Role.BOS and segments[1].text.startswith("26 Jul 2024<|user|>")
    assert segments[1].role == Role.USER_HEADER


@pytest.mark.parametrize("template", [TULU, REPO / "resources/chat_templates/gemma3.jinja",
                                      *(FIXTURES / f for f in ("llama3_1_style.jinja", "qwen2_5_style.jinja",
                                                               "gemma3_generation.jinja"))])
def test_one_render_finds_the_contents_that_message_by_message_diffs_find(template):
    chat = template_for(template, {"bos_token": "<bos>", "eos_token": "<eos>"}, name="t")
    for example in [CONVERSATION, NO_SYSTEM, *shipped(10)]:
        full = chat.render(example["messages"])
        fast = chat._spans_from_skeleton(example["messages"], full, "test")
        assert fast is not None and fast == chat._spans_by_diff(example["messages"], full, "test")


def test_contents_a_template_reshapes_are_found_by_diffs(tmp_path):
    newlines = tmp_path / "newlines.jinja"  # strips newlines only: neither the content nor content.strip()
    newlines.write_text(TULU.read_text().replace("(message['content'] | trim)", "message['content'].strip('\\n')"))
    chat = template_for(newlines, {"bos_token": "<s>", "eos_token": "</s>"}, name="t")
    messages = [{"role": "user", "content": "\n  indented question\n"}, {"role": "assistant", "content": "yes"}]
    assert chat._spans_from_skeleton(messages, chat.render(messages), "test") is None
    segments = chat.segments(messages)
    assert [(s.text, s.role) for s in segments[:4]] == [
        ("<s>", Role.BOS), ("<|user|>\n", Role.USER_HEADER), ("  indented question", Role.USER_CONTENT),
        ("\n", Role.SEPARATOR)]


def test_the_demo_overlay_plans_records_and_prompts_in_the_template(tmp_path):
    """tests/fixtures/chat_template_demo.yaml (the end-to-end tests' chat-template model): the role record and
    the model job both get --chat-template, and the template file is an input of both."""
    from conftest import snakemake

    (tmp_path / "groups.yaml").write_text(
        "extra_datasets: []\nrun_groups: {chat: {models: [demo_llama_chat], datasets: [lima_head64], "
        "methods: [im_seed]}}\nuse_run_groups: [chat]\nevaluation: {benchmarks: [regen_bleu]}\n")
    configs = [REPO / "profiles/demo/demo_config.yaml", REPO / "tests/fixtures/chat_template_demo.yaml",
               tmp_path / "groups.yaml"]
    result = snakemake("--directory", str(tmp_path), "--nolock", "-n", "-p", "evaluate", "--configfile",
                       *map(str, configs))
    assert result.returncode == 0, result.stdout[-3000:]
    flag = f"--chat-template {TULU}"
    commands = [line for line in result.stdout.splitlines() if flag in line]
    assert any("build_role_record.py" in c and "llama2_chat_ml256/lima_head64.parquet" in c for c in commands)
    assert any("eval_model_outputs.py" in c and "demo_llama_chat__lima_head64__im_seed" in c for c in commands)
    jobs = result.stdout.split("\nrule ")  # every planned job: its rule name, input and output lines
    for rule in ("role_record", "model_outputs"):
        planned = [job for job in jobs if job.startswith(rule)]
        assert planned and all(f"input: {TULU}" in job or f", {TULU}" in job for job in planned), rule
