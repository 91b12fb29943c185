"""What to train: the ``training:`` block of a parameter set, as one frozen dataclass.

The launcher writes it to ``train_config.json`` in the run folder; the trainer reads only that
file, so a run can be re-run or resumed from its folder alone. Defaults follow the MetaHuman OS
training settings (spec section 5) where they were sound, and fix the ones that were not
(warm-up is a ratio, not 100 steps; the seed is explicit).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metahuman_lib._io import atomic_write_json, read_json
from metahuman_lib._types import check_types
from metahuman_lib.errors import ConfigError

TRAIN_CONFIG_NAME = "train_config.json"
METHODS = ("lora", "full")
OPTIMIZERS = ("auto", "adamw", "adafactor")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCHEDULERS = ("cosine", "linear", "constant")
DISTRIBUTED = ("ddp", "fsdp")
PARENT_KINDS = ("adapter", "model", "base")
#: ``auto``: every attention, linear-attention and MLP projection the architecture has (resolved
#: from the model's own module names when it is loaded).
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("auto",)
#: Learning rates MetaHuman OS used per method (spec section 5), applied when none is given.
DEFAULT_LEARNING_RATES = {"lora": 3e-4, "full": 5e-6}


@dataclass(frozen=True)
class ParentRef:
    """The registered version a run builds on.

    Attributes:
        version: the registry version number (0 or None for the original base).
        path: local folder of the adapter or model (a hub id only for ``kind="base"``).
        kind: ``adapter`` (a LoRA adapter on ``base_model``), ``model`` (a full checkpoint)
            or ``base`` (the original base model itself).
        sha256: expected checksum of the parent weights; the trainer refuses a mismatch.
    """

    version: int | None = None
    path: str = ""
    kind: str = "base"
    sha256: str | None = None

    def __post_init__(self) -> None:
        _check_choice("parent.kind", self.kind, PARENT_KINDS)
        if self.kind != "base" and not self.path:
            raise ConfigError(f"parent.path is empty for a parent of kind {self.kind!r}: "
                              "give the folder of the previous version's adapter or model.")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run. See docs/training.md for the meaning of each field."""

    base_model: str = "Qwen/Qwen3-14B"
    parent: ParentRef | None = None
    method: str = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS
    optimizer: str = "auto"
    learning_rate: float | None = None
    lr_scheduler: str = "cosine"
    epochs: float = 3.0
    batch_size: int = 4
    grad_accum: int = 8
    max_seq_len: int = 2048
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    precision: str = "auto"
    packing: bool = True
    seed: int = 0
    max_steps: int | None = None
    logging_steps: int = 1
    checkpoint_every_steps: int = 50
    eval_batch_size: int = 4
    eval_train_samples: int = 64
    probe_prompts: tuple[str, ...] = ()
    probe_max_new_tokens: int = 64
    system_prompt: str | None = None
    distributed: str = "ddp"
    gradient_checkpointing: bool = False
    lean_loss: bool = True

    def __post_init__(self) -> None:
        _check_choice("method", self.method, METHODS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("lr_scheduler", self.lr_scheduler, SCHEDULERS)
        _check_choice("distributed", self.distributed, DISTRIBUTED)
        for name in ("lora_r", "lora_alpha", "batch_size", "grad_accum", "max_seq_len",
                     "logging_steps", "checkpoint_every_steps", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"training.{name} must be at least 1, got {getattr(self, name)!r}.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"training.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"training.lora_dropout must be in [0, 1), got {self.lora_dropout!r}.")
        if self.epochs <= 0:
            raise ConfigError(f"training.epochs must be positive, got {self.epochs!r}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"training.max_steps must be at least 1 or null, got {self.max_steps!r}.")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ConfigError(f"training.learning_rate must be positive, got {self.learning_rate!r}.")
        if self.eval_train_samples < 0:
            raise ConfigError("training.eval_train_samples must be 0 or more.")

    @property
    def resolved_learning_rate(self) -> float:
        """The learning rate given, or the method's default (LoRA 3e-4, full 5e-6)."""
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[self.method]

    @property
    def resolved_optimizer(self) -> str:
        """``auto`` means Adafactor for full fine-tunes (memory) and AdamW for LoRA."""
        if self.optimizer != "auto":
            return self.optimizer
        return "adafactor" if self.method == "full" else "adamw"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainConfig:
        """Build a config from the ``training:`` block of a parameter set (or a JSON dict).

        Raises:
            ConfigError: on an unknown key (with the closest known names) or a bad value.
        """
        data = dict(data or {})
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise ConfigError(_unknown_key_message("training", key, known))
        data = check_types("training", cls, data)
        if data.get("parent") is not None:
            data["parent"] = _parent_from_dict(data["parent"])
        for key in ("lora_target_modules", "probe_prompts"):
            if key in data and data[key] is not None:
                value = data[key]
                data[key] = (value,) if isinstance(value, str) else tuple(value)
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"training block has a bad value: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_dict` reads back to an equal config."""
        out = dataclasses.asdict(self)
        out["lora_target_modules"] = list(self.lora_target_modules)
        out["probe_prompts"] = list(self.probe_prompts)
        return out

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated like a new config)."""
        return dataclasses.replace(self, **changes)


def _parent_from_dict(data: Any) -> ParentRef:
    if isinstance(data, ParentRef):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"training.parent must be a mapping with version/path/kind/sha256, got {data!r}.")
    known = [f.name for f in dataclasses.fields(ParentRef)]
    for key in data:
        if key not in known:
            raise ConfigError(_unknown_key_message("training.parent", key, known))
    return ParentRef(**data)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"training.{name} must be one of {', '.join(choices)}; got {value!r}.")


def _unknown_key_message(block: str, key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(key), known, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else f" Known keys: {', '.join(known)}."
    return f"Unknown key {key!r} in the {block} block.{hint}"


def write_train_config(run_dir: Path, config: TrainConfig) -> Path:
    """Write ``train_config.json`` into the run folder (atomically) and return its path."""
    path = Path(run_dir) / TRAIN_CONFIG_NAME
    atomic_write_json(path, config.to_dict())
    return path


def read_train_config(run_dir: Path) -> TrainConfig:
    """Read the run folder's ``train_config.json``; a missing file says which step writes it."""
    path = Path(run_dir) / TRAIN_CONFIG_NAME
    if not path.exists():
        raise ConfigError(f"No {TRAIN_CONFIG_NAME} in {run_dir}: write one with "
                          "metahuman_lib.training.config.write_train_config before training.")
    return TrainConfig.from_dict(read_json(path))
