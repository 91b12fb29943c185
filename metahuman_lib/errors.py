"""The workbench's small error family.

Every message says what failed, the bad value, and what to do about it.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class ProfileError(WorkbenchError):
    """A profile folder or username is missing or invalid."""


class MemoryFileError(WorkbenchError):
    """One memory file cannot be read; loaders record it and carry on."""


class ConfigError(WorkbenchError):
    """A parameter, strategy or flag has a bad value."""


class RegistryError(WorkbenchError):
    """The model registry is corrupt, locked, or an operation on it is invalid."""


class BackendError(WorkbenchError):
    """A training backend (local or RunPod) failed."""


class PipelineStepError(WorkbenchError):
    """A step of a run (notebook, gate, training) failed; the run can resume from it."""


class StorageError(WorkbenchError):
    """A file could not be written (a full disk, a read-only folder); the message says what to do."""


class GateRefused(PipelineStepError):
    """A data or promotion gate refused the run (too few samples, a rejected candidate): the run is
    finished, and the next invocation starts a new one instead of resuming it."""


class MissingExtraError(WorkbenchError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"'{module}' is not installed; install the '{extra}' extra: "
            f"pip install 'metahuman-workbench[{extra}]'"
        )
