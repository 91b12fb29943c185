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
