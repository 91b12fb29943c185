"""A tiny Qwen2-style base model for tests and the demo, saved as an ordinary Hugging Face folder.

The model is built from a config (random weights) and its tokenizer is a byte-level BPE trained
on the profile's own text, with the ChatML template. Because it is saved with
``save_pretrained``, the trainer loads it through exactly the same code as ``Qwen/Qwen3-14B`` or
any local path: nothing in the trainer knows it is tiny.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from metahuman_lib.errors import MissingExtraError
from metahuman_lib.samples import SAMPLE_COLUMNS
from metahuman_lib.training.data import CHATML_TEMPLATE

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class TinyModelConfig:
    """Size of the tiny model. The defaults train to a visibly falling loss in a minute on a CPU."""

    vocab_size: int = 1024
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    seed: int = 0


def byte_level_bpe(texts: Iterable[str], vocab_size: int, special_tokens: Iterable[str]) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts`` with ``special_tokens`` first."""
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MissingExtraError("train", exc.name or "tokenizers") from exc

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(list(texts), trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return core


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, wrapped for transformers, with ChatML."""
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MissingExtraError("train", exc.name or "transformers") from exc

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=byte_level_bpe(texts, vocab_size, SPECIAL_TOKENS), eos_token="<|im_end|>",
        pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>"], model_max_length=2048,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_model(out_dir: Path, texts: Iterable[str], config: TinyModelConfig = TinyModelConfig()) -> Path:
    """Train a tokenizer on ``texts``, build a random tiny Qwen2 model, save both to ``out_dir``.

    Returns:
        ``out_dir``, usable anywhere a model id or path is accepted (``base_model``).
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, config.vocab_size)
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(config.seed)
    model = Qwen2ForCausalLM(model_config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with _quiet_progress():
        model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No "Writing model shards" bar for a one-shard file (it is noise in ``make demo``)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def profile_texts(profile: Any) -> list[str]:
    """Every content and response text of a profile's memories (to train the tiny tokenizer)."""
    from metahuman_lib.memory import load_memories

    memories, _report = load_memories(profile)
    texts = [str(text) for text in memories["content"].tolist() if text]
    texts += [str(text) for text in memories["response"].tolist() if isinstance(text, str) and text]
    return texts


_TOPICS = ("the garden", "my bike ride", "the new job", "cooking dinner", "the book club", "a rainy walk",
           "learning piano", "the trip to the coast", "my sister's visit", "the chess game")
_FEELINGS = ("calm", "curious", "tired but happy", "restless", "grateful", "a bit anxious", "energised")
_QUESTIONS = ("How are you feeling today?", "What did you do this afternoon?", "What is on your mind?",
              "Tell me about {topic}.", "What did you think of {topic}?", "Any plans for the weekend?")
_ANSWERS = (
    "Honestly I feel {feeling}. I spent most of the day thinking about {topic}, and it was worth it.",
    "I went out early and {topic} took longer than planned, so I feel {feeling} now.",
    "Mostly {topic}. I keep coming back to it because it makes me feel {feeling}.",
    "I think {topic} went well. I was {feeling} at first, then it all made sense.",
)


def demo_samples(count: int, *, seed: int, end: datetime, months: int = 6) -> pd.DataFrame:
    """Synthetic chat samples in the samples-table format, spread over the last ``months`` months.

    They stand in for a curated demo profile in tests, benchmarks and the launch notebook when
    no run folder is given: short first-person answers with a small, repetitive vocabulary, so a
    tiny model can visibly learn them within a minute.
    """
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware (UTC)")
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        topic, feeling = rng.choice(_TOPICS), rng.choice(_FEELINGS)
        question = rng.choice(_QUESTIONS).format(topic=topic)
        answer = rng.choice(_ANSWERS).format(topic=topic, feeling=feeling)
        when = end - timedelta(days=rng.uniform(0, 30.4 * months))
        memory_id = f"evt-{when.astimezone(UTC):%Y%m%d%H%M%S}{index % 10}"
        mode = "dual" if index % 4 == 0 else "emulation"
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        rows.append({"sample_id": f"{memory_id}#{index}", "memory_id": memory_id, "timestamp": when,
                     "type": "conversation", "mode": mode, "mode_source": "type", "messages": messages,
                     "assistant_text": answer, "word_count": len(answer.split())})
    frame = pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def sample_texts(samples: pd.DataFrame) -> list[str]:
    """All message contents of a samples table (tokenizer training text when there is no profile)."""
    return [m["content"] for messages in samples["messages"] for m in messages]
