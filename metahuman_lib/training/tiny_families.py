"""Small random-weight models of the real families, with their real special tokens and chat formats.

Each is built from transformers' own config class of the family (Qwen3, Qwen3.5 with its
linear-attention layers, Llama 3, Gemma 2, Gemma 3, Mistral), so module names, attention and
norms are the real ones; only the sizes are tiny. The tokenizer is a byte-level BPE trained on
the given texts plus the family's special tokens, and its chat template reproduces the family's
published format (written here from those formats, not downloaded). Tests, the benchmark and the
demo train them through exactly the code path of ``Qwen/Qwen3-14B`` and serve them through the
Modelfile the registry writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metahuman_lib.errors import ConfigError, MissingExtraError

QWEN3_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- set ns = namespace(last_query_index=messages|length - 1, found=false) %}"
    "{%- for message in messages[::-1] %}{%- set index = (messages|length - 1) - loop.index0 %}"
    "{%- if not ns.found and message.role == 'user' %}{%- set ns.found = true %}"
    "{%- set ns.last_query_index = index %}{%- endif %}{%- endfor %}"
    "{%- for message in messages %}{%- set content = message.content %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}{%- set reasoning_content = '' %}"
    "{%- if '</think>' in content %}"
    "{%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}"
    "{%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}"
    "{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n'"
    " + content.lstrip('\\n') }}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + content }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}{%- endif %}"
)
# Qwen3.5 opens a thinking block when thinking is on; off, it is Qwen3's empty block.
QWEN3_5_TEMPLATE = QWEN3_TEMPLATE.replace(
    "{%- endif %}{%- endif %}",
    "{%- else %}{{- '<think>\\n' }}{%- endif %}{%- endif %}")

LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    "{%- set date_string = strftime_now('%d %b %Y') %}{%- else %}{%- set date_string = '26 Jul 2024' %}"
    "{%- endif %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

_GEMMA_TURNS = (
    "{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif %}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{%- endif %}"
)
GEMMA2_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{%- endif %}{%- set first_user_prefix = '' %}{%- set loop_messages = messages %}" + _GEMMA_TURNS
)
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' %}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set first_user_prefix = '' %}{%- set loop_messages = messages %}{%- endif %}" + _GEMMA_TURNS
)

MISTRAL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{{- bos_token }}{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.last and system_message is defined %}{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content']|trim + eos_token }}"
    "{%- else %}{{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}"
    "{%- endif %}{%- endfor %}"
)


@dataclass(frozen=True)
class Family:
    """How to build one family's tiny model: config class, special tokens, template."""

    name: str
    config_class: str
    model_class: str
    template: str
    special_tokens: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str
    extra_tokens: tuple[str, ...] = ()
    config_extra: tuple[tuple[str, Any], ...] = ()


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("qwen3", "Qwen3Config", "Qwen3ForCausalLM", QWEN3_TEMPLATE,
           ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None, "<|im_end|>", "<|endoftext|>",
           extra_tokens=("<think>", "</think>"), config_extra=(("head_dim", 16),)),
    Family("qwen3.5", "Qwen3_5TextConfig", "Qwen3_5ForCausalLM", QWEN3_5_TEMPLATE,
           ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None, "<|im_end|>", "<|endoftext|>",
           extra_tokens=("<think>", "</think>"),
           config_extra=(("head_dim", 16), ("linear_num_key_heads", 2), ("linear_num_value_heads", 4),
                         ("linear_key_head_dim", 16), ("linear_value_head_dim", 16),
                         ("layer_types", ("linear_attention", "full_attention")))),
    Family("llama3", "LlamaConfig", "LlamaForCausalLM", LLAMA3_TEMPLATE,
           ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
            "<|finetune_right_pad_id|>"), "<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>"),
    Family("gemma2", "Gemma2Config", "Gemma2ForCausalLM", GEMMA2_TEMPLATE,
           ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"), "<bos>", "<end_of_turn>", "<pad>",
           config_extra=(("head_dim", 16), ("sliding_window", 64))),
    Family("gemma3", "Gemma3TextConfig", "Gemma3ForCausalLM", GEMMA3_TEMPLATE,
           ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"), "<bos>", "<end_of_turn>", "<pad>",
           config_extra=(("head_dim", 16), ("sliding_window", 64))),
    Family("mistral", "MistralConfig", "MistralForCausalLM", MISTRAL_TEMPLATE,
           ("<unk>", "<s>", "</s>", "[INST]", "[/INST]"), "<s>", "</s>", "</s>"),
)}


def build_family_model(family: str, out_dir: Path, texts: Iterable[str], *, vocab_size: int = 512,
                       hidden_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Build and save a tiny random model of ``family`` with its tokenizer; returns ``out_dir``.

    Raises:
        ConfigError: an unknown family, naming the known ones.
    """
    if family not in FAMILIES:
        raise ConfigError(f"Unknown family {family!r}: use one of {', '.join(FAMILIES)}.")
    spec = FAMILIES[family]
    try:
        import torch
        import transformers
        from transformers import GenerationConfig, PreTrainedTokenizerFast
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MissingExtraError("train", exc.name or "transformers") from exc
    from metahuman_lib.training.tiny import byte_level_bpe

    core = byte_level_bpe(texts, vocab_size, spec.special_tokens)
    core.add_tokens(list(spec.extra_tokens))
    named = {"eos_token": spec.eos, "pad_token": spec.pad}
    if spec.bos:
        named["bos_token"] = spec.bos
    others = [t for t in spec.special_tokens if t not in named.values()]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, additional_special_tokens=others,
                                        model_max_length=4096, **named)
    tokenizer.chat_template = spec.template

    settings: dict[str, Any] = {
        "vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": hidden_size * 2,
        "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 4096, "tie_word_embeddings": True,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id}
    settings.update(dict(spec.config_extra))
    if "layer_types" in settings:
        pattern = settings["layer_types"]
        settings["layer_types"] = [pattern[i % len(pattern)] for i in range(layers)]
    config = getattr(transformers, spec.config_class)(**settings)
    torch.manual_seed(seed)
    model = getattr(transformers, spec.model_class)(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, do_sample=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
