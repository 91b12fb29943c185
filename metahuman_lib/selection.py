"""Choose the samples of one run: recent window, seeded replay of old memories, held-out sets.

:func:`select` is pure: samples table, :class:`~metahuman_lib.strategies.Strategy`, ``now`` and
``seed`` in; a :class:`Selection` out. It fixes the defects of MetaHuman OS's curator
(docs/selection.md): every flag is honoured, the draw is seeded and unbiased, the mode filter
comes before sampling, ``max`` never cuts a memory in half, and every count is exact.

Order of operations (each step sees only what the previous one kept):

1. Samples newer than ``now`` are set aside, so re-running an old selection on a grown
   profile gives the same result.
2. The old probe (evaluation set of old memories, stratified by month) is taken out. It is fixed
   at the foundation run and passed in as ``old_probe_ids`` by every later run.
3. The mode filter.
4. The recent window ``timestamp >= now - days_recent``; a foundation run has no window (all
   samples are recent, no old pool). A held-out slice of the recent pool is taken out next.
5. ``max_samples``: recent first; when recent alone exceed it, a seeded uniform subsample of them.
6. ``old_samples`` old samples, uniform or stratified by month x mode.

Every random choice uses its own stream, ``numpy.random.Generator(PCG64(SeedSequence(seed,
spawn_key=(purpose,))))``, over memories in a canonical order (by timestamp, then memory id), so the
result is the same bit for bit whatever the input order, and changing one step's parameters
never changes another step's draw. The unit of every draw is a whole memory: its samples stay
together; budgets count samples and are filled greedily in the drawn order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from metahuman_lib import __version__
from metahuman_lib._io import atomic_write_bytes, atomic_write_json, read_json, sha256_file
from metahuman_lib.errors import ConfigError, PipelineStepError, WorkbenchError
from metahuman_lib.profile import Profile
from metahuman_lib.quality import quality_metrics
from metahuman_lib.runfolder import read_manifest, record_files, update_manifest
from metahuman_lib.samples import SAMPLE_COLUMNS, iter_records
from metahuman_lib.strategies import MODES, Strategy, strategy_from_mapping

SELECTION_FILES: tuple[str, ...] = ("dataset.jsonl", "eval_recent.jsonl", "eval_old.jsonl")
OLD_PROBE_FILE = "old_probe.jsonl"
OLD_PROBE_IDS_FILE = "old_probe_ids.json"
_PURPOSES = {"old_probe": 1, "eval_recent": 2, "max": 3, "old": 4}
_MODE_CODES = {mode: code for code, mode in enumerate(MODES)}
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class SelectionCounts:
    """Exact sample counts of each step (memories are never split, so these are samples).

    Attributes:
        input_samples: rows of the samples table.
        after_now: samples newer than ``now``, set aside.
        old_probe: samples of the old probe's memories (``eval_old``), never trained on.
        mode_filtered_out: samples of other modes than ``strategy.mode``.
        recent_pool: samples in the recent window after the steps above.
        eval_recent: held out of the recent pool to measure learning.
        recent_available: ``recent_pool - eval_recent``.
        recent_selected: recent samples trained on.
        recent_dropped_by_max: recent samples left out by ``max_samples``.
        old_available: samples older than the window after the steps above.
        old_requested: ``strategy.old_samples``.
        old_dropped_by_max: old samples that ``max_samples`` left no room for.
        old_target: ``min(old_requested, old_available) - old_dropped_by_max``.
        old_selected: old samples trained on; below ``old_target`` only when no remaining
            whole memory fits the rest of the budget.
        train_samples: ``recent_selected + old_selected``.
        train_memories: memories behind the train samples.
    """

    input_samples: int
    after_now: int
    old_probe: int
    mode_filtered_out: int
    recent_pool: int
    eval_recent: int
    recent_available: int
    recent_selected: int
    recent_dropped_by_max: int
    old_available: int
    old_requested: int
    old_dropped_by_max: int
    old_target: int
    old_selected: int
    train_samples: int
    train_memories: int

    def to_dict(self) -> dict[str, int]:
        return {key: int(value) for key, value in self.__dict__.items()}


@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select`: train and evaluation samples, counts, and how good the replay is.

    Attributes:
        strategy: the strategy used.
        now: the reference time (UTC).
        seed: the seed used.
        cutoff: start of the recent window, ``None`` for a foundation run.
        train: the samples to train on, sorted by timestamp, memory id, then sample id.
        eval_recent: held-out recent samples.
        eval_old: the old probe's samples.
        counts: exact counts of every step.
        distances: total-variation distances between the selected old samples and the old pool
            over month, mode and month x mode, for the chosen method and for uniform sampling.
        old_probe_memory_ids: the memories of the old probe (sorted).
        old_probe_created: True when this call chose the probe (no ``old_probe_ids`` passed).
    """

    strategy: Strategy
    now: datetime
    seed: int
    cutoff: datetime | None
    train: pd.DataFrame = field(repr=False)
    eval_recent: pd.DataFrame = field(repr=False)
    eval_old: pd.DataFrame = field(repr=False)
    counts: SelectionCounts
    distances: dict[str, dict[str, float | None]]
    old_probe_memory_ids: tuple[str, ...] = field(repr=False)
    old_probe_created: bool

    def is_recent(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of ``frame`` lie in the recent window (all of them for a foundation run)."""
        if self.cutoff is None:
            return np.ones(len(frame), dtype=bool)
        return (frame["timestamp"] >= pd.Timestamp(self.cutoff)).to_numpy()


@dataclass(frozen=True)
class _Pool:
    """The eligible samples grouped into memories, in canonical (memory id) order."""

    frame: pd.DataFrame
    sample_memory: np.ndarray  # per sample row: index into the memory arrays
    memory_ids: np.ndarray
    timestamp_ns: np.ndarray
    month: np.ndarray
    mode_code: np.ndarray
    size: np.ndarray


# ---------------------------------------------------------------- inputs


def _utc(now: datetime) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ConfigError(f"now must be a timezone-aware datetime (UTC), got {now!r}.")
    return now.astimezone(UTC)


def parse_now(value: str | datetime | None, samples: pd.DataFrame | None = None) -> datetime:
    """``now`` from a notebook parameter or flag: ISO 8601 text or a datetime, in UTC.

    Empty means: the newest sample's timestamp when ``samples`` is given (so exploring an
    older profile, such as the demo, shows a full recent window), else the current time.
    """
    if value is None or value == "":
        if samples is not None and len(samples):
            return samples["timestamp"].max().tz_convert("UTC").to_pydatetime()
        return datetime.now(UTC)
    if isinstance(value, datetime):
        return _utc(value)
    try:
        stamp = pd.Timestamp(value)
    except ValueError as exc:
        raise ConfigError(f"now must be an ISO 8601 time such as 2025-12-01T00:00:00Z, got {value!r}.") from exc
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert("UTC").to_pydatetime()


def _check_samples(samples: pd.DataFrame) -> None:
    missing = [column for column in ("sample_id", "memory_id", "timestamp", "mode") if column not in samples]
    if missing:
        raise WorkbenchError(f"The samples table lacks the columns {missing}; build it with curation "
                             f"(columns: {', '.join(SAMPLE_COLUMNS)}).")
    if not isinstance(samples["timestamp"].dtype, pd.DatetimeTZDtype):
        raise WorkbenchError("The samples table's timestamp column must be timezone-aware (UTC).")


def _check_unique_ids(samples: pd.DataFrame, sample_memory: np.ndarray) -> None:
    """Raise on duplicate sample ids; fast when most samples carry their memory's id."""
    own = (samples["sample_id"] == samples["memory_id"]).to_numpy(dtype=bool, na_value=False)
    extra = samples["sample_id"][~own]
    unique = np.bincount(sample_memory[own]).max(initial=0) <= 1 and extra.is_unique
    if unique and len(extra):
        unique = not samples["memory_id"][own].isin(list(set(extra))).any()
    if not unique:
        duplicated = samples["sample_id"].duplicated()
        first = samples["sample_id"][duplicated].iloc[0]
        raise WorkbenchError(f"The samples table has {int(duplicated.sum())} duplicate sample_id values "
                             f"(first: {first!r}); each sample needs a unique id.")


def _rng(seed: int, purpose: str) -> np.random.Generator:
    """The generator of one purpose: independent streams, so one step never shifts another."""
    sequence = np.random.SeedSequence(int(seed), spawn_key=(_PURPOSES[purpose],))
    return np.random.Generator(np.random.PCG64(sequence))


def _pool(frame: pd.DataFrame) -> _Pool:
    """Group samples into memories in canonical order (timestamp, then memory id).

    The order never depends on the input's row order: memories are sorted by their timestamp
    (an integer sort) and only memories sharing a timestamp are ordered by id.
    """
    codes, uniques = pd.factorize(frame["memory_id"], sort=False)
    n_memories = len(uniques)
    first_ns = np.full(n_memories, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_ns, codes, _timestamps_ns(frame))
    ids = pd.Series(uniques)
    order = _canonical_order(first_ns, ids)
    rank = np.empty_like(order)
    rank[order] = np.arange(n_memories)
    sample_memory = rank[codes]
    timestamp_ns = first_ns[order]
    mode_code = np.zeros(n_memories, dtype=np.int64)
    mode_code[sample_memory] = _mode_codes(frame)  # samples of one memory share its mode
    month = timestamp_ns.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    return _Pool(frame=frame, sample_memory=sample_memory, memory_ids=pd.Index(ids.take(order).to_numpy()),
                 timestamp_ns=timestamp_ns, month=month, mode_code=mode_code,
                 size=np.bincount(sample_memory, minlength=n_memories).astype(np.int64))


def _canonical_order(stamps: np.ndarray, ids: pd.Series) -> np.ndarray:
    """Indices sorting memories by (timestamp, id): an integer sort, then ids within ties only."""
    order = np.argsort(stamps, kind="stable")
    sorted_stamps = stamps[order]
    tied = np.r_[False, sorted_stamps[1:] == sorted_stamps[:-1]]
    tied = tied | np.r_[tied[1:], False]
    if tied.any():
        positions = np.flatnonzero(tied)
        block = pd.DataFrame({"stamp": sorted_stamps[positions],
                              "id": ids.take(order[positions]).to_numpy(dtype=object), "at": order[positions]})
        order[positions] = block.sort_values(["stamp", "id"], kind="stable")["at"].to_numpy()
    return order


def _mode_codes(frame: pd.DataFrame) -> np.ndarray:
    """Per sample: index of its mode in MODES, or len(MODES) for anything else."""
    codes = np.full(len(frame), len(MODES), dtype=np.int64)
    for code, mode in enumerate(MODES):
        codes[(frame["mode"] == mode).to_numpy(dtype=bool, na_value=False)] = code
    return codes


def _timestamps_ns(frame: pd.DataFrame) -> np.ndarray:
    return frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)


# ---------------------------------------------------------------- drawing whole memories


def _greedy_fill(order: np.ndarray, size: np.ndarray, budget: int) -> np.ndarray:
    """Take memories in ``order`` while they fit ``budget`` samples; skip any that would overflow."""
    if budget <= 0 or len(order) == 0:
        return order[:0]
    sizes = size[order]
    cumulative = np.cumsum(sizes)
    cut = int(np.searchsorted(cumulative, budget, side="right"))
    taken = [order[:cut]]
    remaining = budget - (int(cumulative[cut - 1]) if cut else 0)
    rest, rest_sizes = order[cut:], sizes[cut:]
    while remaining > 0 and len(rest):
        fits = np.flatnonzero(rest_sizes <= remaining)
        if not len(fits):
            break
        first = int(fits[0])
        taken.append(rest[first:first + 1])
        remaining -= int(rest_sizes[first])
        rest, rest_sizes = rest[first + 1:], rest_sizes[first + 1:]
    return np.concatenate(taken)


def _permuted(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    candidates = np.flatnonzero(mask)
    return candidates[rng.permutation(len(candidates))]


def _uniform_take(mask: np.ndarray, size: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded uniform draw of whole memories among ``mask`` filling ``budget`` samples."""
    chosen = np.zeros(len(mask), dtype=bool)
    chosen[_greedy_fill(_permuted(mask, rng), size, budget)] = True
    return chosen


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (Hamilton's method).

    Each part is the floor of its exact quota; the parts left over go to the largest
    fractional remainders, ties to the earlier stratum. Exact integer arithmetic throughout.
    """
    weights = np.asarray(weights, dtype=np.int64)
    whole = int(weights.sum())
    if whole == 0 or total <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    total = min(int(total), whole)
    products = weights * total
    quotas, remainders = products // whole, products % whole
    left = total - int(quotas.sum())
    if left:
        ranked = np.argsort(-remainders, kind="stable")[:left]
        quotas[ranked] += 1
    return quotas


def _stratified_take(mask: np.ndarray, strata: np.ndarray, size: np.ndarray, budget: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Spread ``budget`` samples over strata in proportion to the pool, then top up uniformly.

    Within a stratum memories are taken in the seeded order; if whole memories leave a
    stratum short of its quota, the rest of the budget is filled from every stratum in the
    same seeded order.
    """
    order = _permuted(mask, rng)
    chosen = np.zeros(len(mask), dtype=bool)
    if budget <= 0 or not len(order):
        return chosen
    by_stratum = np.argsort(_small_ints(strata[order]), kind="stable")
    grouped, keys = order[by_stratum], strata[order][by_stratum]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    stops = np.r_[starts[1:], len(grouped)]
    weights = np.add.reduceat(size[grouped], starts)
    quotas = largest_remainder(weights, budget)
    if (size[grouped] == 1).all():  # one sample per memory: a quota is a prefix of its stratum
        take = np.arange(len(grouped)) < (starts + quotas).repeat(stops - starts)
        chosen[grouped[take]] = True
    else:
        for start, stop, quota in zip(starts, stops, quotas):
            chosen[_greedy_fill(grouped[start:stop], size, int(quota))] = True
    left = min(budget, int(size[mask].sum())) - int(size[chosen].sum())
    if left > 0:
        chosen[_greedy_fill(order[~chosen[order]], size, left)] = True
    return chosen


def _small_ints(keys: np.ndarray) -> np.ndarray:
    """Keys shifted to start at 0 and narrowed, so numpy's stable sort can use radix sort."""
    shifted = keys - keys.min()
    return shifted.astype(np.int16) if shifted.max() < np.iinfo(np.int16).max else shifted


def _strata(pool: _Pool) -> np.ndarray:
    return pool.month * (len(MODES) + 1) + pool.mode_code


def _eval_size(pool_samples: int, share: float, minimum: int) -> int:
    """Held-out size: ``share`` of the pool, at least ``minimum``, never more than half the pool."""
    wanted = max(int(np.ceil(share * pool_samples)), minimum)
    return min(wanted, pool_samples // 2)


def _probe_size(pool_samples: int, strategy: Strategy) -> int:
    return min(strategy.old_probe_size, int(np.floor(strategy.old_probe_max_share * pool_samples)))


# ---------------------------------------------------------------- distances


def _distribution(keys: np.ndarray, weights: np.ndarray, mask: np.ndarray, bins: int) -> np.ndarray | None:
    counts = np.bincount(keys[mask], weights=weights[mask], minlength=bins)
    total = counts.sum()
    return counts / total if total else None


def total_variation(left: np.ndarray | None, right: np.ndarray | None) -> float | None:
    """Total-variation distance between two distributions over the same bins (0 same, 1 disjoint)."""
    if left is None or right is None:
        return None
    return round(float(0.5 * np.abs(np.asarray(left) - np.asarray(right)).sum()), 6)


def _distances(pool: _Pool, old_mask: np.ndarray, chosen: np.ndarray) -> dict[str, float | None]:
    result: dict[str, float | None] = {}
    month = pool.month - (pool.month.min() if len(pool.month) else 0)
    for name, keys in (("month", month), ("mode", pool.mode_code),
                       ("month_mode", month * (len(MODES) + 1) + pool.mode_code)):
        bins = int(keys.max()) + 1 if len(keys) else 0
        result[name] = total_variation(_distribution(keys, pool.size, chosen, bins),
                                       _distribution(keys, pool.size, old_mask, bins))
    return result


# ---------------------------------------------------------------- select


def _samples_of(pool: _Pool, memories: np.ndarray) -> pd.DataFrame:
    """The samples of the chosen memories, sorted by timestamp, memory id, then sample id."""
    rows = np.flatnonzero(memories[pool.sample_memory])
    member = pool.sample_memory[rows]
    shared = pool.size[member] > 1
    if shared.any():  # several samples of one memory: order them by sample id
        within = np.zeros(len(rows), dtype=np.int64)
        ids = pool.frame["sample_id"].take(rows[shared]).to_numpy(dtype=object)
        within[shared] = pd.Series(ids).rank(method="first").to_numpy(dtype=np.int64)
        order = np.lexsort((within, member))
    else:
        order = np.argsort(member, kind="stable")  # memory ranks already follow the timestamps
    return pool.frame.iloc[rows[order]].reset_index(drop=True)


def _probe_mask(pool: _Pool, base: np.ndarray, strategy: Strategy, seed: int,
                old_probe_ids: Collection[str] | None) -> tuple[np.ndarray, bool]:
    if old_probe_ids is not None:
        return pool.memory_ids.isin(list(set(old_probe_ids))), False
    budget = _probe_size(int(pool.size[base].sum()), strategy)
    return _stratified_take(base, pool.month, pool.size, budget, _rng(seed, "old_probe")), True


def select(samples: pd.DataFrame, strategy: Strategy, now: datetime, seed: int, *,
           old_probe_ids: Collection[str] | None = None) -> Selection:
    """Choose train samples, the held-out recent slice and the old probe for one run.

    Args:
        samples: a samples table (see :mod:`metahuman_lib.samples`).
        strategy: what to select (recent window, old samples, max, mode, sampling method).
        now: the run's reference time, timezone-aware; samples after it are ignored.
        seed: seeds every random choice.
        old_probe_ids: memory ids of the profile's old probe, fixed at the foundation run;
            ``None`` chooses a new probe (stratified by month) from the memories older than the
            window (all memories for a foundation run).

    Returns:
        The :class:`Selection`; the same inputs give the same selection bit for bit, whatever
        the order of the rows.
    """
    now = _utc(now)
    _check_samples(samples)
    now_ns = pd.Timestamp(now).value
    pool = _pool(samples)
    _check_unique_ids(samples, pool.sample_memory)
    eligible = pool.timestamp_ns <= now_ns
    cutoff = None if strategy.is_foundation else now - timedelta(days=strategy.days_recent)
    in_window = _window(pool, strategy, now_ns)
    probe, created = _probe_mask(pool, eligible & (~in_window | strategy.is_foundation), strategy,
                                 seed, old_probe_ids)
    probe &= eligible
    mode_ok = eligible if strategy.mode is None else eligible & (pool.mode_code == _MODE_CODES[strategy.mode])
    recent_pool = in_window & ~probe & mode_ok
    old_pool = ~in_window & ~probe & mode_ok
    n_recent_pool = int(pool.size[recent_pool].sum())
    eval_budget = _eval_size(n_recent_pool, strategy.eval_recent_share, strategy.eval_recent_min)
    eval_recent = _uniform_take(recent_pool, pool.size, eval_budget, _rng(seed, "eval_recent"))
    recent_available = recent_pool & ~eval_recent
    cap = strategy.max_samples
    n_recent_available = int(pool.size[recent_available].sum())
    recent = recent_available
    if cap is not None and n_recent_available > cap:
        recent = _uniform_take(recent_available, pool.size, cap, _rng(seed, "max"))
    n_recent = int(pool.size[recent].sum())
    n_old_available = int(pool.size[old_pool].sum())
    wanted_old = min(strategy.old_samples, n_old_available)
    room = wanted_old if cap is None else max(min(wanted_old, cap - n_recent), 0)
    old = _draw_old(pool, old_pool, room, strategy.old_sampling, seed)
    uniform = old if strategy.old_sampling == "uniform" else _draw_old(pool, old_pool, room, "uniform", seed)
    train = recent | old
    counts = SelectionCounts(
        input_samples=len(samples), after_now=int(pool.size[~eligible].sum()),
        old_probe=int(pool.size[probe].sum()),
        mode_filtered_out=int(pool.size[eligible & ~probe & ~mode_ok].sum()), recent_pool=n_recent_pool,
        eval_recent=int(pool.size[eval_recent].sum()), recent_available=n_recent_available,
        recent_selected=n_recent, recent_dropped_by_max=n_recent_available - n_recent,
        old_available=n_old_available, old_requested=strategy.old_samples,
        old_dropped_by_max=wanted_old - room, old_target=room, old_selected=int(pool.size[old].sum()),
        train_samples=int(pool.size[train].sum()), train_memories=int(train.sum()),
    )
    return Selection(
        strategy=strategy, now=now, seed=int(seed), cutoff=cutoff,
        train=_samples_of(pool, train), eval_recent=_samples_of(pool, eval_recent),
        eval_old=_samples_of(pool, probe), counts=counts,
        distances={strategy.old_sampling: _distances(pool, old_pool, old),
                   "uniform": _distances(pool, old_pool, uniform)},
        old_probe_memory_ids=tuple(pool.memory_ids[probe]) if created else tuple(sorted(set(old_probe_ids or ()))),
        old_probe_created=created,
    )


def _window(pool: _Pool, strategy: Strategy, now_ns: int) -> np.ndarray:
    """Memories in the recent window: all for a foundation run, none for ``days_recent=0``."""
    if strategy.is_foundation:
        return np.ones(len(pool.size), dtype=bool)
    if strategy.days_recent == 0:
        return np.zeros(len(pool.size), dtype=bool)
    return pool.timestamp_ns >= now_ns - strategy.days_recent * _NS_PER_DAY


def _draw_old(pool: _Pool, old_pool: np.ndarray, budget: int, method: str, seed: int) -> np.ndarray:
    rng = _rng(seed, "old")
    if method == "stratified":
        return _stratified_take(old_pool, _strata(pool), pool.size, budget, rng)
    return _uniform_take(old_pool, pool.size, budget, rng)


# ---------------------------------------------------------------- summaries and estimates


def mode_mix(frame: pd.DataFrame) -> dict[str, float]:
    """Share of each cognitive mode in a samples table, in percent (one decimal)."""
    if frame.empty:
        return {mode: 0.0 for mode in MODES}
    shares = frame["mode"].value_counts(normalize=True)
    return {mode: round(float(shares.get(mode, 0.0)) * 100, 1) for mode in MODES}


def selection_quality(selection: Selection) -> dict[str, Any]:
    """The seed's quality metrics (:func:`metahuman_lib.quality.quality_metrics`) of each set."""
    return {name: quality_metrics(frame).to_dict() for name, frame in
            (("train", selection.train), ("eval_recent", selection.eval_recent), ("eval_old", selection.eval_old))}


# ---------------------------------------------------------------- run folder


def _jsonl_bytes(frame: pd.DataFrame) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in iter_records(frame))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def selection_record(selection: Selection, quality: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest's ``selection`` section: everything needed to re-run and check the selection."""
    return {
        "strategy": selection.strategy.name,
        "parameters": selection.strategy.to_dict(),
        "seed": selection.seed,
        "now": _iso(selection.now),
        "cutoff": _iso(selection.cutoff),
        "library_version": __version__,
        "counts": selection.counts.to_dict(),
        "distances": selection.distances,
        "old_probe": {"created": selection.old_probe_created,
                      "memory_ids": list(selection.old_probe_memory_ids)},
        "ids": {"train": selection.train["sample_id"].tolist(),
                "eval_recent": selection.eval_recent["sample_id"].tolist(),
                "eval_old": selection.eval_old["sample_id"].tolist()},
        "quality": quality if quality is not None else selection_quality(selection),
    }


def write_selection(run_dir: Path, selection: Selection, *, quality: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``dataset.jsonl``, ``eval_recent.jsonl``, ``eval_old.jsonl`` and the manifest sections.

    Each file is written atomically; the manifest gets the ``selection`` section and the
    sha256 of each file under ``files``. Writing the same selection again (a resumed run) is
    allowed; a different one into a run folder that already has a selection is refused, since
    a run folder never changes its data once a step has finished. Returns the updated manifest.

    Raises:
        PipelineStepError: the run folder already holds a different selection.
    """
    run_dir = Path(run_dir)
    frames = (selection.train, selection.eval_recent, selection.eval_old)
    contents = {name: _jsonl_bytes(frame) for name, frame in zip(SELECTION_FILES, frames)}
    _refuse_a_different_selection(run_dir, contents)
    for name, data in contents.items():
        atomic_write_bytes(run_dir / name, data)
    record = selection_record(selection, quality)
    update_manifest(run_dir, lambda manifest: manifest.__setitem__("selection", record))
    return record_files(run_dir, list(SELECTION_FILES))


def _refuse_a_different_selection(run_dir: Path, contents: dict[str, bytes]) -> None:
    recorded = read_manifest(run_dir).get("files", {})
    for name, data in contents.items():
        if name in recorded and recorded[name]["sha256"] != hashlib.sha256(data).hexdigest():
            raise PipelineStepError(
                f"The run folder {run_dir} already holds a different selection ({name} differs); "
                "start a new run folder for a new selection.")


def strategy_from_manifest(run_dir: Path) -> tuple[Strategy, datetime, int, tuple[str, ...]]:
    """Strategy, ``now``, seed and old-probe ids recorded in a run's manifest."""
    section = read_manifest(run_dir).get("selection")
    if not section:
        raise WorkbenchError(f"The run folder {run_dir} has no selection in its manifest.json; "
                             "write one first with write_selection.")
    parameters = dict(section["parameters"])
    strategy = strategy_from_mapping(
        {k: v for k, v in parameters.items() if k not in ("name", "description")},
        name=parameters.get("name", "custom"), description=parameters.get("description", ""),
        where=f"{run_dir}/manifest.json")
    return strategy, parse_now(section["now"]), int(section["seed"]), tuple(section["old_probe"]["memory_ids"])


@dataclass(frozen=True)
class ReproduceReport:
    """Whether a selection re-run from its manifest wrote byte-identical files."""

    identical: bool
    expected: dict[str, str]
    actual: dict[str, str]

    @property
    def mismatched(self) -> list[str]:
        return [name for name in self.expected if self.expected[name] != self.actual.get(name)]


def reproduce_selection(run_dir: Path, samples: pd.DataFrame, out_dir: Path) -> ReproduceReport:
    """Re-run a run's selection from its manifest into ``out_dir`` and compare sha256 per file."""
    strategy, now, seed, probe_ids = strategy_from_manifest(run_dir)
    files = read_manifest(run_dir).get("files", {})
    expected = {name: files.get(name, {}).get("sha256", "") for name in SELECTION_FILES}
    selection = select(samples, strategy, now, seed, old_probe_ids=probe_ids)
    write_selection(out_dir, selection)
    actual = {name: sha256_file(Path(out_dir) / name) for name in SELECTION_FILES}
    return ReproduceReport(identical=actual == expected, expected=expected, actual=actual)


# ---------------------------------------------------------------- the profile's old probe


def old_probe_paths(profile: Profile) -> tuple[Path, Path]:
    """``(old_probe.jsonl, old_probe_ids.json)`` under the profile's evaluation folder."""
    return profile.eval_dir / OLD_PROBE_FILE, profile.eval_dir / OLD_PROBE_IDS_FILE


def load_old_probe_ids(profile: Profile) -> tuple[str, ...] | None:
    """The memory ids of the profile's old probe, or ``None`` before the foundation run."""
    ids_path = old_probe_paths(profile)[1]
    if not ids_path.is_file():
        return None
    return tuple(read_json(ids_path)["memory_ids"])


def store_old_probe(profile: Profile, selection: Selection) -> bool:
    """Fix the old probe for the profile when this selection chose it; never overwrite one.

    Returns True when the probe was written now.
    """
    samples_path, ids_path = old_probe_paths(profile)
    if not selection.old_probe_created or ids_path.is_file():
        return False
    data = _jsonl_bytes(selection.eval_old)
    atomic_write_bytes(samples_path, data)
    atomic_write_json(ids_path, {
        "memory_ids": list(selection.old_probe_memory_ids),
        "sample_ids": selection.eval_old["sample_id"].tolist(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "fixed_at": _iso(selection.now), "seed": selection.seed, "strategy": selection.strategy.name,
    })
    return True


def run_selection(profile: Profile, samples: pd.DataFrame, strategy: Strategy, now: datetime,
                  seed: int | None = None, run_dir: Path | str | None = None) -> Selection:
    """Select for a profile, reusing its old probe; with ``run_dir`` write the run's files.

    ``seed`` None uses the strategy's seed. The probe is fixed (stored under the profile) only
    when a run folder is written, so exploring in a notebook never fixes it.
    """
    seed = strategy.seed if seed is None else seed
    selection = select(samples, strategy, now, seed, old_probe_ids=load_old_probe_ids(profile))
    if run_dir:
        write_selection(Path(run_dir), selection)
        store_old_probe(profile, selection)
    return selection

