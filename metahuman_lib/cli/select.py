"""``metahuman strategies`` and ``metahuman select``: list strategies, choose a run's samples.

Argument parsing and printing only; the work is done by :mod:`metahuman_lib.strategies` and
:mod:`metahuman_lib.selection`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from metahuman_lib.curation import build_samples
from metahuman_lib.demo import resolve_profile
from metahuman_lib.memory import load_memories

if TYPE_CHECKING:  # the command modules import the library when run, so every command starts fast
    from metahuman_lib.selection import Selection

_ROOT_HELP = "MetaHuman OS root (holds profiles/ and etc/); default $METAHUMAN_ROOT or the current folder."


def strategies(
    show: str = typer.Option("", "--show", help="Print the selection block of this strategy."),
) -> None:
    """List the selection strategies (parameter sets), or show one."""
    from metahuman_lib.strategies import list_strategies, load_strategy, read_parameter_set

    if show:
        strategy = load_strategy(show)
        typer.echo(f"{strategy.name}: {strategy.description}")
        for key, value in strategy.to_dict().items():
            if key not in ("name", "description"):
                typer.echo(f"  {key}: {value}")
        return
    for name in list_strategies():
        typer.echo(f"{name:14s} {read_parameter_set(name).get('description', '')}")


def format_selection(selection: Selection) -> str:
    """The counts ``metahuman select`` prints, one per line."""
    counts = selection.counts
    window = "all (foundation)" if selection.cutoff is None else f"since {selection.cutoff:%Y-%m-%d %H:%M} UTC"
    lines = [
        f"strategy {selection.strategy.name!r}, seed {selection.seed}, now {selection.now:%Y-%m-%d %H:%M} UTC",
        f"recent window: {window}",
        (f"recent: {counts.recent_available} available, {counts.recent_selected} selected, "
         f"{counts.recent_dropped_by_max} dropped by max, {counts.eval_recent} held out"),
        (f"old: {counts.old_available} available, {counts.old_requested} requested, "
         f"{counts.old_selected} selected ({selection.strategy.old_sampling}), "
         f"{counts.old_dropped_by_max} dropped by max"),
        f"old probe: {counts.old_probe} samples ({'chosen now' if selection.old_probe_created else 'fixed'})",
        f"excluded: {counts.after_now} after now, {counts.mode_filtered_out} other modes",
        f"train: {counts.train_samples} samples from {counts.train_memories} memories",
    ]
    for method, distances in selection.distances.items():
        lines.append(f"distance to the old pool ({method}): " +
                     ", ".join(f"{axis} {value}" for axis, value in distances.items()))
    return "\n".join(lines)


def select(
    username: str = typer.Option("demo", "--username", "-u", help="Profile name."),
    root: str = typer.Option("", "--root", help=_ROOT_HELP),
    strategy: str = typer.Option("monthly", "--strategy", help="Parameter set name or YAML path."),
    days_recent: int = typer.Option(None, "--days-recent", min=0, help="Recent window in days (0 = none)."),
    old_samples: int = typer.Option(None, "--old-samples", min=0, help="Old samples to replay (0 = none)."),
    max_samples: int = typer.Option(None, "--max", min=0, help="Cap on train samples (recent first)."),
    mode: str = typer.Option(None, "--mode", help="Only this mode: dual, emulation or agent."),
    old_sampling: str = typer.Option(None, "--old-sampling", help="uniform or stratified."),
    seed: int = typer.Option(None, "--seed", min=0, help="Seeds every random choice (default: the strategy's)."),
    now: str = typer.Option("", "--now", help="Reference time, ISO 8601 UTC; default the newest memory's time."),
    run_dir: str = typer.Option("", "--run-dir", help="Write dataset.jsonl, eval sets and manifest here."),
) -> None:
    """Choose the samples of a run and print exact counts; with --run-dir, write them."""
    from metahuman_lib.selection import parse_now, run_selection
    from metahuman_lib.strategies import load_strategy

    profile = resolve_profile(username, root or None)
    memories, _report = load_memories(profile)
    samples = build_samples(memories).samples
    chosen = load_strategy(strategy).with_overrides(
        days_recent=days_recent, old_samples=old_samples, max_samples=max_samples, mode=mode,
        old_sampling=old_sampling)
    selection = run_selection(profile, samples, chosen, parse_now(now, samples), seed, run_dir or None)
    typer.echo(format_selection(selection))
    if run_dir:
        typer.echo(f"wrote dataset.jsonl, eval_recent.jsonl, eval_old.jsonl and manifest.json in {run_dir}")
