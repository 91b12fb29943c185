"""MetaHuman Workbench: incremental fine-tuning of a personal LLM on MetaHuman OS memories.

The names below are the public surface that notebooks and scripts use. They are imported on
first use (PEP 562), so ``import metahuman_lib.cli`` or a light submodule does not pay for
pandas and numpy before a command needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from metahuman_lib.curation import CurationOptions, CurationResult, build_samples, system_prompt
    from metahuman_lib.demo import DEMO_END, resolve_profile, write_demo_profile
    from metahuman_lib.errors import (
        BackendError,
        ConfigError,
        MemoryFileError,
        PipelineStepError,
        ProfileError,
        RegistryError,
        WorkbenchError,
    )
    from metahuman_lib.memory import (
        SKIP_REASONS,
        LoadReport,
        MemorySummary,
        SkippedFile,
        load_memories,
        summarize_memories,
    )
    from metahuman_lib.profile import Profile, make_run_label, resolve_root, validate_username
    from metahuman_lib.quality import (
        GateResult,
        QualityGates,
        QualityMetrics,
        evaluate_gates,
        quality_metrics,
        require_gates,
    )
    from metahuman_lib.samples import read_samples_jsonl, write_samples_jsonl

_HOME: dict[str, str] = {
    "BackendError": "metahuman_lib.errors",
    "ConfigError": "metahuman_lib.errors",
    "CurationOptions": "metahuman_lib.curation",
    "CurationResult": "metahuman_lib.curation",
    "DEMO_END": "metahuman_lib.demo",
    "GateResult": "metahuman_lib.quality",
    "LoadReport": "metahuman_lib.memory",
    "MemoryFileError": "metahuman_lib.errors",
    "MemorySummary": "metahuman_lib.memory",
    "PipelineStepError": "metahuman_lib.errors",
    "Profile": "metahuman_lib.profile",
    "ProfileError": "metahuman_lib.errors",
    "QualityGates": "metahuman_lib.quality",
    "QualityMetrics": "metahuman_lib.quality",
    "RegistryError": "metahuman_lib.errors",
    "SKIP_REASONS": "metahuman_lib.memory",
    "SkippedFile": "metahuman_lib.memory",
    "WorkbenchError": "metahuman_lib.errors",
    "build_samples": "metahuman_lib.curation",
    "evaluate_gates": "metahuman_lib.quality",
    "load_memories": "metahuman_lib.memory",
    "make_run_label": "metahuman_lib.profile",
    "quality_metrics": "metahuman_lib.quality",
    "read_samples_jsonl": "metahuman_lib.samples",
    "require_gates": "metahuman_lib.quality",
    "resolve_profile": "metahuman_lib.demo",
    "resolve_root": "metahuman_lib.profile",
    "summarize_memories": "metahuman_lib.memory",
    "system_prompt": "metahuman_lib.curation",
    "validate_username": "metahuman_lib.profile",
    "write_demo_profile": "metahuman_lib.demo",
    "write_samples_jsonl": "metahuman_lib.samples",
}
"""Where each public name lives."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value

__all__ = [
    "DEMO_END",
    "SKIP_REASONS",
    "BackendError",
    "ConfigError",
    "CurationOptions",
    "CurationResult",
    "GateResult",
    "LoadReport",
    "MemoryFileError",
    "MemorySummary",
    "PipelineStepError",
    "Profile",
    "ProfileError",
    "QualityGates",
    "QualityMetrics",
    "RegistryError",
    "SkippedFile",
    "WorkbenchError",
    "__version__",
    "build_samples",
    "evaluate_gates",
    "load_memories",
    "make_run_label",
    "quality_metrics",
    "read_samples_jsonl",
    "require_gates",
    "resolve_profile",
    "resolve_root",
    "summarize_memories",
    "system_prompt",
    "validate_username",
    "write_demo_profile",
    "write_samples_jsonl",
]
