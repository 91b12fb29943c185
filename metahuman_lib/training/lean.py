"""Training that fits: the loss without a whole batch of full-vocabulary fp32 logits, TF32, SDPA.

With Qwen3's 151,936-token vocabulary, the logits of 8,192 tokens in fp32 are 5 GB, and their
gradient as much again. :func:`loss_sums` runs the decoder, then the head and the cross-entropy
over :data:`CHUNK_TOKENS` positions at a time, each chunk recomputed in the backward pass
(``torch.utils.checkpoint``), so at most one chunk's logits are alive. On a CUDA GPU with
``liger-kernel`` installed, Liger's fused linear cross-entropy does the same in one kernel.
Gemma's final logit soft-capping is applied exactly as its model does. The result equals the
plain path (``model(...).logits`` then cross-entropy) up to float rounding; the tests check it.

Under several processes (DDP) the plain path is used: the decoder must be called through the
DDP wrapper for its gradient hooks.
"""

from __future__ import annotations

from typing import Any

CHUNK_TOKENS = 1024
IGNORE_INDEX = -100


def lm_parts(model: Any) -> tuple[Any, Any, float | None] | None:
    """(decoder, output head, final logit soft-cap) of a causal LM (through a PEFT wrapper), or None
    when the model does not expose them (then the plain path is used)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    get_decoder = getattr(base, "get_decoder", None)
    get_head = getattr(base, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    try:
        decoder, head = get_decoder(), get_head()
    except AttributeError:  # an architecture transformers cannot split: the plain path
        return None
    if decoder is None or decoder is base or head is None or getattr(head, "bias", None) is not None:
        return None
    config = getattr(base, "config", None)
    text = getattr(config, "text_config", None) or config
    return decoder, head, getattr(text, "final_logit_softcapping", None)


def _chunk_loss(hidden: Any, weight: Any, labels: Any, softcap: float | None) -> Any:
    import torch.nn.functional as F

    logits = F.linear(hidden, weight).float()
    if softcap:
        logits = (logits / softcap).tanh() * softcap
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_loss_sum(hidden: Any, weight: Any, labels: Any, *, softcap: float | None = None,
                     chunk_tokens: int = CHUNK_TOKENS) -> Any:
    """Summed next-token cross-entropy of ``hidden`` [B, T, H] under the head ``weight`` [V, H],
    ``labels`` [B, T] (shifted here), one recomputed chunk of positions at a time."""
    import torch
    from torch.utils.checkpoint import checkpoint

    flat_hidden = hidden[:, :-1, :].reshape(-1, hidden.size(-1))
    flat_labels = labels[:, 1:].reshape(-1)
    keep = (flat_labels != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    flat_hidden, flat_labels = flat_hidden.index_select(0, keep), flat_labels.index_select(0, keep)
    total = torch.zeros((), device=hidden.device, dtype=torch.float32)
    for start in range(0, flat_labels.numel(), chunk_tokens):
        end = start + chunk_tokens
        total = total + checkpoint(_chunk_loss, flat_hidden[start:end], weight, flat_labels[start:end], softcap,
                                   use_reentrant=False)
    return total


def _liger_loss_sum(hidden: Any, weight: Any, labels: Any, softcap: float | None) -> Any | None:
    """Liger's fused linear cross-entropy (CUDA, when installed), else None."""
    if hidden.device.type != "cuda":
        return None
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return None
    loss = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum", softcap=softcap)
    flat_hidden = hidden[:, :-1, :].reshape(-1, hidden.size(-1))
    return loss(weight, flat_hidden, labels[:, 1:].reshape(-1))


def loss_sum(model: Any, inputs: dict[str, Any], labels: Any, *, lean: bool = True) -> tuple[Any, str]:
    """The batch's summed assistant-token loss, and which path computed it (``plain``, ``chunked``,
    ``liger``). ``lean=False`` or a model without separable parts takes the plain path."""
    from metahuman_lib.training.scoring import loss_sums

    parts = lm_parts(model) if lean else None
    if parts is None:
        logits = model(**inputs, use_cache=False).logits
        return loss_sums(logits, labels)[0].sum(), "plain"
    decoder, head, softcap = parts
    hidden = decoder(**inputs, use_cache=False).last_hidden_state
    fused = _liger_loss_sum(hidden, head.weight, labels, softcap)
    if fused is not None:
        return fused, "liger"
    return chunked_loss_sum(hidden, head.weight, labels, softcap=softcap), "chunked"


def enable_fast_math() -> dict[str, Any]:
    """TF32 matmuls and convolutions on NVIDIA GPUs (Ampere and newer); what was set, for the record."""
    import torch

    if not torch.cuda.is_available():
        return {"tf32": False}
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return {"tf32": True}


def attention_implementation() -> str:
    """FlashAttention 2 on a CUDA GPU where it is installed, else PyTorch's SDPA: both take packed
    rows without padding (position ids restart per sample)."""
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"
