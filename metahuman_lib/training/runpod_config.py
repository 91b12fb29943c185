"""The ``runpod:`` block of a parameter set, parsed once into a frozen dataclass.

Everything the RunPod backend may vary lives here (GPU choice, clouds, budget, SSH, polling), so a
run is reproducible from its parameters and nothing about the pod is decided deep inside a
function. The API key is deliberately NOT a field: it comes only from the environment or the
SDK's credentials file (see :mod:`metahuman_lib.training.pods`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from metahuman_lib.errors import ConfigError

#: LoRA fits a 24 GB card; the A100 80GB is the seed's card for full fine-tunes; H100 is the
#: fallback when neither is free. Order matters: the first available one is rented.
DEFAULT_GPU_TYPES: tuple[str, ...] = (
    "NVIDIA GeForce RTX 4090",
    "NVIDIA A100 80GB PCIe",
    "NVIDIA H100 80GB HBM3",
)
CLOUD_TYPES = ("COMMUNITY", "SECURE")

#: RunPod's PyTorch image with CUDA 12.8 and torch 2.8 (what MetaHuman OS's own trainer starts from):
#: recent enough for every supported family (Qwen3.5, Gemma 3).
DEFAULT_IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"
#: Installs exactly the versions recorded in the run's manifest (``{pins}``, from this environment).
DEFAULT_SETUP_COMMAND = "{python} -m pip install --quiet --disable-pip-version-check {pins}"


@dataclass(frozen=True)
class RunPodConfig:
    """How to rent, use and give back a RunPod pod for one training run.

    Attributes:
        gpu_types: GPU type ids tried in order (RunPod's ids, e.g. "NVIDIA A100 80GB PCIe").
        cloud_types: clouds tried for each GPU type, in order (COMMUNITY is cheaper, SECURE
            is the fallback).
        gpu_count: GPUs per pod (the trainer uses accelerate when there are several).
        image: the container image; it must run sshd and read ``PUBLIC_KEY`` (RunPod's do).
        container_disk_gb: the pod's own disk, destroyed with the pod; the person's data lives here.
        min_memory_gb: minimum host RAM.
        network_volume_id: optional RunPod network volume keeping the previous full checkpoint.
        volume_mount_path: where the network volume is mounted in the pod.
        volume_keep_models: full checkpoints kept on the volume (newest first); older ones go.
        max_hourly_usd: skip GPU types whose listed price is higher (None: no limit).
        budget_usd: stop and terminate the run when its cost would pass this.
        budget_hours: stop and terminate the run when the pod has lived this long.
        name_prefix: first word of every pod name, so ``metahuman pods`` can find orphans.
        ssh_key: private key file; its ``.pub`` goes to the pod as ``PUBLIC_KEY``.
        ssh_user: the login on the pod.
        remote_dir: working folder on the pod's container disk.
        python: the Python command on the pod.
        setup_command: shell command run once per pod before training ("" for none);
            ``{python}`` is replaced by :attr:`python`, ``{pins}`` by the recorded package versions.
        trainer_module: the module run as ``python -m MODULE RUN_DIR``.
        ready_timeout_s: how long a pod may take to answer SSH with Python present.
        poll_interval_s: seconds between status polls (and readiness checks).
        connect_timeout_s: SSH connect / banner timeout.
        transfer_retries: attempts per file (and per connection) before a transfer fails.
        retry_delay_s: pause between attempts.
    """

    gpu_types: tuple[str, ...] = DEFAULT_GPU_TYPES
    cloud_types: tuple[str, ...] = CLOUD_TYPES
    gpu_count: int = 1
    image: str = DEFAULT_IMAGE
    container_disk_gb: int = 60
    min_memory_gb: int = 16
    network_volume_id: str | None = None
    volume_mount_path: str = "/workspace"
    volume_keep_models: int = 2
    max_hourly_usd: float | None = None
    budget_usd: float = 10.0
    budget_hours: float = 4.0
    name_prefix: str = "metahuman"
    ssh_key: str = "~/.ssh/id_ed25519"
    ssh_user: str = "root"
    remote_dir: str = "/root/metahuman"
    python: str = "python3"
    setup_command: str = DEFAULT_SETUP_COMMAND
    trainer_module: str = "metahuman_lib.training.train"
    ready_timeout_s: float = 600.0
    poll_interval_s: float = 30.0
    connect_timeout_s: float = 20.0
    transfer_retries: int = 3
    retry_delay_s: float = 5.0

    def __post_init__(self) -> None:
        _check_choices(self)
        _check_positive(self)

    @classmethod
    def from_dict(cls, block: Mapping[str, Any] | None) -> RunPodConfig:
        """Build from the ``runpod:`` block; unknown keys raise with the closest known names."""
        block = dict(block or {})
        known = [f.name for f in fields(cls)]
        for key in block:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=3)
                hint = f"Did you mean: {', '.join(close)}?" if close else f"Known keys: {', '.join(known)}."
                raise ConfigError(f"Unknown key 'runpod.{key}'. {hint}")
        for key in ("gpu_types", "cloud_types"):
            if key in block:
                block[key] = _as_tuple(key, block[key])
        return cls(**block)

    def with_overrides(self, **changes: Any) -> RunPodConfig:
        """A copy with some fields changed, validated like :meth:`from_dict`."""
        merged = {f.name: getattr(self, f.name) for f in fields(self)}
        merged.update(changes)
        return RunPodConfig.from_dict(merged)


def _as_tuple(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"'runpod.{key}' must be a list of names, got {value!r}.")
    return tuple(value)


def _check_choices(config: RunPodConfig) -> None:
    if not config.gpu_types:
        raise ConfigError("'runpod.gpu_types' is empty: list at least one GPU type, e.g. 'NVIDIA A100 80GB PCIe'.")
    if not config.cloud_types:
        raise ConfigError("'runpod.cloud_types' is empty: use COMMUNITY, SECURE or both.")
    for cloud in config.cloud_types:
        if cloud not in CLOUD_TYPES:
            raise ConfigError(f"'runpod.cloud_types' has {cloud!r}; use COMMUNITY or SECURE.")
    if not config.name_prefix.replace("-", "").isalnum():
        raise ConfigError(
            f"'runpod.name_prefix' is {config.name_prefix!r}; use letters, digits and '-' only."
        )


def _check_positive(config: RunPodConfig) -> None:
    for name in ("budget_usd", "budget_hours", "ready_timeout_s", "poll_interval_s",
                 "connect_timeout_s", "gpu_count", "transfer_retries", "volume_keep_models"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"'runpod.{name}' must be a positive number, got {value!r}.")
    if config.max_hourly_usd is not None and config.max_hourly_usd <= 0:
        raise ConfigError(f"'runpod.max_hourly_usd' must be positive, got {config.max_hourly_usd!r}.")
    if config.retry_delay_s < 0:
        raise ConfigError(f"'runpod.retry_delay_s' must be zero or more, got {config.retry_delay_s!r}.")


def run_runpod_block(run_dir: Path) -> dict[str, Any]:
    """The ``runpod:`` block a run folder was started with: ``parameters.json`` (written by the
    pipeline), else the manifest's ``cycle.parameters``; empty (the defaults) for a hand-made run."""
    import orjson

    run_dir = Path(run_dir)
    for path, keys in ((run_dir / "parameters.json", ("blocks",)),
                       (run_dir / "manifest.json", ("cycle", "parameters", "blocks"))):
        try:
            data: Any = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        for key in keys:
            data = data.get(key) if isinstance(data, dict) else None
        if isinstance(data, dict):
            block = data.get("runpod")
            return dict(block) if isinstance(block, dict) else {}
    return {}
