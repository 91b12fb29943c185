"""Curate a profile straight from its files into the JSONL dataset: ``metahuman curate``'s path.

Why a path of its own: the command needs the dataset file, the load report and the quality
metrics, not the memories and samples tables. So every worker that reads a memory file also
curates it, fingerprints it, formats its JSONL line and searches it for filler; the parent only
puts the candidates in time order, drops duplicates (which needs all of them), counts and writes
the kept lines. No pandas is imported, no table is built, no text is handled twice.

The result is byte for byte what :func:`~metahuman_lib.quality.curate_profile` followed by
:func:`~metahuman_lib.samples.write_samples_jsonl` gives (tests compare both). A profile where two
files share an id (MetaHuman OS ids have 100 ms resolution; a link inside the profile) takes that
table path instead, since renaming ids needs every memory in path order.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from metahuman_lib._dedup import Fingerprints, join_fingerprints
from metahuman_lib._gc import paused_gc
from metahuman_lib._io import atomic_writer
from metahuman_lib._shards import map_shards
from metahuman_lib.curation import (
    _CURATED_COLUMNS,
    MODES,
    SHAPES,
    CurationOptions,
    _Batch,
    _curate_rows,
    _texts_of_rows,
    curation_stats,
    duplicate_drops,
    system_prompt,
)
from metahuman_lib.errors import ConfigError
from metahuman_lib.memory import (
    DEFAULT_MAX_FILE_BYTES,
    REPAIR_REASONS,
    LoadReport,
    SkippedFile,
    _parse_files,
    _transpose,
    read_in_batches,
    reread_memories,
)
from metahuman_lib.profile import Profile
from metahuman_lib.quality import (
    GATE_KINDS,
    GateResult,
    QualityGates,
    QualityMetrics,
    evaluate_gates,
    measure,
    month_counts,
)
from metahuman_lib.samples import iso_micros, sample_record
from metahuman_lib.text_rules import filler_bits

_DROPPED_HEADER = ("memory_id", "path", "type", "reason", "detail")


@dataclass(frozen=True)
class CuratedDataset:
    """What :func:`write_curated_dataset` wrote and measured.

    Attributes:
        samples: lines written to the dataset.
        load_report: what the load saw (skipped and repaired files).
        metrics: the seed's quality metrics of the samples written.
        gates: each gate's verdict for ``kind``.
        kind: ``foundation`` or ``monthly``.
        new_samples: for a monthly review, the samples of the recent window; else None.
    """

    samples: int
    load_report: LoadReport
    metrics: QualityMetrics
    gates: list[GateResult]
    kind: str
    new_samples: int | None


@dataclass
class _Texts:
    """Many strings (or byte strings) held as a few joined ones, each item sliced out when needed.

    Why: a worker's batch results outlive the batch; as one small object per item they would be
    scattered among the batch's freed objects and keep that memory from being reused (measured:
    19 MB of resident memory per 4,096 files instead of 5), and they pickle slower.
    """

    blobs: list[Any]
    blob: np.ndarray
    start: np.ndarray
    stop: np.ndarray

    @classmethod
    def pack(cls, items: Sequence[Any], empty: Any = "") -> _Texts:
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        stop = np.cumsum(lengths)
        joined = empty.join(items)
        if isinstance(joined, bytes):  # as an array, the bytes leave a worker without being copied
            joined = np.frombuffer(joined, dtype=np.uint8)
        return cls([joined], np.zeros(len(items), dtype=np.int32), stop - lengths, stop)

    @classmethod
    def join(cls, parts: Sequence[_Texts]) -> _Texts:
        offsets = np.cumsum([0] + [len(part.blobs) for part in parts[:-1]]).tolist()
        return cls([blob for part in parts for blob in part.blobs],
                   np.concatenate([part.blob + offset for part, offset in zip(parts, offsets, strict=True)]),
                   np.concatenate([part.start for part in parts]),
                   np.concatenate([part.stop for part in parts]))

    def __len__(self) -> int:
        return int(self.blob.size)

    def take(self, indices: np.ndarray) -> _Texts:
        return _Texts(self.blobs, self.blob[indices], self.start[indices], self.stop[indices])

    def __getitem__(self, index: int) -> Any:
        return self.blobs[self.blob[index]][self.start[index]:self.stop[index]]

    def tolist(self) -> list[Any]:
        blobs = self.blobs
        return [blobs[blob][start:stop] for blob, start, stop in
                zip(self.blob.tolist(), self.start.tolist(), self.stop.tolist(), strict=True)]

    def views(self) -> list[memoryview]:
        """The items of packed byte strings as views (for writing them without copying)."""
        views = [memoryview(blob) for blob in self.blobs]
        return [views[blob][start:stop] for blob, start, stop in
                zip(self.blob.tolist(), self.start.tolist(), self.stop.tolist(), strict=True)]


@dataclass
class _Part:
    """One batch of files, read and curated by a worker: per memory the fields the parent needs,
    per candidate sample its line and what the counts and deduplication need."""

    ids: _Texts
    stamps: np.ndarray
    paths: _Texts
    types: _Texts
    noted: list[SkippedFile]
    candidates: _Lines
    drops: list[tuple[int, str, str]]
    deferred: list[tuple[int, tuple[Any, ...]]]


_MODE_CODES = {mode: code for code, mode in enumerate(MODES)}
_SHAPE_CODES = {shape: code for code, shape in enumerate(SHAPES)}


@dataclass
class _Lines:
    """Candidate samples, column by column: the memory row each came from, its JSONL line, its
    words, mode and shape (as indices into :data:`MODES` and :data:`SHAPES`), its scrub counts,
    whether filler was stripped, which filler phrases it holds (a bit per :data:`FILLER_PHRASES`
    entry), its question and its fingerprint."""

    rows: np.ndarray
    lines: _Texts
    words: np.ndarray
    modes: np.ndarray
    shapes: np.ndarray
    scrubbed: np.ndarray
    stripped: np.ndarray
    filler: np.ndarray
    questions: _Texts
    prints: Fingerprints | None = field(default=None)

    def __len__(self) -> int:
        return int(self.rows.size)

    def take(self, indices: np.ndarray) -> _Lines:
        return _Lines(self.rows[indices], self.lines.take(indices), self.words[indices],
                      self.modes[indices], self.shapes[indices], self.scrubbed[indices],
                      self.stripped[indices], self.filler[indices], self.questions.take(indices),
                      None if self.prints is None else self.prints.take(indices))

    @classmethod
    def join(cls, parts: Sequence[_Lines]) -> _Lines:
        prints = [part.prints for part in parts]
        return _Lines(np.concatenate([part.rows for part in parts]),
                      _Texts.join([part.lines for part in parts]),
                      np.concatenate([part.words for part in parts]),
                      np.concatenate([part.modes for part in parts]),
                      np.concatenate([part.shapes for part in parts]),
                      np.concatenate([part.scrubbed for part in parts]),
                      np.concatenate([part.stripped for part in parts]),
                      np.concatenate([part.filler for part in parts]),
                      _Texts.join([part.questions for part in parts]),
                      join_fingerprints(prints) if all(p is not None for p in prints) else None)


def _lines_of(batch: _Batch, ids: Sequence[str], stamps: Sequence[int], types: Sequence[str],
              modes: Sequence[str], sources: Sequence[str], systems: dict[str, dict[str, str]]) -> _Lines:
    """The JSONL line and counts of each candidate of ``batch`` (its rows index the other arguments)."""
    rows = batch.rows
    times = iso_micros(np.fromiter((stamps[row] for row in rows), dtype=np.int64, count=len(rows)))
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    lines = [dumps(sample_record([systems.get(modes[row], systems["emulation"]), *messages], ids[row],
                                 ids[row], types[row], modes[row], sources[row], stamp), option=newline)
             for row, messages, stamp in zip(rows, batch.messages, times, strict=True)]
    filler = filler_bits(batch.assistant)
    scrubbed = np.empty(len(rows), dtype=object)
    scrubbed[:] = batch.scrubbed
    return _Lines(np.array(rows, dtype=np.int64), _Texts.pack(lines, b""),
                  np.array(batch.words, dtype=np.int64),
                  np.array([_MODE_CODES[modes[row]] for row in rows], dtype=np.uint8),
                  np.array([_SHAPE_CODES[shape] for shape in batch.shapes], dtype=np.uint8),
                  scrubbed, np.array(batch.filler, dtype=bool), filler,
                  _Texts.pack(batch.questions), batch.prints)


def _curate_files(files: list[tuple[str, str, str | None]], options: CurationOptions,
                  systems: dict[str, dict[str, str]], max_file_bytes: int) -> _Part:
    """Read, check and curate one batch of memory files (what a worker does)."""
    rows, noted = _parse_files(files, max_file_bytes)
    values = _transpose(rows)
    del rows
    batch = _curate_rows([values[name] for name in _CURATED_COLUMNS], 0, options, None)
    ids, stamps = values["id"], values["timestamp"]
    lines = _lines_of(batch, ids, stamps, values["type"], values["mode"], values["mode_source"], systems)
    deferred = [(row, (*memory, ids[row], stamps[row], values["mode_source"][row]))
                for row, memory in batch.deferred]
    return _Part(_Texts.pack(ids), np.array(stamps, dtype=np.int64), _Texts.pack(values["path"]),
                 _Texts.pack(values["type"]), noted, lines, batch.drops, deferred)


def write_curated_dataset(profile: Profile, options: CurationOptions, output: Path, *,
                          kind: str = "foundation", now: datetime | None = None,
                          recent_days: int = 30, gates: QualityGates | None = None,
                          dropped: Path | None = None,
                          max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> CuratedDataset:
    """Curate ``profile`` into the JSONL dataset at ``output`` (atomically) and measure it.

    Args:
        profile: the profile to read.
        options: how to curate; ``options.username`` names the persona in the system messages
            (None takes the most common ``userId``, which needs every memory first: the table path).
        output: the dataset file to write.
        kind: which gates: ``foundation`` or ``monthly``.
        now: leave out memories after this moment; for ``monthly`` it also ends the recent window.
        recent_days: length of the recent window in days.
        gates: gate thresholds; the seed's by default.
        dropped: also write every dropped memory with its reason here (CSV).
        max_file_bytes: files larger than this are skipped as ``too_large``.

    Returns:
        A :class:`CuratedDataset`: the same samples, report, metrics and gates as
        :func:`~metahuman_lib.quality.curate_profile` gives for these arguments.
    """
    if kind not in GATE_KINDS:
        raise ConfigError(f"Unknown gate kind {kind!r}: use 'foundation' or 'monthly'.")
    profile.require_exists()
    with paused_gc():  # a one-shot pass: its objects live until it ends, none form cycles
        curated = _curate_in_workers(profile, options, now, max_file_bytes) if options.username else None
        if curated is None:
            return _write_from_tables(profile, options, output, kind, now, recent_days, gates, dropped)
        report, memories, kept, drops, stamps = curated
        with atomic_writer(Path(output)) as handle:
            handle.writelines(kept.lines.views())
        if dropped is not None:
            _write_dropped(Path(dropped), drops, memories)
        stats = curation_stats(memories.count, drops, kept.scrubbed.tolist(),
                               [SHAPES[code] for code in kept.shapes.tolist()], int(kept.stripped.sum()))
        times = stamps.astype("datetime64[us]")
        metrics = measure(kept.words, [MODES[code] for code in kept.modes.tolist()],
                          month_counts(times) if len(times) else {}, kept.filler, stats)
        new_samples = None
        if kind == "monthly" and now is not None:
            now_us = _micros(now)
            window = now_us - recent_days * 86_400_000_000
            new_samples = int(((stamps > window) & (stamps <= now_us)).sum())
        results = evaluate_gates(metrics, kind, new_samples, gates)
    return CuratedDataset(len(kept), report, metrics, results, kind, new_samples)


@dataclass(frozen=True)
class _Memories:
    """The memories of the table (as of ``now``), by table row: time, then id."""

    count: int
    ids: list[str]
    paths: _Texts
    types: _Texts


def _micros(moment: datetime) -> int:
    """UTC microseconds since the epoch (exact: no float rounding)."""
    delta = moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _curate_in_workers(profile: Profile, options: CurationOptions, now: datetime | None,
                       max_file_bytes: int,
                       ) -> tuple[LoadReport, _Memories, _Lines, list[tuple[int, str, str]], np.ndarray] | None:
    """Walk, read and curate on every core, then deduplicate in time order; None when two files
    share an id (the table path renames them)."""
    systems = {mode: {"role": "system", "content": system_prompt(str(options.username), mode)}
               for mode in MODES}
    parts, skipped, files_seen = read_in_batches(
        profile, lambda files: _curate_files(files, options, systems, max_file_bytes))
    ids = _Texts.join([part.ids for part in parts]).tolist() if parts else []
    if len(set(ids)) < len(ids):
        return None
    noted = skipped + [item for part in parts for item in part.noted]
    report = LoadReport(profile.episodic_dir, files_seen, len(ids),
                        tuple(sorted((item for item in noted if item.reason not in REPAIR_REASONS),
                                     key=lambda item: item.path)),
                        tuple(sorted((item for item in noted if item.reason in REPAIR_REASONS),
                                     key=lambda item: item.path)))
    stamps = np.concatenate([part.stamps for part in parts]) if parts else np.empty(0, np.int64)
    offsets = np.cumsum([0] + [len(part.ids) for part in parts]).tolist()
    present = np.flatnonzero(stamps <= _micros(now)) if now is not None else np.arange(len(ids))
    order = _time_order(present, stamps, ids)
    table_row = np.full(len(ids), -1, dtype=np.int64)
    table_row[order] = np.arange(order.size)
    picks = order.tolist()
    memories = _Memories(order.size, [ids[index] for index in picks],
                         _Texts.join([part.paths for part in parts]).take(order) if parts else _Texts.pack([]),
                         _Texts.join([part.types for part in parts]).take(order) if parts else _Texts.pack([]))
    row_of = table_row.tolist()
    drops = [(row_of[offset + row], reason, detail)
             for part, offset in zip(parts, offsets, strict=False)
             for row, reason, detail in part.drops if row_of[offset + row] >= 0]
    candidates = [_in_table(part.candidates, table_row[offset:offset + len(part.ids)])
                  for part, offset in zip(parts, offsets, strict=False)]
    deferred = [(row_of[offset + row], memory) for part, offset in zip(parts, offsets, strict=False)
                for row, memory in part.deferred if row_of[offset + row] >= 0]
    del parts
    if deferred:
        late, late_drops = _curate_deferred(deferred, memories, profile, options, systems)
        candidates.append(late)
        drops += late_drops
    if not candidates:
        return report, memories, _lines_of(_Batch(), [], [], [], [], [], systems), drops, \
            np.empty(0, np.int64)
    joined = _Lines.join(candidates)
    del candidates
    joined = joined.take(np.argsort(joined.rows, kind="stable"))
    if options.dedup and len(joined) >= 2 and joined.prints is not None:
        keep, duplicates = duplicate_drops(joined.prints, joined.questions.tolist(), joined.rows.tolist(),
                                           memories.ids, options)
        drops += duplicates
        joined = joined.take(np.array(keep, dtype=np.int64))
    drops.sort()
    return report, memories, joined, drops, stamps[order[joined.rows]]


def _time_order(rows: np.ndarray, stamps: np.ndarray, ids: list[str]) -> np.ndarray:
    """``rows`` in the memories table's order: by time, then id (ids break the rare ties, so
    the strings are compared only there)."""
    order = rows[np.argsort(stamps[rows], kind="stable")]
    times = stamps[order]
    tied = np.flatnonzero(times[1:] == times[:-1])
    for start in tied[np.r_[True, tied[1:] != tied[:-1] + 1]].tolist() if tied.size else []:
        stop = start + 1
        while stop < order.size and times[stop] == times[start]:
            stop += 1
        order[start:stop] = sorted(order[start:stop].tolist(), key=ids.__getitem__)
    return order


def _in_table(lines: _Lines, table_row: np.ndarray) -> _Lines:
    """A batch's candidates with their rows turned into table rows; those after ``now`` left out."""
    rows = table_row[lines.rows]
    present = rows >= 0
    if not present.all():
        lines = lines.take(np.flatnonzero(present))
        rows = rows[present]
    return replace(lines, rows=rows)


def _curate_deferred(deferred: list[tuple[int, tuple[Any, ...]]], memories: _Memories, profile: Profile,
                     options: CurationOptions, systems: dict[str, dict[str, str]],
                     ) -> tuple[_Lines, list[tuple[int, str, str]]]:
    """The tool calls whose instruction is their parent memory's text, now that every memory is
    known: the parents are read again from their files. Shards of many calls run on every core
    (a profile of agent logs can hold tens of thousands: about 25 µs each)."""
    deferred.sort(key=lambda item: item[0])
    row_of = {memory_id: row for row, memory_id in enumerate(memories.ids)}

    def curate_range(start: int, stop: int) -> tuple[_Lines, list[tuple[int, str, str]]]:
        rows = [row for row, _ in deferred[start:stop]]
        values = [memory for _, memory in deferred[start:stop]]
        wanted = {memory[5].get("parentEventId") for memory in values}
        parent_paths = [memories.paths[row_of[memory_id]] for memory_id in wanted if memory_id in row_of]
        parents = _texts_of_rows(reread_memories(profile, parent_paths), wanted)
        columns = [list(column) for column in zip(*values, strict=True)]
        batch = _curate_rows(columns[:len(_CURATED_COLUMNS)], 0, options, parents)
        ids, stamps, sources = columns[len(_CURATED_COLUMNS):]
        lines = _lines_of(batch, ids, stamps, [memories.types[row] for row in rows], columns[1], sources,
                          systems)
        lines.rows = np.array([rows[row] for row in lines.rows.tolist()], dtype=np.int64)
        return lines, [(rows[row], reason, detail) for row, reason, detail in batch.drops]

    parts = map_shards(curate_range, len(deferred))
    return _Lines.join([lines for lines, _ in parts]), [drop for _, drops in parts for drop in drops]


def _write_dropped(path: Path, drops: list[tuple[int, str, str]], memories: _Memories) -> None:
    """Every dropped memory with its reason, as CSV (the columns of ``CurationResult.dropped``)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(_DROPPED_HEADER)
    writer.writerows((memories.ids[row], memories.paths[row], memories.types[row], reason, detail)
                     for row, reason, detail in drops)
    with atomic_writer(path) as handle:
        handle.write(text.getvalue().encode("utf-8"))


def _write_from_tables(profile: Profile, options: CurationOptions, output: Path, kind: str,
                       now: datetime | None, recent_days: int, gates: QualityGates | None,
                       dropped: Path | None) -> CuratedDataset:
    """The same result through the memories and samples tables (ids to rename, no username)."""
    from metahuman_lib.quality import curate_profile
    from metahuman_lib.samples import write_samples_jsonl

    review = curate_profile(profile, options, kind=kind, now=now, recent_days=recent_days,
                            gates=gates, keep_memories=False)
    count = write_samples_jsonl(review.curation.samples, Path(output))
    if dropped is not None:
        with atomic_writer(Path(dropped)) as handle:
            review.curation.dropped.to_csv(handle, index=False, encoding="utf-8")
    return CuratedDataset(count, review.load_report, review.metrics, review.gates, kind,
                          review.new_samples)
