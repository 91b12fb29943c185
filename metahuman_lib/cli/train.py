"""``metahuman train`` and ``metahuman train-cost``: run the trainer through a backend, project cost.

Argument parsing and printing only; the work is done by :mod:`metahuman_lib.training`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metahuman_lib.errors import BackendError

DEFAULT_GPUS = ("NVIDIA GeForce RTX 4090", "NVIDIA A100 80GB PCIe")


def train(
    run_dir: Annotated[Path, typer.Argument(help="A prepared run folder (dataset, eval sets, train_config.json).")],
    backend: str = typer.Option("local", help="Where to train: local or runpod."),
    processes: str = typer.Option("auto", help="Local backend: processes (one per GPU with 'auto')."),
    wait: bool = typer.Option(True, help="Follow the run until it finishes (--no-wait returns at once)."),
    cancel: bool = typer.Option(False, help="Cancel the run instead of launching it."),
    timeout_s: float = typer.Option(None, help="Stop following after this many seconds."),
) -> None:
    """Launch (or re-attach to) the trainer for RUN_DIR and follow it."""
    from metahuman_lib.training.backend import get_backend

    options = {"num_processes": processes} if backend == "local" else {}
    runner = get_backend(backend, **options)
    if cancel:
        status = runner.cancel(run_dir)
    else:
        status = runner.launch(run_dir)
        if wait:
            status = runner.wait(run_dir, progress=True, timeout_s=timeout_s)
    typer.echo(f"{run_dir}: {status.state} ({status.phase}) step {status.step}/{status.total_steps}")
    if status.state == "failed":
        raise BackendError(f"Training failed: {status.error}")


def train_cost(
    run_dir: Annotated[Path, typer.Argument(help="A prepared run folder.")],
    gpu: Annotated[list[str] | None, typer.Option(help="GPU types (repeat the option).")] = None,
    model_params_b: float = typer.Option(None, help="Model size in billions when the name does not say."),
) -> None:
    """Project tokens, steps, GPU-hours and dollars of RUN_DIR on each GPU type."""
    from metahuman_lib.training.cost import load_gpu_prices, project_run

    prices = load_gpu_prices()
    for name in gpu or list(DEFAULT_GPUS):
        estimate = project_run(run_dir, name, prices=prices, model_params_b=model_params_b)
        typer.echo(f"{name}: {estimate.train_tokens} tokens, {estimate.steps} steps, "
                   f"{estimate.hours:.2f} h, ${estimate.dollars:.2f}")
