"""``metahuman demo-profile`` and ``metahuman load``: write the demo profile, summarize a load.

Argument parsing and printing only; the work is done by :mod:`metahuman_lib.demo` and
:mod:`metahuman_lib.memory`.
"""

from __future__ import annotations

import typer

from metahuman_lib.demo import DEMO_USERNAME, write_demo_profile
from metahuman_lib.memory import MemorySummary, load_memories, summarize_memories
from metahuman_lib.profile import Profile

_ROOT_HELP = "MetaHuman OS root (holds profiles/ and etc/); default $METAHUMAN_ROOT or the current folder."


def _percent(count: int, total: int) -> str:
    return f"{100.0 * count / total:.1f}%" if total else "0.0%"


def _table(title: str, counts: dict[str, int], total: int) -> list[str]:
    lines = [f"{title}:"]
    width = max((len(key) for key in counts), default=0)
    lines += [f"  {key:<{width}}  {count:>7}  {_percent(count, total):>6}" for key, count in counts.items()]
    return lines


def format_summary(profile: Profile, summary: MemorySummary) -> str:
    """The text ``metahuman load`` prints: totals, then counts by mode, type, month, category
    and the skipped files by reason."""
    span = (f"{summary.first:%Y-%m-%d %H:%M} to {summary.last:%Y-%m-%d %H:%M} UTC"
            if summary.first is not None else "no memories")
    lines = [f"profile {profile.username!r} at {profile.episodic_dir}",
             f"{summary.total} memories loaded from {summary.files_seen} files ({span})"]
    lines += _table("by mode", summary.by_mode, summary.total)
    lines += _table("by type", summary.by_type, summary.total)
    lines += _table("by month (UTC)", summary.by_month, summary.total)
    lines += _table("by folder", summary.by_category, summary.total)
    skipped = sum(summary.skipped.values())
    if skipped:
        lines.append(f"skipped {skipped} files:")
        width = max(len(reason) for reason in summary.skipped)
        lines += [f"  {reason:<{width}}  {count:>7}" for reason, count in summary.skipped.items()]
    else:
        lines.append("skipped 0 files")
    return "\n".join(lines)


def demo_profile(
    username: str = typer.Option(DEMO_USERNAME, "--username", "-u", help="Profile name to write."),
    root: str = typer.Option("", "--root", help=_ROOT_HELP),
    memories: int = typer.Option(1500, "--memories", min=1, help="Readable memories to write."),
    months: int = typer.Option(6, "--months", min=1, help="Months of history before the end date."),
    seed: int = typer.Option(0, "--seed", help="Generator seed; the same seed writes the same bytes."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing demo profile (never a real one)."),
) -> None:
    """Write a synthetic MetaHuman OS profile (exact on-disk format) and print its load summary."""
    profile = write_demo_profile(root or None, username, memories=memories, months=months,
                                 seed=seed, overwrite=overwrite)
    typer.echo(f"wrote demo profile {username!r} ({memories} memories, {months} months, seed {seed})")
    _print_load(profile)


def load(
    username: str = typer.Option(..., "--username", "-u", help="Profile name under profiles/."),
    root: str = typer.Option("", "--root", help=_ROOT_HELP),
) -> None:
    """Load every memory of a profile and print counts by mode, type and month, and skipped files."""
    _print_load(Profile.open(username, root or None))


def _print_load(profile: Profile) -> None:
    memories, report = load_memories(profile)
    typer.echo(format_summary(profile, summarize_memories(memories, report)))
