"""Will a run fit on a GPU, and with which micro-batch and checkpointing: planned before renting.

A pure model of the peak GPU memory of one training process, split into weights, gradients,
optimizer states, activations, logits and overhead, from the model's architecture (layers, hidden
and intermediate sizes, heads, vocabulary, parameters) and the run's settings (method, precision,
optimizer, sequence length, micro-batch, gradient checkpointing). The architecture comes from a
local folder's ``config.json``, from :data:`ARCHITECTURES` (the common bases, so planning works
offline), or from the hub's ``config.json`` when it is reachable.

How each part is counted (bytes; ``t`` = tokens of one micro-batch):

* weights: bf16/fp16 base 2 per parameter (fp32 4); QLoRA 4-bit about 0.55, embeddings in bf16.
  A full fine-tune keeps fp32 master weights (4) plus the bf16 copies autocast makes (2).
* gradients and optimizer: per trainable parameter, fp32 gradient 4; AdamW 8 (two moments),
  Adafactor about 4 per row and column of each matrix. LoRA's trainable parameters are fp32 (4).
* activations: per token and layer, what autograd keeps for the backward pass in a decoder block:
  ``12h + 10q + 10kv + 8I`` bytes (norms in fp32, projections, attention output, the gated MLP;
  q/kv = query and key-value widths), plus the inputs LoRA dropout copies per adapted projection
  (``15h + 3q + 3I``). Gradient checkpointing keeps one ``2h`` input per layer instead and
  recomputes one layer at a time. One real Qwen3-14B layer with LoRA r16 comes to about 410 KB a
  token (issue 13 measured about 430 KB).
* logits: the chunked cross-entropy the trainer uses keeps at most :data:`LOSS_CHUNK_TOKENS`
  tokens' full-vocabulary logits at once (bf16, fp32 and their gradient: 10 bytes per entry).
* overhead: the CUDA context and workspaces (1.2 GB) and 8% for allocator fragmentation.

:func:`plan_gpu` picks the largest micro-batch that divides the effective batch and fits with a
margin, first without and then with gradient checkpointing; :func:`plan_gpus` orders GPU types by
the cheapest that fits; :func:`require_fit` refuses, naming the memory needed and the smallest GPU
that would do. The benchmark ``benchmarks/train_gpu.py`` compares the estimate with the measured
peak on a real GPU (docs/performance.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from metahuman_lib.errors import ConfigError

GB = 1e9
LOSS_CHUNK_TOKENS = 1024
CONTEXT_BYTES = 1.2 * GB
FRAGMENTATION = 0.08
#: Share of a card's memory a plan may use; the rest is the safety margin.
USABLE_SHARE = 0.90


@dataclass(frozen=True)
class Architecture:
    """The facts of a decoder-only transformer that decide its training memory."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    params: float
    tied_embeddings: bool = False

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    def lora_parameters(self, rank: int) -> float:
        """Trainable parameters of a rank-``rank`` LoRA on every attention and MLP projection."""
        h, q, kv, i = self.hidden, self.q_width, self.kv_width, self.intermediate
        per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h)
        return float(rank * per_layer * self.layers)


def _arch(name: str, layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int, vocab: int,
          params_b: float, head_dim: int | None = None, tied: bool = False) -> Architecture:
    return Architecture(name, layers, hidden, intermediate, heads, kv_heads, head_dim or hidden // heads,
                        vocab, params_b * 1e9, tied)


#: Published config.json facts of the common bases (offline planning). Parameters in billions.
ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    _arch("Qwen/Qwen3-0.6B", 28, 1024, 3072, 16, 8, 151936, 0.596, 128, tied=True),
    _arch("Qwen/Qwen3-1.7B", 28, 2048, 6144, 16, 8, 151936, 1.72, 128, tied=True),
    _arch("Qwen/Qwen3-4B", 36, 2560, 9728, 32, 8, 151936, 4.02, 128, tied=True),
    _arch("Qwen/Qwen3-8B", 36, 4096, 12288, 32, 8, 151936, 8.19, 128),
    _arch("Qwen/Qwen3-14B", 40, 5120, 17408, 40, 8, 151936, 14.77, 128),
    _arch("Qwen/Qwen3-32B", 64, 5120, 25600, 64, 8, 151936, 32.76, 128),
    _arch("Qwen/Qwen3.5-9B", 32, 4096, 12288, 16, 4, 248320, 9.65, 256),
    _arch("Qwen/Qwen2.5-7B-Instruct", 28, 3584, 18944, 28, 4, 152064, 7.62),
    _arch("Qwen/Qwen2.5-14B-Instruct", 48, 5120, 13824, 40, 8, 152064, 14.77),
    _arch("meta-llama/Llama-3.2-1B-Instruct", 16, 2048, 8192, 32, 8, 128256, 1.24, 64, tied=True),
    _arch("meta-llama/Llama-3.2-3B-Instruct", 28, 3072, 8192, 24, 8, 128256, 3.21, 128, tied=True),
    _arch("meta-llama/Llama-3.1-8B-Instruct", 32, 4096, 14336, 32, 8, 128256, 8.03),
    _arch("meta-llama/Meta-Llama-3-8B-Instruct", 32, 4096, 14336, 32, 8, 128256, 8.03),
    _arch("meta-llama/Llama-3.1-70B-Instruct", 80, 8192, 28672, 64, 8, 128256, 70.55),
    _arch("meta-llama/Llama-3.3-70B-Instruct", 80, 8192, 28672, 64, 8, 128256, 70.55),
    _arch("google/gemma-2-2b-it", 26, 2304, 9216, 8, 4, 256000, 2.61, 256, tied=True),
    _arch("google/gemma-2-9b-it", 42, 3584, 14336, 16, 8, 256000, 9.24, 256, tied=True),
    _arch("google/gemma-2-27b-it", 46, 4608, 36864, 32, 16, 256000, 27.23, 128, tied=True),
    _arch("google/gemma-3-1b-it", 26, 1152, 6912, 4, 1, 262144, 1.00, 256, tied=True),
    _arch("google/gemma-3-4b-it", 34, 2560, 10240, 8, 4, 262208, 3.88, 256, tied=True),
    _arch("google/gemma-3-12b-it", 48, 3840, 15360, 16, 8, 262208, 11.77, 256, tied=True),
    _arch("google/gemma-3-27b-it", 62, 5376, 21504, 32, 16, 262208, 27.01, 128, tied=True),
    _arch("mistralai/Mistral-7B-Instruct-v0.3", 32, 4096, 14336, 32, 8, 32768, 7.25),
    _arch("mistralai/Mistral-Nemo-Instruct-2407", 40, 5120, 14336, 32, 8, 131072, 12.25, 128),
)}
_ALIASES = {"unsloth/Qwen3.5-9B": "Qwen/Qwen3.5-9B", "Qwen/Qwen3.5-9B-Instruct": "Qwen/Qwen3.5-9B",
            "meta-llama/Meta-Llama-3.1-8B-Instruct": "meta-llama/Llama-3.1-8B-Instruct"}


def architecture_from_config(config: Mapping[str, Any], name: str, params: float | None = None) -> Architecture:
    """Architecture facts from a transformers ``config.json`` (multimodal ones: their text part)."""
    text = config.get("text_config") or config
    try:
        hidden = int(text["hidden_size"])
        heads = int(text["num_attention_heads"])
        arch = Architecture(
            name=name, layers=int(text["num_hidden_layers"]), hidden=hidden,
            intermediate=int(text.get("intermediate_size") or 4 * hidden), heads=heads,
            kv_heads=int(text.get("num_key_value_heads") or heads),
            head_dim=int(text.get("head_dim") or hidden // heads), vocab=int(text["vocab_size"]), params=0.0,
            tied_embeddings=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"config.json of {name} lacks {exc}: cannot plan its memory.") from exc
    if params is None:
        per_layer = arch.hidden * (arch.q_width + 2 * arch.kv_width) + arch.q_width * arch.hidden \
            + 3 * arch.hidden * arch.intermediate
        params = arch.layers * per_layer + arch.vocab * arch.hidden * (1 if arch.tied_embeddings else 2)
    return replace(arch, params=float(params))


def architecture_of(model: str, *, fetch: bool = True) -> Architecture:
    """The architecture of a local folder, a common base, or (with ``fetch``) a hub id's config.json.

    Raises:
        ConfigError: none of those knows the model; the message says how to plan it.
    """
    folder = Path(model)
    if (folder / "config.json").is_file():
        import orjson

        from metahuman_lib.training.cost import count_local_parameters

        params = count_local_parameters(folder, missing_ok=True)
        return architecture_from_config(orjson.loads((folder / "config.json").read_bytes()), model,
                                        float(params) if params else None)
    known = ARCHITECTURES.get(_ALIASES.get(model, model))
    if known is None:
        lowered = {name.lower(): arch for name, arch in ARCHITECTURES.items()}
        known = lowered.get(model.lower())
    if known is not None:
        return replace(known, name=model)
    if fetch:
        fetched = _hub_config(model)
        if fetched is not None:
            return architecture_from_config(fetched, model)
    raise ConfigError(f"The architecture of {model!r} is unknown offline (not a local folder with config.json, "
                      f"not one of the {len(ARCHITECTURES)} common bases, and the hub is not reachable): "
                      "download it to a folder and pass that path as base_model.")


def _hub_config(model: str) -> dict[str, Any] | None:
    """config.json from the hub, or None offline (never waits long: planning must not hang)."""
    import os

    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or not re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        return None
    try:
        import orjson
        from huggingface_hub import hf_hub_download

        return orjson.loads(Path(hf_hub_download(model, "config.json", etag_timeout=5)).read_bytes())
    except Exception:  # noqa: BLE001 - any failure to reach the hub means "unknown offline"
        return None


@dataclass(frozen=True)
class TrainShape:
    """The settings of a run that decide its memory (from ``train_config.json``)."""

    method: str = "lora"
    precision: str = "bf16"
    optimizer: str = "adamw"
    seq_len: int = 2048
    micro_batch: int = 4
    grad_accum: int = 8
    checkpointing: bool = False
    lora_r: int = 16
    lora_dropout: float = 0.05
    qlora: bool = False

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.grad_accum

    @classmethod
    def from_train_config(cls, config: Any) -> TrainShape:
        precision = config.precision if config.precision != "auto" else "bf16"
        return cls(method=config.method, precision=precision, optimizer=config.resolved_optimizer,
                   seq_len=config.max_seq_len, micro_batch=config.batch_size, grad_accum=config.grad_accum,
                   checkpointing=config.gradient_checkpointing, lora_r=config.lora_r,
                   lora_dropout=config.lora_dropout)


@dataclass(frozen=True)
class MemoryEstimate:
    """Projected peak memory of one training process, in bytes, by part."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    overhead: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits + self.overhead

    def as_gb(self) -> dict[str, float]:
        parts = ("weights", "gradients", "optimizer", "activations", "logits", "overhead")
        return {**{p: round(getattr(self, p) / GB, 2) for p in parts}, "total": round(self.total / GB, 2)}


def estimate_memory(arch: Architecture, shape: TrainShape) -> MemoryEstimate:
    """The peak GPU memory of training ``arch`` with ``shape`` (see the module text for each part)."""
    h, q, kv, i = arch.hidden, arch.q_width, arch.kv_width, arch.intermediate
    half = 4 if shape.precision == "fp32" else 2
    embeddings = arch.vocab * h * (1 if arch.tied_embeddings else 2)
    if shape.method == "full":
        trainable = arch.params
        weights = arch.params * (4 + (half if half == 2 else 0))  # fp32 master + autocast copies
    else:
        trainable = arch.lora_parameters(shape.lora_r)
        base = (arch.params - embeddings) * 0.55 + embeddings * 2 if shape.qlora else arch.params * half
        weights = base + trainable * 4
    gradients = trainable * 4
    if shape.optimizer == "adafactor" and shape.method == "full":
        optimizer = 4.0 * (arch.layers * ((h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h))
                           + arch.vocab + h)
    else:
        optimizer = trainable * 8
    tokens = shape.micro_batch * shape.seq_len
    scale = half / 2
    per_layer = (12 * h + 10 * q + 10 * kv + 8 * i) * scale
    if shape.method == "lora" and shape.lora_dropout > 0:
        per_layer += (15 * h + 3 * q + 3 * i) * scale
    if shape.checkpointing:
        activations = tokens * (arch.layers * 2 * h * scale + per_layer)
    else:
        activations = tokens * arch.layers * per_layer
    activations += tokens * h * 2 * scale  # final norm output, the head's input
    logits = min(tokens, LOSS_CHUNK_TOKENS) * arch.vocab * 10
    subtotal = weights + gradients + optimizer + activations + logits
    return MemoryEstimate(weights, gradients, optimizer, activations, logits,
                          CONTEXT_BYTES + FRAGMENTATION * subtotal)


@dataclass(frozen=True)
class GpuPlan:
    """One GPU type's plan: whether the run fits, and with which micro-batch, accumulation and
    checkpointing (same effective batch)."""

    gpu: str
    memory_gb: float
    price_per_hour: float
    fits: bool
    shape: TrainShape
    estimate: MemoryEstimate
    note: str = ""

    def as_row(self) -> dict[str, Any]:
        """A table row for the notebook and ``metahuman train-cost``."""
        return {"gpu": self.gpu, "memory_gb": self.memory_gb, "usd_per_hour": self.price_per_hour,
                "fits": self.fits, "micro_batch": self.shape.micro_batch, "grad_accum": self.shape.grad_accum,
                "checkpointing": self.shape.checkpointing,
                **{f"{k}_gb": v for k, v in self.estimate.as_gb().items()}, "note": self.note}


def _divisors_desc(number: int) -> list[int]:
    return [d for d in range(number, 0, -1) if number % d == 0]


def plan_gpu(arch: Architecture, shape: TrainShape, gpu: str, memory_gb: float, price_per_hour: float = 0.0,
             usable_share: float = USABLE_SHARE) -> GpuPlan:
    """The plan of one GPU: the largest micro-batch (dividing the effective batch, at most the run's)
    that fits without checkpointing, else with it; the smallest setting when nothing fits."""
    budget = memory_gb * GB * usable_share
    effective = shape.effective_batch
    for checkpointing in ((False, True) if not shape.checkpointing else (True,)):
        for micro in _divisors_desc(effective):
            if micro > shape.micro_batch:
                continue
            candidate = replace(shape, micro_batch=micro, grad_accum=effective // micro, checkpointing=checkpointing)
            estimate = estimate_memory(arch, candidate)
            if estimate.total <= budget:
                return GpuPlan(gpu, memory_gb, price_per_hour, True, candidate, estimate)
    smallest = replace(shape, micro_batch=1, grad_accum=effective, checkpointing=True)
    estimate = estimate_memory(arch, smallest)
    return GpuPlan(gpu, memory_gb, price_per_hour, False, smallest, estimate,
                   note=f"needs {estimate.total / GB:.1f} GB at micro-batch 1 with checkpointing; "
                        f"{memory_gb:g} GB x {usable_share:.0%} usable")


@dataclass(frozen=True)
class RunPlan:
    """Every GPU type's plan, the fitting ones first, cheapest first."""

    model: str
    plans: tuple[GpuPlan, ...]
    unknown: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fitting(self) -> tuple[GpuPlan, ...]:
        return tuple(p for p in self.plans if p.fits)

    def for_gpu(self, gpu: str) -> GpuPlan | None:
        return next((p for p in self.plans if p.gpu == gpu), None)


def plan_gpus(arch: Architecture, shape: TrainShape, gpus: Iterable[str], prices: Any) -> RunPlan:
    """Plans for the GPU types in ``gpus`` (names of the prices file); fitting ones ordered by price.

    GPU types the prices file does not list (their memory is unknown) are kept aside in ``unknown``.
    """
    plans, unknown = [], []
    for name in gpus:
        card = prices.gpus.get(name)
        if card is None or not card.memory_gb:
            unknown.append(name)
            continue
        plans.append(plan_gpu(arch, shape, name, card.memory_gb, card.price_per_hour))
    plans.sort(key=lambda p: (not p.fits, p.price_per_hour if p.fits else 0.0))
    return RunPlan(arch.name, tuple(plans), tuple(unknown))


def require_fit(plan: RunPlan, arch: Architecture, shape: TrainShape, prices: Any) -> tuple[GpuPlan, ...]:
    """The fitting plans, cheapest first; refuses with the memory needed and the smallest GPU that fits.

    Raises:
        ConfigError: no GPU type of the run fits (nothing has been rented or downloaded).
    """
    if plan.fitting:
        return plan.fitting
    needed = estimate_memory(arch, replace(shape, micro_batch=1, grad_accum=shape.effective_batch,
                                           checkpointing=True)).total / GB
    tried = ", ".join(f"{p.gpu} ({p.memory_gb:g} GB)" for p in plan.plans) or "none with a known memory size"
    if plan.unknown:
        tried += f"; unknown to the prices file: {', '.join(plan.unknown)}"
    others = sorted((card for card in prices.gpus.values() if card.memory_gb), key=lambda c: c.memory_gb)
    smallest = next((c for c in others if plan_gpu(arch, shape, c.name, c.memory_gb).fits), None)
    would_do = f"the smallest GPU that would do is {smallest.name} ({smallest.memory_gb:g} GB)" if smallest \
        else "no single GPU in the prices file would do: use LoRA, Adafactor or a smaller base model"
    raise ConfigError(f"{plan.model} ({shape.method}, {shape.optimizer}, {shape.seq_len} tokens) needs "
                      f"{needed:.1f} GB of GPU memory even at micro-batch 1 with gradient checkpointing, more "
                      f"than any GPU type of this run has [{tried}]; {would_do}. Nothing was rented.")
