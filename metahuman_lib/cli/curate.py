"""``metahuman curate``: write the curated dataset and print the seed's quality metrics block.

Replaces MetaHuman OS's ``memory-curator.ts --username U --output F``. Argument parsing and
printing only; the work is done by :mod:`metahuman_lib.curation` and :mod:`metahuman_lib.quality`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from metahuman_lib._gc import paused_gc
from metahuman_lib._io import atomic_writer
from metahuman_lib.curation import CurationOptions
from metahuman_lib.demo import resolve_profile
from metahuman_lib.errors import ConfigError
from metahuman_lib.quality import (
    GATE_KINDS,
    curate_profile,
    failed_gates,
    format_metrics_block,
    require_gates,
)
from metahuman_lib.samples import write_samples_jsonl

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
    with paused_gc():  # a one-shot command: its objects live until it ends, none form cycles
        review = curate_profile(profile, options, kind=kind, now=datetime.now(UTC),
                                recent_days=recent_days, keep_memories=False)
        count = write_samples_jsonl(review.curation.samples, Path(output))
        if dropped:
            with atomic_writer(Path(dropped)) as handle:
                review.curation.dropped.to_csv(handle, index=False, encoding="utf-8")
        typer.echo(f"Wrote {count:,} samples to {output}")
        typer.echo(_file_counts("Skipped", "file", review.load_report.counts_by_reason()))
        repaired = review.load_report.counts_repaired()
        if repaired:
            typer.echo(_file_counts("Repaired and kept", "memory", repaired, plural="memories"))
        typer.echo(format_metrics_block(review.metrics, review.gates, kind))
        gates = review.gates
        del review  # freed while the collector is paused, so no collection scans it first
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
