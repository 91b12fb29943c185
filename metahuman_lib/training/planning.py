"""The memory plan applied to a run folder: which GPU types fit, the settings each needs, and the
guard that refuses a run before anything is rented or downloaded (local and RunPod backends).

The pure model is :mod:`metahuman_lib.training.memory_plan`; this module reads the run's
``train_config.json``, the prices file and (locally) the machine's GPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from metahuman_lib.errors import BackendError, ConfigError
from metahuman_lib.training.config import TrainConfig, read_train_config
from metahuman_lib.training.memory_plan import (
    GB,
    Architecture,
    GpuPlan,
    RunPlan,
    TrainShape,
    architecture_of,
    plan_gpu,
    plan_gpus,
    require_fit,
)

#: Without a GPU, larger models are refused: a CPU would take days and the download alone is large.
CPU_MAX_PARAMETERS = 3e9


def weights_source(config: TrainConfig, run_dir: Path | None = None) -> str:
    """The folder or hub id the trainer loads weights from (a full-model parent, else the base)."""
    parent = config.parent
    if parent is not None and parent.kind == "model" and parent.path:
        path = Path(parent.path)
        if not path.is_absolute() and run_dir is not None:
            path = Path(run_dir) / path
        if (path / "config.json").is_file():
            return str(path)
    return config.base_model


@dataclass(frozen=True)
class PlannedRun:
    """A run folder's architecture, settings and plan per GPU type."""

    arch: Architecture
    shape: TrainShape
    plan: RunPlan

    def table(self) -> Any:
        """One row per GPU type (fitting ones first, cheapest first), for notebooks and the CLI."""
        import pandas as pd

        rows = [p.as_row() for p in self.plan.plans]
        rows += [{"gpu": name, "fits": None, "note": "memory unknown: add it to the GPU prices file"}
                 for name in self.plan.unknown]
        return pd.DataFrame(rows).set_index("gpu")


def plan_run(run_dir: Path, gpus: Iterable[str], prices: Any = None) -> PlannedRun:
    """Plan ``run_dir``'s training on each GPU type of ``gpus`` (offline for the common bases)."""
    from metahuman_lib.training.cost import load_gpu_prices

    config = read_train_config(run_dir)
    prices = prices or load_gpu_prices()
    arch = architecture_of(weights_source(config, run_dir))
    shape = TrainShape.from_train_config(config)
    return PlannedRun(arch, shape, plan_gpus(arch, shape, gpus, prices))


def fitting_plans(planned: PlannedRun, prices: Any = None) -> tuple[GpuPlan, ...]:
    """The GPU types that fit, cheapest first; refuses (ConfigError) when none does."""
    from metahuman_lib.training.cost import load_gpu_prices

    return require_fit(planned.plan, planned.arch, planned.shape, prices or load_gpu_prices())


def apply_plan(config: TrainConfig, gpu_plan: GpuPlan) -> TrainConfig:
    """The config with the plan's micro-batch, accumulation and checkpointing (same effective batch)."""
    shape = gpu_plan.shape
    return config.replace(batch_size=shape.micro_batch, grad_accum=shape.grad_accum,
                          gradient_checkpointing=shape.checkpointing)


def _local_gpu() -> tuple[str, float] | None:
    """(name, memory in GB) of this machine's first CUDA GPU, or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return props.name, props.total_memory / GB


def _system_memory_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB


def guard_local(run_dir: Path, *, gpu: tuple[str, float] | None | str = "detect") -> GpuPlan | None:
    """Refuse a local run this machine cannot hold, before any weight is downloaded.

    With a GPU, the plan must fit its memory (and is returned, to be applied). Without one, a model
    over :data:`CPU_MAX_PARAMETERS` or a plan larger than 80% of the machine's memory is refused.
    A model whose architecture is unknown offline is let through (nothing to judge it by).

    Raises:
        BackendError: the run cannot train here; the message suggests ``--backend runpod`` or a
            smaller ``--base-model``.
    """
    config = read_train_config(run_dir)
    source = weights_source(config, run_dir)
    try:
        arch = architecture_of(source, fetch=False)
    except ConfigError:
        return None
    shape = TrainShape.from_train_config(config)
    device = _local_gpu() if gpu == "detect" else gpu
    advice = "train it on a rented GPU with --backend runpod, or pick a smaller --base-model"
    if device is None:
        needed = plan_gpu(arch, replace(shape, precision="fp32"), "cpu", _system_memory_gb() * 0.8)
        if arch.params > CPU_MAX_PARAMETERS or not needed.fits:
            raise BackendError(f"{source} has {arch.params / 1e9:.1f}B parameters and this machine has no GPU "
                               f"(a CPU run would need about {needed.estimate.total / GB:.0f} GB and days): "
                               f"{advice}. Nothing was downloaded.")
        return None
    name, memory_gb = device
    plan = plan_gpu(arch, shape, name, memory_gb)
    if not plan.fits:
        raise BackendError(f"{source} ({shape.method}) needs {plan.estimate.total / GB:.1f} GB of GPU memory even at "
                           f"micro-batch 1 with gradient checkpointing; this machine's {name} has "
                           f"{memory_gb:.0f} GB: {advice}. Nothing was downloaded.")
    return plan
