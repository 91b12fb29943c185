"""MetaHuman Workbench: incremental fine-tuning of a personal LLM on MetaHuman OS memories.

The names below are the public surface that notebooks and scripts use.
"""

from __future__ import annotations

__version__ = "0.1.0"

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

__all__ = [
    "__version__",
    "BackendError",
    "ConfigError",
    "MemoryFileError",
    "PipelineStepError",
    "Profile",
    "ProfileError",
    "RegistryError",
    "WorkbenchError",
    "make_run_label",
    "read_samples_jsonl",
    "resolve_root",
    "validate_username",
    "write_samples_jsonl",
    "DEMO_END",
    "SKIP_REASONS",
    "LoadReport",
    "MemorySummary",
    "SkippedFile",
    "load_memories",
    "resolve_profile",
    "summarize_memories",
    "write_demo_profile",
    "CurationOptions",
    "CurationResult",
    "GateResult",
    "QualityGates",
    "QualityMetrics",
    "build_samples",
    "evaluate_gates",
    "quality_metrics",
    "require_gates",
    "system_prompt",
]
