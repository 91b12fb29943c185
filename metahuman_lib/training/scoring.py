"""Mean assistant-token loss and perplexity of a model on a set of examples, and probe answers.

The same measure is taken before and after training, on eval_recent (learning), eval_old
(forgetting, also per month) and a fixed sample of the train set, so ``after - before`` is a
fair comparison. Under DDP every process scores its share and the sums are gathered.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from metahuman_lib.chat_formats import CHATML, ChatFormat
from metahuman_lib.training.data import IGNORE_INDEX, Example, collate, single_rows


def loss_sums(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Per-row summed next-token loss over labelled positions, and per-row token counts."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    losses = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                             ignore_index=IGNORE_INDEX, reduction="none").view(shift_labels.shape)
    counts = (shift_labels != IGNORE_INDEX).sum(dim=1)
    return losses.sum(dim=1), counts


def score_examples(model: Any, examples: Sequence[Example], *, batch_size: int, pad_id: int,
                   accelerator: Any) -> list[tuple[float, int, str]]:
    """``(loss sum, tokens, month)`` for every example, gathered from all processes."""
    import torch
    from accelerate.utils import gather_object

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    mine = order[accelerator.process_index :: accelerator.num_processes]
    results: list[tuple[float, int, str]] = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            chunk = [examples[i] for i in mine[start : start + batch_size]]
            batch = {k: v.to(accelerator.device) for k, v in collate(single_rows(chunk), pad_id, False).items()}
            with accelerator.autocast():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            sums, counts = loss_sums(logits, batch["labels"])
            results.extend((float(s), int(c), e.month) for s, c, e in zip(sums.tolist(), counts.tolist(), chunk))
    model.train(was_training)
    if accelerator.num_processes > 1:
        results = list(gather_object(results))
    return results


def summarize(scores: Sequence[tuple[float, int, str]], by_month: bool = False) -> dict[str, Any]:
    """Aggregate scores into the metrics.json shape: loss, perplexity, tokens, samples (, by_month)."""
    out = _aggregate(scores)
    if by_month:
        months = sorted({month for _s, _c, month in scores})
        out["by_month"] = {month: _aggregate([s for s in scores if s[2] == month]) for month in months}
    return out


def _aggregate(scores: Sequence[tuple[float, int, str]]) -> dict[str, Any]:
    tokens = sum(count for _s, count, _m in scores)
    if not tokens:
        return {"loss": None, "perplexity": None, "tokens": 0, "samples": len(scores)}
    loss = sum(total for total, _c, _m in scores) / tokens
    return {"loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4),
            "tokens": tokens, "samples": len(scores)}


def stop_token_ids(tokenizer: Any, fmt: ChatFormat) -> list[int]:
    """The ids that end an answer: the format's end-of-turn markers found in the vocabulary, and EOS."""
    vocab = tokenizer.get_vocab()
    ids = [vocab[marker] for marker in fmt.stop if marker in vocab]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[str], *, system_prompt: str | None,
                     max_new_tokens: int, device: Any, fmt: ChatFormat = CHATML) -> list[str]:
    """Greedy answers to probe prompts, rendered exactly as training rendered its prompts."""
    import torch

    from metahuman_lib.training.data import render, with_system_prompt

    answers = []
    was_training = model.training
    model.eval()
    stops = stop_token_ids(tokenizer, fmt)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    for prompt in prompts:
        messages = fmt.prepare(with_system_prompt([{"role": "user", "content": prompt}], system_prompt))
        text = render(tokenizer, messages, fmt, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad_id, eos_token_id=stops)
        answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    model.train(was_training)
    return answers
