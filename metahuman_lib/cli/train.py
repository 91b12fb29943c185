"""``metahuman train`` and ``metahuman train-cost``: run the trainer through a backend, project cost.

Argument parsing and printing only; the work is done by :mod:`metahuman_lib.training`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metahuman_lib.errors import BackendError


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
    gpu: Annotated[list[str] | None, typer.Option(help="GPU types (repeat the option; default: the run's runpod.gpu_types).")] = None,
    model_params_b: float = typer.Option(None, help="Model size in billions when the name does not say."),
) -> None:
    """For each GPU type: whether RUN_DIR fits (memory plan) and its projected tokens, hours and dollars."""
    from metahuman_lib.training.cost import load_gpu_prices, project_run
    from metahuman_lib.training.planning import plan_run
    from metahuman_lib.training.runpod_config import RunPodConfig, run_runpod_block

    prices = load_gpu_prices()
    gpus = [prices.gpu(name).name for name in gpu] if gpu else \
        list(RunPodConfig.from_dict(run_runpod_block(run_dir)).gpu_types)
    planned = plan_run(run_dir, gpus, prices)
    typer.echo(f"{planned.arch.name}: {planned.arch.params / 1e9:.1f}B parameters, {planned.shape.method}, "
               f"{planned.shape.seq_len} tokens, effective batch {planned.shape.effective_batch}")
    for plan in planned.plan.plans:
        gb = plan.estimate.as_gb()
        parts = ", ".join(f"{name} {gb[name]:.1f}" for name in
                          ("weights", "gradients", "optimizer", "activations", "logits", "overhead"))
        if plan.fits:
            estimate = project_run(run_dir, plan.gpu, prices=prices, model_params_b=model_params_b,
                                   gradient_checkpointing=plan.shape.checkpointing)
            verdict = (f"fits: micro-batch {plan.shape.micro_batch} x {plan.shape.grad_accum}, checkpointing "
                       f"{'on' if plan.shape.checkpointing else 'off'}; {estimate.train_tokens} tokens, "
                       f"{estimate.steps} steps, {estimate.hours:.2f} h, ${estimate.dollars:.2f}")
        else:
            verdict = f"does not fit ({plan.note})"
        typer.echo(f"{plan.gpu} ({plan.memory_gb:g} GB): {gb['total']:.1f} GB [{parts}] -> {verdict}")
    for name in planned.plan.unknown:
        typer.echo(f"{name}: memory unknown; add it to the GPU prices file to plan it")
