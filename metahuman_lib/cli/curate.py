"""``metahuman curate``: write the curated dataset and print the seed's quality metrics block.

Replaces MetaHuman OS's ``memory-curator.ts --username U --output F``. Argument parsing and
printing only; the work is done by :mod:`metahuman_lib.dataset`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from metahuman_lib.curation import CurationOptions
from metahuman_lib.dataset import write_curated_dataset
from metahuman_lib.demo import resolve_profile
from metahuman_lib.errors import ConfigError
from metahuman_lib.quality import (
    GATE_KINDS,
    failed_gates,
    format_metrics_block,
    require_gates,
)

_ROOT_HELP = "MetaHuman OS root (holds profiles/ and etc/); default $METAHUMAN_ROOT or the current folder."
_MODE_HELP = "Keep only one cognitive mode: dual, emulation or agent."
_DROPPED_HELP = "Also write every dropped memory with its reason (CSV)."


def curate(
    username: str = typer.Option(..., "--username", "-u", help="Profile to curate."),
    output: str = typer.Option(..., "--output", "-o", help="Where to write the samples (JSONL)."),
    root: str = typer.Option("", "--root", help=_ROOT_HELP),
    mode: str = typer.Option("", "--mode", help=_MODE_HELP),
    kind: str = typer.Option("foundation", "--kind", help="Which gates to check: foundation "
                                                          "(> 3,000 samples) or monthly (> 500 new)."),
    recent_days: int = typer.Option(30, "--recent-days", min=1,
                                    help="Monthly gate: samples of the last N days count as new."),
    strict: bool = typer.Option(False, "--strict", help="Exit with code 2 when a gate fails."),
    no_scrub: bool = typer.Option(False, "--no-scrub", help="Keep emails, phones, keys and card "
                                                            "numbers (the data then holds PII)."),
    min_words: int = typer.Option(3, "--min-words", min=1, help="Drop answers with fewer words."),
    near_dup_threshold: float = typer.Option(0.8, "--near-dup-threshold",
                                             help="Jaccard similarity from which samples are "
                                                  "near-duplicates (1.0 keeps them)."),
    dropped: str = typer.Option("", "--dropped", help=_DROPPED_HELP),
) -> None:
    """Curate a profile's memories into chat samples and print the quality metrics and gates."""
    if kind not in GATE_KINDS:
        raise ConfigError(f"Unknown --kind {kind!r}: use 'foundation' or 'monthly'.")
    options = CurationOptions(username=username, mode=mode or None, scrub=not no_scrub,
                              min_words=min_words, near_dup_threshold=near_dup_threshold)
    profile = resolve_profile(username, root or None)
    result = write_curated_dataset(profile, options, Path(output), kind=kind, now=datetime.now(UTC),
                                   recent_days=recent_days, dropped=Path(dropped) if dropped else None)
    typer.echo(f"Wrote {result.samples:,} samples to {output}")
    typer.echo(_file_counts("Skipped", "file", result.load_report.counts_by_reason()))
    repaired = result.load_report.counts_repaired()
    if repaired:
        typer.echo(_file_counts("Repaired and kept", "memory", repaired, plural="memories"))
    typer.echo(format_metrics_block(result.metrics, result.gates, kind))
    gates = result.gates
    if strict:
        require_gates(gates)  # a PipelineStepError: one line on stderr, exit code 2
    for result in failed_gates(gates):
        typer.echo(f"warning: gate {result.name} failed: {result.reason}", err=True)


def _file_counts(what: str, noun: str, counts: dict[str, int], plural: str | None = None) -> str:
    """``Skipped 9 files by reason: encrypted 3, invalid_json 2, ...`` (``none`` when there are none)."""
    total = sum(counts.values())
    name = noun if total == 1 else (plural or f"{noun}s")
    if not total:
        return f"{what} 0 {name}"
    return f"{what} {total:,} {name} by reason: " + ", ".join(f"{reason} {count:,}" for reason, count in counts.items())
