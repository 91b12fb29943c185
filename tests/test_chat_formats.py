"""Each family's prompt, as the trainer formats it with the model's own chat template and as Ollama
serves it through the Modelfile TEMPLATE (rendered by Go's text/template): byte for byte equal."""

from __future__ import annotations

import pytest
from _helpers_families import EXPECTED_FORMAT, FAMILY_NAMES, family_model
from transformers import AutoTokenizer

from metahuman_lib import chat_formats
from metahuman_lib.errors import ConfigError
from metahuman_lib.training.data import render, render_with_spans

SYSTEM = {"role": "system", "content": "You are Ann's digital personality extension. Speak as Ann."}
CHATS = {
    "single": [SYSTEM, {"role": "user", "content": "How was the {{ garden }} today?"}],
    "multi": [SYSTEM, {"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hey, good to see you."},
              {"role": "user", "content": "What did you cook — \"risotto\" again?\nTell me."}],
    "no_system": [{"role": "user", "content": "Any plans for the weekend?"}],
}


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family(request, tmp_path_factory):
    folder = family_model(tmp_path_factory, request.param)
    return request.param, AutoTokenizer.from_pretrained(folder)


def test_each_family_is_recognised_from_its_own_template(family):
    name, tokenizer = family
    assert chat_formats.detect(tokenizer.chat_template).name == EXPECTED_FORMAT[name]


@pytest.mark.parametrize("chat", sorted(CHATS))
def test_ollama_renders_exactly_the_training_prompt(family, chat, ollama_render):
    _name, tokenizer = family
    fmt = chat_formats.detect(tokenizer.chat_template)
    messages = CHATS[chat]
    served = ollama_render(fmt.ollama_template, messages)
    trained = render(tokenizer, fmt.prepare(messages), fmt, add_generation_prompt=True)
    assert fmt.bos + served == trained
    assert fmt.serve(messages) == served


def test_the_trained_answer_follows_the_served_prompt_and_ends_with_a_stop_marker(family):
    _name, tokenizer = family
    fmt = chat_formats.detect(tokenizer.chat_template)
    conversation = [*CHATS["single"], {"role": "assistant", "content": "Lovely, the tomatoes are in."}]
    text, spans = render_with_spans(tokenizer, fmt.prepare(conversation), fmt)
    start, end = spans[-1]
    assert text[:start] == fmt.bos + fmt.serve(CHATS["single"])
    completion = text[start:end]
    assert completion.strip().startswith("Lovely, the tomatoes are in.")
    assert any(completion.endswith(marker) for marker in fmt.stop), completion


def test_qwen3_trains_and_serves_one_non_thinking_form(tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(family_model(tmp_path_factory, "qwen3"))
    fmt = chat_formats.detect(tokenizer.chat_template)
    answer = [*CHATS["single"], {"role": "assistant", "content": "Green."}]
    text = render(tokenizer, fmt.prepare(answer), fmt)
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\nGreen.<|im_end|>\n")
    assert fmt.ollama_template.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # without the format's kwargs the generation prompt would differ from the trained prompt
    plain = tokenizer.apply_chat_template(CHATS["single"], tokenize=False, add_generation_prompt=True)
    assert not plain.endswith("</think>\n\n")


def test_qwen3_5_thinking_default_is_switched_off(tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(family_model(tmp_path_factory, "qwen3.5"))
    thinking = tokenizer.apply_chat_template(CHATS["single"], tokenize=False, add_generation_prompt=True)
    assert thinking.endswith("<|im_start|>assistant\n<think>\n")
    fmt = chat_formats.detect(tokenizer.chat_template)
    assert render(tokenizer, CHATS["single"], fmt, add_generation_prompt=True).endswith("</think>\n\n")


def test_llama_uses_a_fixed_recorded_date_not_today(tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(family_model(tmp_path_factory, "llama3"))
    fmt = chat_formats.detect(tokenizer.chat_template)
    assert fmt.record()["template_kwargs"] == {"date_string": chat_formats.LLAMA_FIXED_DATE}
    today = tokenizer.apply_chat_template(CHATS["single"], tokenize=False, add_generation_prompt=True)
    fixed = render(tokenizer, fmt.prepare(CHATS["single"]), fmt, add_generation_prompt=True)
    assert f"Today Date: {chat_formats.LLAMA_FIXED_DATE}\n" in fixed
    assert f"Today Date: {chat_formats.LLAMA_FIXED_DATE}\n" not in today  # strftime_now gives today


def test_gemma2_refuses_a_system_role_so_the_system_text_leads_the_first_user_turn(tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(family_model(tmp_path_factory, "gemma2"))
    fmt = chat_formats.detect(tokenizer.chat_template)
    with pytest.raises(Exception, match="System role not supported"):
        tokenizer.apply_chat_template(CHATS["single"], tokenize=False)
    prepared = fmt.prepare(CHATS["multi"])
    assert [m["role"] for m in prepared] == ["user", "assistant", "user"]
    assert prepared[0]["content"] == f"{SYSTEM['content']}\n\nHi!"


def test_prepare_trims_where_the_template_trims():
    messages = [{"role": "user", "content": "  hi \n"}, {"role": "assistant", "content": "\nyo  "}]
    assert chat_formats.LLAMA31.prepare(messages)[0]["content"] == "hi"
    assert chat_formats.QWEN3.prepare(messages)[0]["content"] == "  hi \n"


def test_ollama_merges_consecutive_turns_of_one_role(ollama_render):
    messages = [SYSTEM, {"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
    for fmt in chat_formats.FORMATS.values():
        assert fmt.serve(messages) == ollama_render(fmt.ollama_template, messages)


def test_unknown_templates_are_refused_with_the_families_named():
    assert chat_formats.detect(None) is chat_formats.CHATML
    assert chat_formats.detect("{{ '<|start_header_id|>' }}").name == "llama3"
    with pytest.raises(ConfigError, match="no supported family.*Gemma 2 / Gemma 3"):
        chat_formats.detect("{% for m in messages %}### {{ m.role }}: {{ m.content }}{% endfor %}", where="x/y")
    with pytest.raises(ConfigError, match="Unknown chat format 'vicuna'"):
        chat_formats.by_name("vicuna")
