"""``metahuman fine-tune-cycle`` (the monthly job) and ``metahuman demo`` (it, twice, on the demo)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import typer

from metahuman_lib.profile import Profile

if TYPE_CHECKING:  # the command modules import the library when run, so every command starts fast
    from metahuman_lib.parameters import RunParameters


def fine_tune_cycle(
    username: str = typer.Option(..., "--username", "-u", help="The MetaHuman OS profile to train."),
    root: str = typer.Option("", "--root", help="MetaHuman OS root (default: $METAHUMAN_ROOT or .)."),
    monthly: bool = typer.Option(False, "--monthly", help="Monthly update: 30 days recent + 3,000 old."),
    days_recent: int | None = typer.Option(None, "--days-recent", help="Recent window in days."),
    old_samples: int | None = typer.Option(None, "--old-samples", help="Old samples to mix in."),
    max_samples: int | None = typer.Option(None, "--max", help="Maximum total samples."),
    mode: str | None = typer.Option(None, "--mode", help="Keep one cognitive mode: dual, emulation, agent."),
    base_model: str | None = typer.Option(None, "--base-model", help="Train from this model instead of "
                                          "the registry's current version."),
    backend: str = typer.Option("local", "--backend", help="Where training runs: local or runpod."),
    params: str | None = typer.Option(None, "--params", help="Parameter set name or YAML file."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of every random choice."),
    now: str | None = typer.Option(None, "--now", help="Run as of this UTC date/time (ISO 8601)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Do everything but training."),
    redact: bool = typer.Option(False, "--redact", help="Reports without memory text."),
    resume: str | None = typer.Option(None, "--resume", help="Resume this run folder from its failed step."),
    new_run: bool = typer.Option(False, "--new-run", help="Start a new run even when the latest run "
                                 "with the same parameters is unfinished."),
    show_parameters: bool = typer.Option(False, "--show-parameters", help="Print the resolved "
                                         "parameters as JSON and exit without running."),
    quiet: bool = typer.Option(False, "--quiet", help="No per-cell progress bars."),
    smoke_test: bool = typer.Option(False, "--smoke-test", help="Train even below the sample-count gate, "
                                    "as a test: the version is labelled a smoke test and never becomes current."),
) -> None:
    """Run the monthly job: quality review, selection, training, evaluation, registry, reports.

    Without a window flag this is the foundation run (every memory); --monthly is 30 days of
    recent memories plus 3,000 old ones.
    """
    from metahuman_lib.errors import ConfigError
    from metahuman_lib.parameters import CycleFlags, resolve_parameters
    from metahuman_lib.pipeline import run_cycle

    if backend not in ("local", "runpod"):
        raise ConfigError(f"Unknown backend {backend!r}; available backends: local, runpod.")
    wall_now = datetime.now(UTC)
    flags = CycleFlags(params=params, monthly=monthly, days_recent=days_recent, old_samples=old_samples,
                       max_samples=max_samples, mode=mode, base_model=base_model, seed=seed, now=now,
                       smoke_test=smoke_test)
    if resume is not None and flags.given():
        raise ConfigError(f"--resume continues a run with the parameters it started with; drop "
                          f"{' '.join(flags.given())}.")
    run_params = resolve_parameters(flags, now=wall_now)
    if show_parameters:
        typer.echo(orjson.dumps(run_params.to_record(), option=orjson.OPT_INDENT_2).decode())
        return
    profile = _profile(username, root)
    result = run_cycle(profile, run_params, backend=backend, now=run_params.now, dry_run=dry_run,
                       redact=redact or _report_redact(run_params), resume_run=Path(resume) if resume else None,
                       progress=not quiet and sys.stderr.isatty(), echo=typer.echo,
                       auto_resume=not new_run)
    typer.echo(f"Run {result.run_dir.name}: {result.status}")
    typer.echo(f"Report:   {result.report}")
    typer.echo(f"All runs: {result.index}")


def demo(
    root: str = typer.Option("demo-root", "--root", help="Folder for the demo MetaHuman OS root."),
    username: str = typer.Option("demo", "--username", help="Demo profile name."),
    quiet: bool = typer.Option(False, "--quiet", help="No per-cell progress bars."),
) -> None:
    """The main job on the demo profile: a foundation run, then the same monthly run a month
    later without replay (it forgets; the gate rejects it) and with replay (promoted)."""
    from metahuman_lib.pipeline import DEMO_RUNS, run_demo
    from metahuman_lib.reports import run_verdict

    profile = Profile.open(username, root)
    results = run_demo(profile, echo=typer.echo, progress=not quiet and sys.stderr.isatty())
    typer.echo("")
    for run, result in zip(DEMO_RUNS, results, strict=True):
        typer.echo(f"{run.name}: {run_verdict(result.run_dir)[1]}\n  {result.report}")
    typer.echo(f"Reports across runs: {results[-1].index}")


def _profile(username: str, root: str) -> Profile:
    """The profile; the demo profile is written on first use (issue 2's resolve_profile)."""
    try:
        from metahuman_lib.demo import resolve_profile
    except ImportError:
        return Profile.open(username, root).require_exists()
    return resolve_profile(username, root).require_exists()


def _report_redact(params: RunParameters) -> bool:
    report = params.report
    return bool(getattr(report, "redact", False) or (isinstance(report, dict) and report.get("redact")))

