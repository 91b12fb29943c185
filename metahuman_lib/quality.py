"""The seed's quality metrics and gates, computed exactly as MetaHuman OS defines them.

Metrics (spec section 3) are measured over each sample's assistant text: words are the text
split on runs of whitespace; short is at most 40 words, long more than 100, medium the rest;
a sample is filler when its lowercased text (curly apostrophes read as straight) contains one
of :data:`metahuman_lib.text_rules.FILLER_PHRASES`; percentages are rounded to one decimal,
half up. Gates (the seed's "only proceed if") are evaluated to pass / warn / fail, each with its
reason in words, and :func:`require_gates` turns a failure into a :class:`PipelineStepError`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metahuman_lib._gc import paused_gc
from metahuman_lib._shards import map_shards
from metahuman_lib.curation import (
    DROP_REASONS,
    MODES,
    CurationOptions,
    CurationResult,
    load_and_curate,
)
from metahuman_lib.errors import ConfigError, GateRefused
from metahuman_lib.memory import LoadReport
from metahuman_lib.profile import Profile
from metahuman_lib.runfolder import list_run_dirs, read_manifest, update_manifest, utc_now_iso
from metahuman_lib.text_rules import FILLER_PHRASES, SCRUB_KINDS, count_words_of, filler_bits

if TYPE_CHECKING:
    import pandas as pd

SHORT_MAX_WORDS = 40
LONG_MIN_WORDS = 101
GATE_KINDS: tuple[str, ...] = ("foundation", "monthly")
GATE_STATUSES: tuple[str, ...] = ("pass", "warn", "fail")
HISTOGRAM_EDGES: tuple[int, ...] = (0, 10, 20, 30, 40, 60, 80, 100, 150, 200, 300, 500)
"""Upper bounds (inclusive) of the word-count histogram bins; the last bin is open."""


def percent(count: int, total: int) -> float:
    """``count / total`` as a percentage rounded to one decimal, half up (exact, no float error).

    ``percent(1, 8)`` is 12.5 and ``percent(1, 16)`` is 6.3, as MetaHuman OS prints them.
    """
    if total <= 0:
        return 0.0
    tenths = (2000 * count + total) // (2 * total)
    return tenths / 10


def _mean_one_decimal(total_words: int, count: int) -> float:
    """Mean rounded to one decimal, half up, in exact integer arithmetic."""
    return (20 * total_words + count) // (2 * count) / 10 if count else 0.0


@dataclass(frozen=True)
class QualityMetrics:
    """The seed's metrics plus what the review notebook shows.

    Attributes:
        total: samples measured.
        short, medium, long: samples with <= 40, 41-100 and > 100 words.
        short_pct, medium_pct, long_pct, filler_pct: percentages, one decimal, half up.
        filler: samples containing a filler phrase.
        avg_words: mean words per sample, one decimal, half up.
        modes, mode_pct: samples and percentage per mode (dual, emulation, agent).
        per_month: samples per UTC month ``YYYY-MM``.
        length_histogram: ``(bin label, samples)`` for the bins of :data:`HISTOGRAM_EDGES`.
        top_fillers: ``(phrase, samples)``, most frequent first.
        memories: memories curated (0 when unknown).
        duplicates_exact, duplicates_near: duplicates removed by curation.
        scrubbed: items replaced per PII kind.
        dropped: memories dropped per reason.

    The seed's gates and targets are read from these fields by :func:`evaluate_gates`.
    """

    total: int
    short: int
    medium: int
    long: int
    short_pct: float
    medium_pct: float
    long_pct: float
    filler: int
    filler_pct: float
    avg_words: float
    modes: dict[str, int]
    mode_pct: dict[str, float]
    per_month: dict[str, int]
    length_histogram: tuple[tuple[str, int], ...]
    top_fillers: tuple[tuple[str, int], ...]
    memories: int = 0
    duplicates_exact: int = 0
    duplicates_near: int = 0
    scrubbed: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists) for the run manifest."""
        data = asdict(self)
        data["length_histogram"] = [list(item) for item in self.length_histogram]
        data["top_fillers"] = [list(item) for item in self.top_fillers]
        return data


def _histogram(word_counts: np.ndarray) -> tuple[tuple[str, int], ...]:
    edges = np.array(HISTOGRAM_EDGES)
    bins = np.searchsorted(edges, word_counts, side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    labels = ["0"] + [f"{lo + 1}-{hi}" for lo, hi in pairwise(edges)]
    labels.append(f">{edges[-1]}")
    return tuple((label, int(count)) for label, count in zip(labels, counts, strict=True))


def _word_counts(samples: pd.DataFrame) -> np.ndarray:
    """Words per sample: the ``word_count`` column (the samples-table contract: the words of
    ``assistant_text``), or the text split on whitespace for a table without it."""
    if "word_count" in samples:
        return samples["word_count"].to_numpy(dtype=np.int64)
    return np.array(count_words_of(samples["assistant_text"].tolist()), dtype=np.int64)


def _month_counts(timestamps: pd.Series) -> dict[str, int]:
    """Samples per UTC month ``YYYY-MM``, in calendar order."""
    import pandas as pd

    return month_counts(pd.DatetimeIndex(timestamps).tz_convert("UTC").tz_localize(None).to_numpy())


def month_counts(stamps: np.ndarray) -> dict[str, int]:
    """Samples per month ``YYYY-MM``, in calendar order, of UTC ``datetime64`` times."""
    months, counts = np.unique(stamps.astype("datetime64[M]"), return_counts=True)
    return dict(zip(np.datetime_as_string(months, unit="M").tolist(), counts.tolist(), strict=True))


def _filler_bits(texts: list[str]) -> np.ndarray:
    """:func:`~metahuman_lib.text_rules.filler_bits` of all texts, its shards on all cores."""
    parts = map_shards(lambda start, stop: filler_bits(texts[start:stop]), len(texts))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def quality_metrics(samples: pd.DataFrame, stats: Mapping[str, int] | None = None) -> QualityMetrics:
    """Measure a samples table the way MetaHuman OS does (spec section 3).

    Args:
        samples: a samples table (its ``assistant_text``, ``mode`` and ``timestamp`` are used).
        stats: :attr:`CurationResult.stats`, to carry duplicates, scrubbing and drops along.

    Returns:
        The :class:`QualityMetrics`; every count is exact, every percentage one decimal.
    """
    words = _word_counts(samples)
    months = _month_counts(samples["timestamp"]) if len(words) else {}
    return measure(words, samples["mode"].tolist(), months, _filler_bits(samples["assistant_text"].tolist()),
                   stats)


def measure(words: np.ndarray, modes: Sequence[str], per_month: dict[str, int],
            filler_phrases: np.ndarray, stats: Mapping[str, int] | None = None) -> QualityMetrics:
    """:class:`QualityMetrics` from what was found per sample: words, modes, samples per month,
    and which filler phrases each holds (a bit per :data:`FILLER_PHRASES` entry, as
    :func:`~metahuman_lib.text_rules.filler_bits` gives; see :func:`quality_metrics`)."""
    total = len(words)
    short = int((words <= SHORT_MAX_WORDS).sum())
    long = int((words >= LONG_MIN_WORDS).sum())
    medium = total - short - long
    mode_counts = Counter(modes)
    counts = {mode: mode_counts.get(mode, 0) for mode in MODES}
    phrase_counts = {phrase: int(((filler_phrases >> np.uint64(bit)) & np.uint64(1)).sum())
                     for bit, phrase in enumerate(FILLER_PHRASES)}
    found = {phrase: count for phrase, count in phrase_counts.items() if count}
    filler = int(np.count_nonzero(filler_phrases))
    stats = dict(stats or {})
    return QualityMetrics(
        total=total, short=short, medium=medium, long=long,
        short_pct=percent(short, total), medium_pct=percent(medium, total),
        long_pct=percent(long, total), filler=filler, filler_pct=percent(filler, total),
        avg_words=_mean_one_decimal(int(words.sum()), total),
        modes=counts, mode_pct={mode: percent(count, total) for mode, count in counts.items()},
        per_month=per_month,
        length_histogram=_histogram(words),
        top_fillers=tuple(sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))),
        memories=int(stats.get("memories", 0)),
        duplicates_exact=int(stats.get("duplicates_exact", 0)),
        duplicates_near=int(stats.get("duplicates_near", 0)),
        scrubbed={kind: int(stats.get(f"scrubbed_{kind}", 0)) for kind in SCRUB_KINDS},
        dropped={reason: int(stats.get(f"dropped_{reason}", 0)) for reason in DROP_REASONS},
    )


# ---------------------------------------------------------------------------------------------
# Gates
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict: ``status`` is pass, warn or fail; ``reason`` says why in words."""

    name: str
    status: str
    reason: str


@dataclass(frozen=True)
class QualityGates:
    """The seed's gate and target thresholds (percentages in 0-100).

    Attributes:
        max_short_pct: short samples must stay below this (seed: 60).
        max_filler_pct: filler must stay below this (seed: 15).
        min_total_foundation: a foundation run needs more samples than this (seed: 3,000).
        min_new_monthly: a monthly run needs more new samples than this (seed: 500).
        target_short_pct, target_filler_pct: above these the gate warns (seed: 50, 10).
        target_medium, target_long: the seed's good ranges; outside them the length mix warns.
        mode_bands: the seed's target mode mix; outside a band the mode mix warns.
    """

    max_short_pct: float = 60.0
    max_filler_pct: float = 15.0
    min_total_foundation: int = 3000
    min_new_monthly: int = 500
    target_short_pct: float = 50.0
    target_filler_pct: float = 10.0
    target_medium: tuple[float, float] = (30.0, 40.0)
    target_long: tuple[float, float] = (10.0, 20.0)
    mode_bands: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "dual": (20.0, 40.0), "emulation": (40.0, 60.0), "agent": (10.0, 20.0)})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> QualityGates:
        """Thresholds from a parameters block; unknown keys raise ConfigError naming them."""
        names = [f.name for f in fields(cls)]
        values = dict(values or {})
        for key in values:
            if key not in names:
                import difflib

                close = difflib.get_close_matches(key, names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"Unknown quality gate setting {key!r}: use one of "
                                  f"{', '.join(names)}.{hint}")
        for key in ("target_medium", "target_long"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        if "mode_bands" in values:
            values["mode_bands"] = {k: (float(v[0]), float(v[1])) for k, v in values["mode_bands"].items()}
        return cls(**values)


def _band_text(value: float, band: tuple[float, float]) -> str:
    return f"{value:.1f}% (target {band[0]:g}-{band[1]:g}%)"


def _upper_gate(name: str, what: str, value: float, limit: float, target: float) -> GateResult:
    text = f"{value:.1f}% of samples {what}"
    if value >= limit:
        return GateResult(name, "fail", f"{text}: must be below {limit:g}%")
    if value >= target:
        return GateResult(name, "warn", f"{text}: below the {limit:g}% gate but above the "
                                        f"{target:g}% target")
    return GateResult(name, "pass", f"{text}: below the {target:g}% target")


def _count_gate(metrics: QualityMetrics, kind: str, new_samples: int | None,
                gates: QualityGates) -> GateResult:
    if kind == "foundation":
        count, limit, what = metrics.total, gates.min_total_foundation, "samples"
    else:
        count = metrics.total if new_samples is None else int(new_samples)
        limit, what = gates.min_new_monthly, "new samples"
    if count > limit:
        return GateResult("sample_count", "pass", f"{count:,} {what}: more than the {limit:,} needed "
                                                  f"for a {kind} run")
    return GateResult("sample_count", "fail", f"only {count:,} {what}: a {kind} run needs more than "
                                              f"{limit:,}; keep collecting memories")


def _length_mix_gate(metrics: QualityMetrics, gates: QualityGates) -> GateResult:
    off = []
    for label, value, band in (("medium", metrics.medium_pct, gates.target_medium),
                               ("long", metrics.long_pct, gates.target_long)):
        if not band[0] <= value <= band[1]:
            off.append(f"{label} {_band_text(value, band)}")
    if off:
        return GateResult("length_mix", "warn", "outside the seed's targets: " + ", ".join(off))
    return GateResult("length_mix", "pass", f"medium {metrics.medium_pct:.1f}% and long "
                                            f"{metrics.long_pct:.1f}% are within the seed's targets")


def _mode_mix_gate(metrics: QualityMetrics, gates: QualityGates) -> GateResult:
    off = [f"{mode} {_band_text(metrics.mode_pct.get(mode, 0.0), band)}"
           for mode, band in gates.mode_bands.items()
           if not band[0] <= metrics.mode_pct.get(mode, 0.0) <= band[1]]
    if off:
        return GateResult("mode_mix", "warn", "outside the seed's target mix: " + ", ".join(off))
    return GateResult("mode_mix", "pass", "every mode is within the seed's target mix")


def evaluate_gates(metrics: QualityMetrics, kind: str = "foundation", new_samples: int | None = None,
                   gates: QualityGates | None = None) -> list[GateResult]:
    """The seed's gates for a foundation or monthly run, each pass / warn / fail with a reason.

    Args:
        metrics: from :func:`quality_metrics`.
        kind: ``foundation`` (needs > 3,000 samples) or ``monthly`` (needs > 500 new samples).
        new_samples: for ``monthly``, the samples of the recent window (see
            :func:`count_recent`); None counts every measured sample as new.
        gates: thresholds; the seed's by default.

    Returns:
        ``short``, ``filler`` and ``sample_count`` (which can fail), then ``length_mix`` and
        ``mode_mix`` (which only warn: they are the seed's targets, not its gates).
    """
    if kind not in GATE_KINDS:
        raise ConfigError(f"Unknown gate kind {kind!r}: use 'foundation' or 'monthly'.")
    gates = gates or QualityGates()
    if metrics.total == 0:
        return [GateResult("sample_count", "fail", "no samples: every memory was dropped or the "
                                                   "profile is empty")]
    return [
        _upper_gate("short", "are short (<=40 words)", metrics.short_pct, gates.max_short_pct,
                    gates.target_short_pct),
        _upper_gate("filler", "contain filler", metrics.filler_pct, gates.max_filler_pct,
                    gates.target_filler_pct),
        _count_gate(metrics, kind, new_samples, gates),
        _length_mix_gate(metrics, gates),
        _mode_mix_gate(metrics, gates),
    ]


def failed_gates(results: Sequence[GateResult]) -> list[GateResult]:
    """The gates whose status is ``fail``."""
    return [result for result in results if result.status == "fail"]


def require_gates(results: Sequence[GateResult]) -> None:
    """Raise :class:`PipelineStepError` naming every failed gate, so a pipeline step stops.

    Warnings never stop a run; they are shown in the metrics block and the report.
    """
    failed = failed_gates(results)
    if failed:
        reasons = "; ".join(f"{result.name}: {result.reason}" for result in failed)
        raise GateRefused(f"Quality gates failed: {reasons}.")


def count_recent(samples: pd.DataFrame, now: datetime, days: int = 30) -> int:
    """Samples whose timestamp lies in the ``days`` before ``now`` (the monthly 'new samples')."""
    import pandas as pd
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    if samples.empty:
        return 0
    stamps = pd.DatetimeIndex(samples["timestamp"])
    cutoff = pd.Timestamp(now - timedelta(days=days))
    return int(((stamps > cutoff) & (stamps <= pd.Timestamp(now))).sum())


# ---------------------------------------------------------------------------------------------
# Presentation: the seed's metrics block, tables for notebooks, the run manifest
# ---------------------------------------------------------------------------------------------

_MARKS = {"pass": "✓ Good", "warn": "⚠️ Acceptable", "fail": "⚠️ TOO HIGH"}


def _mark(results: Mapping[str, GateResult], name: str, fail_text: str = "⚠️ TOO HIGH") -> str:
    result = results.get(name)
    if result is None:
        return ""
    return "  " + (fail_text if result.status == "fail" else _MARKS[result.status])


def format_metrics_block(metrics: QualityMetrics, results: Sequence[GateResult] | None = None,
                         kind: str | None = None) -> str:
    """The metrics as the seed's curator prints them, with each gate's verdict beside its line.

    Example line: ``- Short samples (<=40 words): 93.0%  ⚠️ TOO HIGH``.
    """
    by_name = {result.name: result for result in results or ()}
    modes = ", ".join(f"{mode} {metrics.mode_pct.get(mode, 0.0):.1f}%" for mode in MODES)
    lines = [
        f"Quality metrics ({metrics.total:,} samples from {metrics.memories:,} memories):",
        f"- Total samples: {metrics.total:,}{_mark(by_name, 'sample_count', '⚠️ TOO LOW')}",
        f"- Short samples (<=40 words): {metrics.short_pct:.1f}%{_mark(by_name, 'short')}",
        f"- Medium samples (41-100 words): {metrics.medium_pct:.1f}%",
        f"- Long samples (>100 words): {metrics.long_pct:.1f}%{_mark(by_name, 'length_mix')}",
        f"- Filler detected: {metrics.filler_pct:.1f}%{_mark(by_name, 'filler')}",
        f"- Average length: {metrics.avg_words:.1f} words",
        f"- Mode distribution: {modes}{_mark(by_name, 'mode_mix')}",
        f"- Duplicates removed: {metrics.duplicates_exact:,} exact, {metrics.duplicates_near:,} near",
        "- Items scrubbed: " + ", ".join(f"{kind_} {count}" for kind_, count in metrics.scrubbed.items()),
    ]
    if results:
        lines.append(f"Gates ({kind or 'quality'}):")
        lines += [f"- {result.status.upper()} {result.name}: {result.reason}" for result in results]
    return "\n".join(lines)


def metrics_table(metrics: QualityMetrics) -> pd.DataFrame:
    """The headline metrics as a two-column table (metric, value) with the seed's targets."""
    import pandas as pd
    rows = [
        ("total samples", f"{metrics.total:,}", "> 3,000 (foundation) / > 500 new (monthly)"),
        ("memories curated", f"{metrics.memories:,}", ""),
        ("short (<=40 words)", f"{metrics.short_pct:.1f}%", "< 50% (gate < 60%)"),
        ("medium (41-100 words)", f"{metrics.medium_pct:.1f}%", "30-40%"),
        ("long (>100 words)", f"{metrics.long_pct:.1f}%", "10-20%"),
        ("filler", f"{metrics.filler_pct:.1f}%", "< 10% (gate < 15%)"),
        ("average length", f"{metrics.avg_words:.1f} words", ""),
    ]
    rows += [(f"mode {mode}", f"{metrics.mode_pct.get(mode, 0.0):.1f}%", band)
             for mode, band in (("dual", "20-40%"), ("emulation", "40-60%"), ("agent", "10-20%"))]
    duplicates = f"{metrics.duplicates_exact:,} exact, {metrics.duplicates_near:,} near"
    rows += [("duplicates removed", duplicates, ""),
             ("items scrubbed", ", ".join(f"{k} {v}" for k, v in metrics.scrubbed.items()), "")]
    return pd.DataFrame(rows, columns=["metric", "value", "target"])


def gates_table(results: Sequence[GateResult]) -> pd.DataFrame:
    """Gate results as a table (gate, status, reason)."""
    import pandas as pd
    return pd.DataFrame([(r.name, r.status, r.reason) for r in results],
                        columns=["gate", "status", "reason"])


def type_coverage(memories: pd.DataFrame, result: CurationResult) -> pd.DataFrame:
    """Per memory type: memories in, samples out, and how many were dropped for each reason.

    Columns: ``type``, ``memories``, ``samples``, ``dropped``, then one column per drop reason
    that occurred; sorted by memories, most first.
    """
    import pandas as pd
    memories_in = memories["type"].astype(str).value_counts()
    samples_out = result.samples["type"].astype(str).value_counts()
    reasons = pd.crosstab(result.dropped["type"].astype(str), result.dropped["reason"].astype(str)) \
        if len(result.dropped) else pd.DataFrame()
    frame = pd.DataFrame({"memories": memories_in}).join(pd.DataFrame({"samples": samples_out}),
                                                         how="left")
    frame = frame.join(reasons, how="left").fillna(0).astype("int64")
    reason_columns = [r for r in DROP_REASONS if r in frame.columns]
    frame["dropped"] = frame[reason_columns].sum(axis=1) if reason_columns else 0
    frame = frame[["memories", "samples", "dropped", *reason_columns]]
    frame.index.name = "type"
    return frame.sort_values(["memories", "samples"], ascending=False).reset_index()


def monthly_volume(memories: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Memories in and samples out per UTC month (columns ``month``, ``memories``, ``samples``)."""
    import pandas as pd
    def per_month(stamps: pd.Series) -> pd.Series:
        if stamps.empty:
            return pd.Series(dtype="int64")
        return pd.Series(pd.DatetimeIndex(stamps).strftime("%Y-%m")).value_counts()

    frame = pd.DataFrame({"memories": per_month(memories["timestamp"]),
                          "samples": per_month(samples["timestamp"])}).fillna(0).astype("int64")
    frame.index.name = "month"
    return frame.sort_index().reset_index()


def sample_previews(samples: pd.DataFrame, n: int = 5, seed: int = 0,
                    max_chars: int = 400) -> pd.DataFrame:
    """A seeded random handful of samples for eyeballing: id, type, mode, words, user, assistant.

    Display only: texts longer than ``max_chars`` are shortened with an ellipsis here; the
    dataset itself is never cut.
    """
    import pandas as pd
    if samples.empty:
        return pd.DataFrame(columns=["sample_id", "type", "mode", "words", "user", "assistant"])
    picked = samples.sample(n=min(n, len(samples)), random_state=seed).sort_values("timestamp")

    def shorten(text: str) -> str:
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    users = ["\n".join(m["content"] for m in msgs if m["role"] == "user") for msgs in picked["messages"]]
    return pd.DataFrame({
        "sample_id": picked["sample_id"].tolist(), "type": picked["type"].tolist(),
        "mode": picked["mode"].tolist(), "words": picked["word_count"].tolist(),
        "user": [shorten(u) for u in users],
        "assistant": [shorten(t) for t in picked["assistant_text"]],
    })


def record_quality(run_dir: Path, metrics: QualityMetrics, results: Sequence[GateResult],
                   kind: str) -> dict[str, Any]:
    """Write the metrics and gate results into the run manifest's ``quality`` section."""
    section = {
        "kind": kind,
        "metrics": metrics.to_dict(),
        "gates": [asdict(result) for result in results],
        "passed": not failed_gates(results),
        "recorded_at": utc_now_iso(),
    }

    def change(manifest: dict[str, Any]) -> None:
        manifest["quality"] = section

    update_manifest(Path(run_dir), change)
    return section


# ---------------------------------------------------------------------------------------------
# One call for the CLI and the review notebook
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityReview:
    """Everything the quality review shows: the load, the curation, the metrics and the gates.

    Attributes:
        memories: the memories table; None when the review was made without keeping it.
        load_report: the loader's report of skipped files.
        curation: samples, dropped memories and counts.
        metrics: the seed's metrics over the samples.
        gates: the gate results for ``kind``.
        kind: ``foundation`` or ``monthly``.
        new_samples: the monthly 'new samples' count (None for foundation, or without ``now``).
    """

    memories: pd.DataFrame | None
    load_report: LoadReport
    curation: CurationResult
    metrics: QualityMetrics
    gates: list[GateResult]
    kind: str
    new_samples: int | None


def curate_profile(profile: Profile, options: CurationOptions | None = None, *,
                   kind: str = "foundation", now: datetime | None = None, recent_days: int = 30,
                   gates: QualityGates | None = None, keep_memories: bool = True) -> QualityReview:
    """Load a profile, curate it, measure it and evaluate the gates (the seed's review step).

    Args:
        profile: the profile to review.
        options: curation options (the defaults scrub PII and drop duplicates).
        kind: which gates: ``foundation`` or ``monthly``.
        now: the moment the review is made as of: memories after it are left out (a run dated
            ``now`` sees only what existed then, as selection does); for ``monthly`` it also ends
            the recent window whose samples count as new. None: every memory, all of them new.
        recent_days: length of the recent window in days.
        gates: gate thresholds; the seed's by default.
        keep_memories: False leaves the memories table out of the review (``memories`` is
            None): quicker, for a caller that shows only the samples, metrics and gates.
    """
    if kind not in GATE_KINDS:
        raise ConfigError(f"Unknown gate kind {kind!r}: use 'foundation' or 'monthly'.")
    with paused_gc():  # one pause for the whole review: re-enabling costs a full collection
        memories, report, result = load_and_curate(profile, options, now=now,
                                                   keep_memories=keep_memories)
        metrics = quality_metrics(result.samples, result.stats)
        new_samples = None
        if kind == "monthly" and now is not None:
            new_samples = count_recent(result.samples, now, recent_days)
        results = evaluate_gates(metrics, kind, new_samples, gates)
    return QualityReview(memories if keep_memories else None, report, result, metrics, results,
                         kind, new_samples)


def drop_reasons_table(result: CurationResult) -> pd.DataFrame:
    """Dropped memories per reason, with what each reason means (columns reason, memories, meaning)."""
    import pandas as pd
    counts = result.dropped["reason"].value_counts() if len(result.dropped) else pd.Series(dtype="int64")
    rows = [(reason, int(counts.get(reason, 0)), meaning) for reason, meaning in DROP_REASONS.items()
            if counts.get(reason, 0)]
    return pd.DataFrame(rows, columns=["reason", "memories", "meaning"])


def filler_table(metrics: QualityMetrics) -> pd.DataFrame:
    """The filler phrases found in the samples, most frequent first (columns phrase, samples)."""
    import pandas as pd
    return pd.DataFrame(list(metrics.top_fillers), columns=["phrase", "samples"])


def review_gates(profile: Profile, gate_settings: Mapping[str, Any] | None, run_dir: str | Path | None) -> QualityGates:
    """The thresholds a review uses: those given; when exploring without any, the ones the profile's
    newest run was started with, so the notebook agrees with that run's own verdict; else the seed's."""
    if gate_settings or run_dir:
        return QualityGates.from_mapping(gate_settings)
    for run in reversed(list_run_dirs(profile)):
        recorded = ((read_manifest(run).get("cycle") or {}).get("parameters") or {}).get("blocks") or {}
        if "quality" in recorded:
            return QualityGates.from_mapping(recorded.get("quality"))
    return QualityGates.from_mapping(None)


def finish_review(review: QualityReview, run_dir: str | Path | None, *, smoke_test: bool = False) -> str:
    """The review notebook's last step: inside a run, record the results and enforce the gates.

    Without a run folder nothing is written (exploring). With one, the metrics and gate results
    go into the manifest's ``quality`` section, then a failed gate raises :class:`GateRefused`
    so the pipeline stops at this step with the reason. A smoke test (``--smoke-test``) trains a
    dataset below the sample-count gate anyway; its version is never made current.
    """
    if not run_dir:
        return "Exploring: nothing recorded (the pipeline sets run_dir to record into a run)."
    record_quality(Path(run_dir), review.metrics, review.gates, review.kind)
    waived = [gate for gate in failed_gates(review.gates) if smoke_test and gate.name == "sample_count"]
    require_gates([gate for gate in review.gates if gate not in waived])
    if waived:
        return (f"Smoke test: {waived[0].reason}; training anyway as a test that never becomes current. "
                f"Quality recorded in {Path(run_dir) / 'manifest.json'}.")
    return f"Quality recorded in {Path(run_dir) / 'manifest.json'}: every gate passed."
