"""One prompt format from training to serving: each model family's chat format, for both ends.

A family is recognised from the base model's own chat template. For each one this module knows:

* how the trainer calls that template (``template_kwargs``: Qwen3's one non-thinking form,
  a fixed date for Llama 3.1-3.3, whose template would otherwise insert today's date);
* whether the template has a system role; where it has none (Gemma 2, Mistral) the system text is
  folded into the first user turn before the template sees the conversation, as Gemma 3 does;
* the Ollama ``TEMPLATE`` (Go ``text/template`` over Ollama's data model, see
  ``shared/spec/ollama-prompts.md``) that renders the same text, BOS left out since Ollama's
  runner adds it, and the end-of-turn markers for ``PARAMETER stop``;
* :meth:`ChatFormat.serve`, the same rendering in Python, which the tests prove equal to Go's
  and the trainer compares with the model's own template before it trains a single step.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from metahuman_lib.errors import ConfigError

Messages = list[dict[str, str]]

#: The date a Llama 3.1-3.3 system block carries in training and serving (the template's own default).
LLAMA_FIXED_DATE = "26 Jul 2024"

_CHATML_TURNS = "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
_QWEN3_EMPTY_THINK = "<think>\n\n</think>\n\n"
_LLAMA31_PREAMBLE = f"Cutting Knowledge Date: December 2023\nToday Date: {LLAMA_FIXED_DATE}\n\n"
_LLAMA_TURNS = ('{{ range .Messages }}{{ if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n'
                "{{ .Content }}<|eot_id|>{{ end }}{{ end }}")
# Gemma and Mistral have no system role: .System goes in front of the first user turn.
_FIRST_USER_SYSTEM = "{{ if $first }}{{ if $.System }}{{ $.System }}\n\n{{ end }}{{ end }}"


@dataclass(frozen=True)
class ChatFormat:
    """A family's chat format, as the trainer renders it and as Ollama serves it.

    Attributes:
        name: ``chatml``, ``qwen3``, ``llama3``, ``llama3.1``, ``gemma`` or ``mistral``.
        label: the families it covers, for people.
        system_role: False when the system text is folded into the first user turn.
        strip_content: the family's template trims each message, so the trainer does it first
            (Ollama's template engine has no trim).
        template_kwargs: extra variables the trainer passes to the model's chat template.
        ollama_template: the Modelfile ``TEMPLATE``.
        stop: the end-of-turn markers, for ``PARAMETER stop``.
        bos: the BOS text the model's template prints first and Ollama's runner adds itself.
    """

    name: str
    label: str
    system_role: bool
    strip_content: bool
    ollama_template: str
    stop: tuple[str, ...]
    bos: str = ""
    template_kwargs: tuple[tuple[str, Any], ...] = ()
    _serve: Callable[[Messages], str] = field(default=lambda _m: "", repr=False, compare=False)

    @property
    def kwargs(self) -> dict[str, Any]:
        """``template_kwargs`` as a dict, for ``apply_chat_template``."""
        return dict(self.template_kwargs)

    def prepare(self, messages: Sequence[dict[str, str]]) -> Messages:
        """The conversation as the model's template receives it: contents trimmed where the template
        trims them, system text folded into the first user turn where there is no system role."""
        out = [{"role": m["role"], "content": m["content"].strip() if self.strip_content else m["content"]}
               for m in messages]
        if self.system_role:
            return out
        system = "\n\n".join(m["content"] for m in out if m["role"] == "system")
        out = [m for m in out if m["role"] != "system"]
        if system:
            first = next((i for i, m in enumerate(out) if m["role"] == "user"), None)
            if first is None:
                raise ConfigError(f"A {self.label} conversation needs a user turn to carry the system text.")
            out[first] = {"role": "user", "content": f"{system}\n\n{out[first]['content']}"}
        return out

    def serve(self, messages: Sequence[dict[str, str]]) -> str:
        """What Ollama's ``TEMPLATE`` renders for a chat request (``messages`` as sent, system first),
        up to where the model starts its answer. Equal to Go's rendering, byte for byte."""
        return self._serve(collate(messages))

    def record(self) -> dict[str, Any]:
        """What a run records about its format (``prompt_format.json``, ``effective_config.json``)."""
        return {"name": self.name, "label": self.label, "system_role": self.system_role,
                "template_kwargs": self.kwargs, "bos_token": self.bos, "stop": list(self.stop)}


def collate(messages: Sequence[dict[str, str]]) -> Messages:
    """Ollama's view of a request: consecutive messages of one role merged with a blank line."""
    out: Messages = []
    for message in messages:
        if out and out[-1]["role"] == message["role"]:
            out[-1]["content"] += "\n\n" + message["content"]
        else:
            out.append({"role": message["role"], "content": message["content"]})
    return out


def _system_text(messages: Messages) -> str:
    """Ollama's ``.System``: every system message, joined by a blank line."""
    return "\n\n".join(m["content"] for m in messages if m["role"] == "system")


def _chatml(generation: str) -> Callable[[Messages], str]:
    def serve(messages: Messages) -> str:
        turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return turns + "<|im_start|>assistant\n" + generation
    return serve


def _llama(preamble: bool) -> Callable[[Messages], str]:
    def serve(messages: Messages) -> str:
        head = ""
        if preamble:
            head = f"<|start_header_id|>system<|end_header_id|>\n\n{_LLAMA31_PREAMBLE}{_system_text(messages)}<|eot_id|>"
        roles = (lambda role: role != "system") if preamble else (lambda _role: True)
        turns = "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>"
                        for m in messages if roles(m["role"]))
        return head + turns + "<|start_header_id|>assistant<|end_header_id|>\n\n"
    return serve


def _first_user(user: Callable[[str], str], assistant: Callable[[str], str], generation: str) -> Callable[[Messages], str]:
    def serve(messages: Messages) -> str:
        system, first, out = _system_text(messages), True, []
        for message in messages:
            if message["role"] == "user":
                prefix = f"{system}\n\n" if first and system else ""
                out.append(user(prefix + message["content"]))
                first = False
            elif message["role"] == "assistant":
                out.append(assistant(message["content"]))
        return "".join(out) + generation
    return serve


CHATML = ChatFormat(
    name="chatml", label="ChatML (Qwen2.5, the tiny test model)", system_role=True, strip_content=False,
    ollama_template=_CHATML_TURNS + "<|im_start|>assistant\n",
    stop=("<|im_end|>", "<|im_start|>"), _serve=_chatml(""))

QWEN3 = ChatFormat(
    name="qwen3", label="Qwen3 / Qwen3.5 (non-thinking)", system_role=True, strip_content=False,
    ollama_template=_CHATML_TURNS + "<|im_start|>assistant\n" + _QWEN3_EMPTY_THINK,
    stop=("<|im_end|>", "<|im_start|>"), template_kwargs=(("enable_thinking", False),),
    _serve=_chatml(_QWEN3_EMPTY_THINK))

LLAMA31 = ChatFormat(
    name="llama3.1", label="Llama 3.1-3.3", system_role=True, strip_content=True,
    ollama_template=("<|start_header_id|>system<|end_header_id|>\n\n" + _LLAMA31_PREAMBLE
                     + "{{ .System }}<|eot_id|>" + _LLAMA_TURNS + "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    stop=("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"), bos="<|begin_of_text|>",
    template_kwargs=(("date_string", LLAMA_FIXED_DATE),), _serve=_llama(preamble=True))

LLAMA3 = ChatFormat(
    name="llama3", label="Llama 3.0", system_role=True, strip_content=True,
    ollama_template=("{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
                     "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"),
    stop=("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"), bos="<|begin_of_text|>",
    _serve=_llama(preamble=False))

GEMMA = ChatFormat(
    name="gemma", label="Gemma 2 / Gemma 3", system_role=False, strip_content=True,
    ollama_template=("{{ $first := true }}{{ range .Messages }}{{ if eq .Role \"user\" }}<start_of_turn>user\n"
                     + _FIRST_USER_SYSTEM + "{{ .Content }}<end_of_turn>\n{{ $first = false }}"
                     "{{ else if eq .Role \"assistant\" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n"
                     "{{ end }}{{ end }}<start_of_turn>model\n"),
    stop=("<end_of_turn>", "<start_of_turn>"), bos="<bos>",
    _serve=_first_user(lambda text: f"<start_of_turn>user\n{text}<end_of_turn>\n",
                       lambda text: f"<start_of_turn>model\n{text}<end_of_turn>\n", "<start_of_turn>model\n"))

MISTRAL = ChatFormat(
    name="mistral", label="Mistral ([INST], v0.3 / Nemo)", system_role=False, strip_content=True,
    ollama_template=("{{ $first := true }}{{ range .Messages }}{{ if eq .Role \"user\" }}[INST] "
                     + _FIRST_USER_SYSTEM + "{{ .Content }}[/INST]{{ $first = false }}"
                     "{{ else if eq .Role \"assistant\" }} {{ .Content }}</s>{{ end }}{{ end }}"),
    stop=("</s>", "[INST]"), bos="<s>",
    _serve=_first_user(lambda text: f"[INST] {text}[/INST]", lambda text: f" {text}</s>", ""))

FORMATS: dict[str, ChatFormat] = {f.name: f for f in (CHATML, QWEN3, LLAMA31, LLAMA3, GEMMA, MISTRAL)}


def detect(chat_template: str | None, where: str = "the tokenizer") -> ChatFormat:
    """The family of a chat template (None: the ChatML fallback the trainer gives a bare tokenizer).

    Raises:
        ConfigError: the template belongs to no supported family, naming the families.
    """
    if not chat_template:
        return CHATML
    if isinstance(chat_template, dict):  # several named templates: the default one chats
        chat_template = chat_template.get("default") or next(iter(chat_template.values()), "")
    text = str(chat_template)
    if "<|im_start|>" in text:
        return QWEN3 if "<think>" in text else CHATML
    if "<|start_header_id|>" in text:
        return LLAMA31 if "Cutting Knowledge Date" in text else LLAMA3
    if "<start_of_turn>" in text:
        return GEMMA
    if "[INST]" in text:
        return MISTRAL
    families = "; ".join(f.label for f in FORMATS.values())
    raise ConfigError(f"The chat template of {where} belongs to no supported family ({families}), so its "
                      "Ollama TEMPLATE cannot be made equal to training: pick a base model of one of them.")


def by_name(name: str) -> ChatFormat:
    """A format by its recorded name; the error lists the known ones."""
    if name not in FORMATS:
        raise ConfigError(f"Unknown chat format {name!r}: use one of {', '.join(FORMATS)}.")
    return FORMATS[name]
