"""How long a run will take and what it will cost, before it starts, and how that compared after.

The projection is a FLOPs model, the usual first-order estimate for transformer training:
a full fine-tune costs about ``6 * parameters`` FLOPs per trained token (forward 2N, backward 4N);
LoRA about ``4 * parameters`` (the backward pass still runs through the frozen weights, but no
weight gradients are computed for them); evaluation ``2 * parameters`` per token, twice (before
and after). Time = FLOPs / (GPU bf16 peak * MFU) + a fixed overhead per run (pod start, transfers).
Prices, peaks, MFU and overhead live in ``parameters/gpu_prices.yaml`` and can be overridden.

:func:`compare_with_actual` puts the projection next to what the trainer measured, so the MFU in
the prices file can be tuned from real runs.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from metahuman_lib._io import read_json
from metahuman_lib._yaml import load_yaml
from metahuman_lib.errors import ConfigError

PRICES_ENV_VAR = "METAHUMAN_GPU_PRICES"
CHARS_PER_TOKEN = 3.8
TEMPLATE_TOKENS_PER_MESSAGE = 5
PACKING_FILL = 0.95
FLOPS_PER_TOKEN = {"full": 6.0, "lora": 4.0}


@dataclass(frozen=True)
class Gpu:
    """One GPU type of the prices file."""

    name: str
    price_per_hour: float
    bf16_tflops: float
    memory_gb: float = 0.0


@dataclass(frozen=True)
class GpuPrices:
    """The whole prices file: GPU types, the assumed MFU and the per-run overhead."""

    gpus: dict[str, Gpu] = field(default_factory=dict)
    mfu: float = 0.35
    overhead_minutes: float = 5.0

    def gpu(self, name: str) -> Gpu:
        """The GPU called ``name``; the error lists close names."""
        if name in self.gpus:
            return self.gpus[name]
        close = difflib.get_close_matches(name, list(self.gpus), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else f" Known: {', '.join(sorted(self.gpus))}."
        raise ConfigError(f"Unknown GPU type {name!r} in the GPU prices file.{hint}")


def default_prices_path() -> Path:
    """``$METAHUMAN_GPU_PRICES``, else ``parameters/gpu_prices.yaml`` of this checkout or the cwd."""
    if os.environ.get(PRICES_ENV_VAR):
        return Path(os.environ[PRICES_ENV_VAR])
    for candidate in (Path(__file__).resolve().parents[2] / "parameters" / "gpu_prices.yaml",
                      Path.cwd() / "parameters" / "gpu_prices.yaml"):
        if candidate.exists():
            return candidate
    raise ConfigError(f"No parameters/gpu_prices.yaml found: pass a prices file or set {PRICES_ENV_VAR}.")


def load_gpu_prices(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> GpuPrices:
    """Read a prices file; ``overrides`` (same shape as the file) replace single values."""
    raw = load_yaml(path or default_prices_path()) or {}
    for key, value in (overrides or {}).items():
        if key == "gpus":
            for name, spec in value.items():
                raw.setdefault("gpus", {}).setdefault(name, {}).update(spec)
        else:
            raw[key] = value
    unknown = set(raw) - {"gpus", "mfu", "overhead_minutes"}
    if unknown:
        raise ConfigError(f"Unknown key(s) {sorted(unknown)} in the GPU prices file; known: gpus, mfu, overhead_minutes.")
    gpus = {name: Gpu(name=name, **spec) for name, spec in (raw.get("gpus") or {}).items()}
    return GpuPrices(gpus=gpus, mfu=float(raw.get("mfu", 0.35)), overhead_minutes=float(raw.get("overhead_minutes", 5)))


@dataclass(frozen=True)
class CostEstimate:
    """A projected run. ``hours`` includes evaluation and the fixed overhead; ``train_hours`` does not."""

    gpu: str
    method: str
    model_params_b: float
    samples: int
    tokens_per_epoch: int
    epochs: float
    train_tokens: int
    eval_tokens: int
    steps: int
    train_hours: float
    hours: float
    dollars: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def estimate_tokens(records: Iterable[dict[str, Any]], tokenizer: Any = None,
                    chars_per_token: float = CHARS_PER_TOKEN) -> tuple[int, int]:
    """``(tokens, samples)`` of JSONL sample records: exact with a tokenizer, else from characters."""
    tokens = samples = 0
    for record in records:
        samples += 1
        messages = record["messages"]
        if tokenizer is not None:
            tokens += len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
        else:
            chars = sum(len(m["content"]) for m in messages)
            tokens += math.ceil(chars / chars_per_token) + TEMPLATE_TOKENS_PER_MESSAGE * len(messages)
    return tokens, samples


def model_params_billions(base_model: str) -> float:
    """Parameters in billions: a local folder's weights, the architecture table of the common bases
    (``Qwen/Qwen3-14B`` -> 14.77), else the name (``Some/Model-7B`` -> 7)."""
    from metahuman_lib.training.memory_plan import ARCHITECTURES

    folder = Path(base_model)
    if folder.is_dir():
        return count_local_parameters(folder) / 1e9
    if base_model in ARCHITECTURES:
        return ARCHITECTURES[base_model].params / 1e9
    match = re.search(r"(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", base_model)
    if match:
        return float(match.group(1))
    match = re.search(r"(\d+(?:\.\d+)?)\s*[mM](?![a-zA-Z])", base_model)
    if match:
        return float(match.group(1)) / 1000
    raise ConfigError(f"Cannot tell the size of {base_model!r} from its name: pass model_params_b.")


def count_local_parameters(folder: Path, *, missing_ok: bool = False) -> int:
    """Parameters stored in a folder's ``*.safetensors`` files (read from their headers only)."""
    from safetensors import safe_open

    total = 0
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                total += math.prod(handle.get_slice(key).get_shape())
    if not total and not missing_ok:
        raise ConfigError(f"No *.safetensors weights in {folder}: pass model_params_b.")
    return total


def project_cost(tokens_per_epoch: int, samples: int, *, method: str, model_params_b: float, gpu: str,
                 epochs: float = 3.0, batch_size: int = 4, grad_accum: int = 8, max_seq_len: int = 2048,
                 packing: bool = True, eval_tokens: int = 0, prices: GpuPrices | None = None,
                 gradient_checkpointing: bool = False) -> CostEstimate:
    """Project tokens, optimizer steps, GPU-hours and dollars for one run on one GPU.

    Gradient checkpointing runs each forward pass twice: a third more FLOPs per trained token.
    """
    if method not in FLOPS_PER_TOKEN:
        raise ConfigError(f"method must be one of {', '.join(FLOPS_PER_TOKEN)}; got {method!r}.")
    prices = prices or load_gpu_prices()
    card = prices.gpu(gpu)
    rows = math.ceil(tokens_per_epoch / (max_seq_len * PACKING_FILL)) if packing else samples
    steps = math.ceil(math.ceil(rows / batch_size) / grad_accum * epochs)
    train_tokens = round(tokens_per_epoch * epochs)
    params = model_params_b * 1e9
    throughput = card.bf16_tflops * 1e12 * prices.mfu
    flops_per_token = FLOPS_PER_TOKEN[method] + (2.0 if gradient_checkpointing else 0.0)
    train_hours = flops_per_token * params * train_tokens / throughput / 3600
    eval_hours = 2 * 2.0 * params * eval_tokens / throughput / 3600
    hours = train_hours + eval_hours + prices.overhead_minutes / 60
    return CostEstimate(gpu=card.name, method=method, model_params_b=model_params_b, samples=samples,
                        tokens_per_epoch=tokens_per_epoch, epochs=epochs, train_tokens=train_tokens,
                        eval_tokens=eval_tokens, steps=steps, train_hours=round(train_hours, 6),
                        hours=round(hours, 6), dollars=round(hours * card.price_per_hour, 2))


def project_run(run_dir: Path, gpu: str, *, prices: GpuPrices | None = None,
                model_params_b: float | None = None, tokenizer: Any = None,
                gradient_checkpointing: bool | None = None) -> CostEstimate:
    """Project the cost of a prepared run folder (its dataset, eval sets and train_config.json)."""
    from metahuman_lib.training.config import read_train_config
    from metahuman_lib.training.train import (
        DATASET_NAME,
        EVAL_OLD_NAME,
        EVAL_RECENT_NAME,
        read_records,
    )

    run_dir = Path(run_dir)
    config = read_train_config(run_dir)
    tokens, samples = estimate_tokens(read_records(run_dir / DATASET_NAME), tokenizer)
    eval_tokens = sum(estimate_tokens(read_records(run_dir / name), tokenizer)[0]
                      for name in (EVAL_RECENT_NAME, EVAL_OLD_NAME))
    size = model_params_b if model_params_b is not None else model_params_billions(config.base_model)
    return project_cost(tokens, samples, method=config.method, model_params_b=size, gpu=gpu,
                        epochs=config.epochs, batch_size=config.batch_size, grad_accum=config.grad_accum,
                        max_seq_len=config.max_seq_len, packing=config.packing, eval_tokens=eval_tokens,
                        prices=prices, gradient_checkpointing=config.gradient_checkpointing
                        if gradient_checkpointing is None else gradient_checkpointing)


def compare_with_actual(run_dir: Path, *, gpu: str | None = None, prices: GpuPrices | None = None,
                        model_params_b: float | None = None) -> pd.DataFrame:
    """Projected vs measured tokens, steps, training hours and dollars of a finished run.

    The GPU defaults to the device the trainer recorded in ``effective_config.json``.
    Measured dollars are the training time at that GPU's price (overhead not included).
    """
    run_dir = Path(run_dir)
    prices = prices or load_gpu_prices()
    metrics = read_json(run_dir / "metrics.json")["train"]
    effective = read_json(run_dir / "effective_config.json")
    gpu = gpu or _price_key(effective["devices"]["device_name"], prices)
    projected = project_run(run_dir, gpu, prices=prices, model_params_b=model_params_b)
    actual_hours = metrics["runtime_s"] / 3600
    rows = [("tokens", projected.train_tokens, metrics["tokens_seen"]),
            ("steps", projected.steps, metrics["steps"]),
            ("train_hours", projected.train_hours, round(actual_hours, 6)),
            ("dollars", round(projected.train_hours * prices.gpu(gpu).price_per_hour, 4),
             round(actual_hours * prices.gpu(gpu).price_per_hour, 4))]
    frame = pd.DataFrame(rows, columns=["measure", "projected", "actual"])
    frame["ratio"] = [a / p if p else None for _m, p, a in rows]
    frame.attrs["gpu"] = gpu
    return frame


def _price_key(device_name: str, prices: GpuPrices) -> str:
    if device_name in prices.gpus:
        return device_name
    close = difflib.get_close_matches(device_name, list(prices.gpus), n=1, cutoff=0.6)
    if close:
        return close[0]
    raise ConfigError(f"The run trained on {device_name!r}, which the GPU prices file does not list: "
                      "add it, or pass gpu=.")
