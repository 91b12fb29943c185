"""One tiny random-weight model per real family, built once per session (see tiny_families)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _helpers_training import END

from metahuman_lib.training.tiny import demo_samples, sample_texts
from metahuman_lib.training.tiny_families import FAMILIES, build_family_model

_CACHE: dict[str, Path] = {}
FAMILY_NAMES = tuple(FAMILIES)
#: The chat format each family's model is recognised as.
EXPECTED_FORMAT = {"qwen3": "qwen3", "qwen3.5": "qwen3", "llama3": "llama3.1", "gemma2": "gemma",
                   "gemma3": "gemma", "mistral": "mistral"}


def family_model(tmp_path_factory: Any, family: str) -> Path:
    """The session's tiny model of ``family``."""
    if family not in _CACHE:
        texts = sample_texts(demo_samples(300, seed=3, end=END))
        _CACHE[family] = build_family_model(family, tmp_path_factory.mktemp(f"family-{family}"), texts)
    return _CACHE[family]
