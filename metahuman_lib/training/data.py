"""Chat samples -> token ids with loss on assistant tokens only, packed or length-grouped batches.

One template for training and inference: a sample is rendered with the tokenizer's own chat
template (ChatML when the tokenizer has none), called the way its family is served
(:mod:`metahuman_lib.chat_formats`: Qwen3's non-thinking form, Llama's fixed date, the system text
folded into the first user turn where the template has no system role). Labels are ``-100`` everywhere except the assistant turns (their content and the
end-of-turn marker), so the model learns to answer and to stop, never to imitate the prompt
(defect 6). Truncation is counted per sample, never silent; a sample whose assistant tokens are
all cut off is dropped with the reason ``no_assistant_tokens_after_truncation``.

This module imports no torch: it works on plain lists so it is cheap to test; the trainer turns
batches into tensors with :func:`collate`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from metahuman_lib.chat_formats import CHATML, ChatFormat
from metahuman_lib.errors import ConfigError

IGNORE_INDEX = -100

#: ChatML, the template of Qwen models (spec section 5) and of the Ollama Modelfile.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer: Any) -> str:
    """Give ``tokenizer`` a chat template when it has none; return where the template came from.

    Returns:
        ``"model"`` when the tokenizer ships its own template, ``"chatml_fallback"`` otherwise.
        The fallback is saved with the output tokenizer, so inference uses the same template.
    """
    if getattr(tokenizer, "chat_template", None):
        return "model"
    tokenizer.chat_template = CHATML_TEMPLATE
    return "chatml_fallback"


def with_system_prompt(messages: list[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """Prepend ``system_prompt`` unless the sample already starts with a system message."""
    if not system_prompt or (messages and messages[0].get("role") == "system"):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def render(tokenizer: Any, messages: list[dict[str, str]], fmt: ChatFormat = CHATML, *,
           add_generation_prompt: bool = False) -> str:
    """The model's own chat template over an already prepared conversation, called as ``fmt`` says."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         **fmt.kwargs)


def render_with_spans(tokenizer: Any, messages: list[dict[str, str]],
                      fmt: ChatFormat = CHATML) -> tuple[str, list[tuple[int, int]]]:
    """Render a prepared conversation and find the character spans of its assistant turns.

    Each span runs from the start of an assistant turn's content (the end of the rendered
    generation prompt) to the end of that turn, end-of-turn marker included, trailing whitespace
    excluded. It relies on the template rendering each prefix of the conversation as a prefix
    of the whole, which holds for ChatML and the common templates; when a template breaks it,
    the span falls back to the content text itself.
    """
    text = render(tokenizer, messages, fmt)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        start_text = render(tokenizer, messages[:index], fmt, add_generation_prompt=True) if index else ""
        end_text = render(tokenizer, messages[: index + 1], fmt).rstrip()
        if index and text.startswith(start_text) and text.startswith(end_text) and len(end_text) > len(start_text):
            span = (len(start_text), len(end_text))
        else:
            position = text.find(message["content"], cursor)
            if position < 0:
                continue
            span = (position, position + len(message["content"]))
        spans.append(span)
        cursor = span[1]
    return text, spans


@dataclass(frozen=True)
class Example:
    """One tokenized sample: ids, labels (``-100`` outside assistant turns), and where it came from."""

    input_ids: list[int]
    labels: list[int]
    sample_id: str = ""
    month: str = ""
    truncated: bool = False

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class TokenizeStats:
    """Counts from tokenizing one set of samples (stats are return values, not log lines)."""

    samples: int = 0
    examples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated_samples: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def masked_share(self) -> float:
        """Share of tokens that carry no loss (prompt, system, template markers)."""
        return 0.0 if not self.tokens else round(1.0 - self.trained_tokens / self.tokens, 6)

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "examples": self.examples, "tokens": self.tokens,
                "trained_tokens": self.trained_tokens, "truncated_samples": self.truncated_samples,
                "masked_share": self.masked_share, "dropped": dict(self.dropped)}


def tokenize_sample(tokenizer: Any, messages: list[dict[str, str]], max_seq_len: int,
                    fmt: ChatFormat = CHATML) -> tuple[list[int], list[int], bool]:
    """Token ids and labels of one prepared conversation, cut to ``max_seq_len``; also whether it was cut."""
    text, spans = render_with_spans(tokenizer, messages, fmt)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for position, (start, _end) in enumerate(encoded["offset_mapping"]):
        if any(span_start <= start < span_end for span_start, span_end in spans):
            labels[position] = ids[position]
    truncated = len(ids) > max_seq_len
    return ids[:max_seq_len], labels[:max_seq_len], truncated


def tokenize_records(
    tokenizer: Any,
    records: Iterable[dict[str, Any]],
    max_seq_len: int,
    system_prompt: str | None = None,
    fmt: ChatFormat = CHATML,
) -> tuple[list[Example], TokenizeStats]:
    """Tokenize JSONL sample records (``{"messages", "metadata"}``) into examples, with counts."""
    stats = TokenizeStats()
    examples: list[Example] = []
    for record in records:
        stats.samples += 1
        meta = record.get("metadata") or {}
        messages = fmt.prepare(with_system_prompt(record["messages"], system_prompt))
        ids, labels, truncated = tokenize_sample(tokenizer, messages, max_seq_len, fmt)
        stats.truncated_samples += int(truncated)
        example = Example(ids, labels, str(meta.get("sample_id", "")), str(meta.get("timestamp", ""))[:7], truncated)
        if example.trained_tokens == 0:
            reason = "no_assistant_tokens_after_truncation" if truncated else "no_assistant_tokens"
            stats.dropped[reason] = stats.dropped.get(reason, 0) + 1
            continue
        examples.append(example)
        stats.examples += 1
        stats.tokens += len(ids)
        stats.trained_tokens += example.trained_tokens
    return examples, stats


def _single_exchange(messages: list[dict[str, str]]) -> bool:
    roles = [m.get("role") for m in messages if m.get("role") != "system"]
    return roles == ["user", "assistant"]


def prompt_format(tokenizer: Any, records: Sequence[dict[str, Any]], fmt: ChatFormat,
                  system_prompt: str | None = None) -> dict[str, Any]:
    """``prompt_format.json``: the first training sample, the exact text fed before its first trained
    token, the exact text trained (end marker included), and what Ollama will serve for it.

    The sample is the first single exchange of the dataset, a chat where there is one (what a
    reader of the report expects to see; a tool call's completion is JSON), else the first sample,
    so its ``[system, user]`` is a whole chat request.

    Raises:
        ConfigError: Ollama's rendering of the sample's request differs from the training prompt:
            the Modelfile could not serve what the model learned, so nothing is trained.
    """
    exchanges = [i for i, r in enumerate(records) if _single_exchange(r["messages"])]
    chats = (i for i in exchanges if (records[i].get("metadata") or {}).get("type") in _CHAT_TYPES)
    index = next(chats, exchanges[0] if exchanges else 0)
    record = records[index]
    sent = with_system_prompt(record["messages"], system_prompt)
    prepared = fmt.prepare(sent)
    text, spans = render_with_spans(tokenizer, prepared, fmt)
    if not spans:
        raise ConfigError(f"Training sample {index} of dataset.jsonl has no assistant turn the template renders.")
    start, end = spans[0]
    first_answer = next(i for i, m in enumerate(sent) if m["role"] == "assistant")
    served = fmt.serve(sent[:first_answer])
    trained_prompt = text[:start]
    if fmt.bos + served != trained_prompt:
        raise ConfigError(
            f"The Ollama TEMPLATE for {fmt.label} would serve {served!r} but the model's chat template "
            f"trains {trained_prompt!r}: this base model's template is not the family's published format.")
    meta = record.get("metadata") or {}
    return {"chat_format": fmt.record(), "sample_index": index, "sample_id": meta.get("sample_id"),
            "messages": record["messages"], "prompt": trained_prompt, "completion": text[start:end],
            "served_prompt": served}


_CHAT_TYPES = frozenset({"conversation", "chat", "inner_dialogue"})


@dataclass(frozen=True)
class Row:
    """One row of a batch: one example, or several packed back to back."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def pack_examples(examples: Sequence[Example], max_seq_len: int) -> list[Row]:
    """Pack examples, in the given order, into rows of at most ``max_seq_len`` tokens (first fit).

    Position ids restart at 0 for every example, which transformers turns into a block-diagonal
    attention mask, so packed examples never attend to each other. The first label of each
    example is masked so no example is trained to follow its neighbour.
    """
    bins: list[list[Example]] = []
    free: list[int] = []
    for example in examples:
        size = len(example.input_ids)
        target = next((i for i, room in enumerate(free) if room >= size), None)
        if target is None:
            bins.append([example])
            free.append(max_seq_len - size)
        else:
            bins[target].append(example)
            free[target] -= size
    return [_concat(group) for group in bins]


def _concat(group: list[Example]) -> Row:
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for example in group:
        ids.extend(example.input_ids)
        labels.extend([IGNORE_INDEX, *example.labels[1:]])
        positions.extend(range(len(example.input_ids)))
    return Row(ids, labels, positions)


def single_rows(examples: Sequence[Example]) -> list[Row]:
    """One row per example (no packing)."""
    return [Row(list(e.input_ids), list(e.labels), list(range(len(e.input_ids)))) for e in examples]


def plan_epoch(
    examples: Sequence[Example], *, batch_size: int, max_seq_len: int, packing: bool, seed: int, epoch: int
) -> list[list[Row]]:
    """The batches of one epoch, in order: a seeded shuffle, then packing or length grouping.

    Without packing, examples are grouped by length inside windows of 64 batches (as
    ``group_by_length`` does in transformers) so batches hold similar lengths and little padding,
    and the batches themselves are shuffled so long and short ones alternate at random.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(examples)
    rng.shuffle(order)
    if packing:
        rows = pack_examples(order, max_seq_len)
        rng.shuffle(rows)
        return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    window = batch_size * 64
    batches: list[list[Row]] = []
    for start in range(0, len(order), window):
        chunk = sorted(single_rows(order[start : start + window]), key=len, reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def shard_batches(batches: list[list[Row]], rank: int, world_size: int) -> list[list[Row]]:
    """This process's share of the batches; the list is topped up so every rank gets as many."""
    if world_size <= 1:
        return list(batches)
    remainder = len(batches) % world_size
    if remainder:
        batches = batches + batches[: world_size - remainder]
    return batches[rank::world_size]


def padding_counts(batch: Sequence[Row]) -> tuple[int, int]:
    """``(pad tokens, total tokens)`` of a batch once padded to its longest row."""
    width = max(len(row) for row in batch)
    real = sum(len(row) for row in batch)
    return width * len(batch) - real, width * len(batch)


def collate(batch: Sequence[Row], pad_id: int, packed: bool) -> dict[str, Any]:
    """Pad a batch into tensors; packed batches carry position ids and no attention mask.

    Padding of a packed row gets its own run of position ids, so it forms its own (ignored)
    block; unpacked batches use an attention mask as usual.
    """
    import torch

    width = max(len(row) for row in batch)
    ids, labels, positions, mask = [], [], [], []
    for row in batch:
        pad = width - len(row)
        ids.append(row.input_ids + [pad_id] * pad)
        labels.append(row.labels + [IGNORE_INDEX] * pad)
        positions.append(row.position_ids + list(range(pad)))
        mask.append([1] * len(row) + [0] * pad)
    out = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
    if packed:
        out["position_ids"] = torch.tensor(positions)
    else:
        out["attention_mask"] = torch.tensor(mask)
    return out
