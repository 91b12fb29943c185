"""The small interface every training backend implements, and the registry of backends.

A backend runs the trainer (``python -m metahuman_lib.training.train RUN_DIR``) on some machine
for a prepared run folder, and brings its outputs back into that folder. The run folder is the
only state: launching a run that is already running re-attaches to it instead of starting a
second job.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from metahuman_lib.errors import ConfigError


@dataclass(frozen=True)
class JobStatus:
    """What the trainer's ``status.json`` says, as a backend last saw it."""

    state: str  # "pending" | "running" | "succeeded" | "failed" | "cancelled"
    phase: str = ""
    step: int = 0
    total_steps: int = 0
    eta_s: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in {"succeeded", "failed", "cancelled"}


class Backend(Protocol):
    """Run the trainer for a run folder somewhere, and bring the results home."""

    name: str

    def launch(self, run_dir: Path) -> JobStatus:
        """Start the trainer for ``run_dir``, or re-attach when it is already running."""

    def poll(self, run_dir: Path) -> JobStatus:
        """The job's current status, without waiting."""

    def wait(self, run_dir: Path, *, progress: bool = True, timeout_s: float | None = None) -> JobStatus:
        """Block until the job finishes (showing progress), fetch outputs, return the final status."""

    def cancel(self, run_dir: Path) -> JobStatus:
        """Stop the job and release every resource it holds."""


# name -> "module:factory"; modules import lazily so RunPod's SDK loads only when it is used.
BACKENDS: dict[str, str] = {
    "local": "metahuman_lib.training.local:LocalBackend",
    "runpod": "metahuman_lib.training.runpod:RunPodBackend",
}


def get_backend(name: str, **options: Any) -> Backend:
    """Build the backend called ``name``; the error lists the available ones."""
    try:
        target = BACKENDS[name]
    except KeyError:
        available = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"Unknown backend {name!r}; available backends: {available}.") from None
    module_name, factory_name = target.split(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    return factory(**options)
