"""Shared builders for the training tests: one tiny model per session, hand-made run folders."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from metahuman_lib.samples import write_samples_jsonl
from metahuman_lib.training.config import TrainConfig, write_train_config
from metahuman_lib.training.tiny import (
    TinyModelConfig,
    build_tiny_model,
    demo_samples,
    sample_texts,
)

END = datetime(2026, 11, 1, tzinfo=UTC)
_CACHE: dict[str, Path] = {}


def tiny_model(tmp_path_factory: Any) -> Path:
    """The session's tiny model folder (2 layers, hidden 64), built on first use only."""
    if "model" not in _CACHE:
        texts = sample_texts(demo_samples(400, seed=7, end=END))
        folder = tmp_path_factory.mktemp("tiny-model")
        _CACHE["model"] = build_tiny_model(folder, texts, TinyModelConfig(vocab_size=1024))
    return _CACHE["model"]


def hand_samples(count: int, seed: int = 1) -> pd.DataFrame:
    """Demo-like samples (the samples-table format) for run folders."""
    return demo_samples(count, seed=seed, end=END)


def make_run(run_dir: Path, base_model: Path | str, *, train: int = 48, eval_recent: int = 12,
             eval_old: int = 12, **config: Any) -> TrainConfig:
    """A run folder as selection would write it, with a small LoRA config unless overridden."""
    samples = hand_samples(train + eval_recent + eval_old)
    write_samples_jsonl(samples.iloc[eval_old : eval_old + train], run_dir / "dataset.jsonl")
    write_samples_jsonl(samples.iloc[eval_old + train :], run_dir / "eval_recent.jsonl")
    write_samples_jsonl(samples.iloc[:eval_old], run_dir / "eval_old.jsonl")
    settings = {"base_model": str(base_model), "lora_r": 4, "lora_alpha": 8, "learning_rate": 5e-3, "epochs": 1,
                "batch_size": 4, "grad_accum": 2, "max_seq_len": 128, "eval_batch_size": 16,
                "eval_train_samples": 16, "checkpoint_every_steps": 2}
    settings.update(config)
    train_config = TrainConfig.from_dict(settings)
    write_train_config(run_dir, train_config)
    return train_config
