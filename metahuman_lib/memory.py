"""Read every episodic memory of a MetaHuman OS profile into one table.

The loader walks ``profiles/<user>/memory/episodic/`` recursively (date folders and category
folders alike), parses each ``*.json`` file and returns a pandas DataFrame with one row per
readable memory (the columns are the memories-table contract in ``docs/architecture.md``) plus a
:class:`LoadReport` that lists every file it skipped with a fixed snake_case reason. One bad file
never stops the load (MetaHuman OS crashed on a missing ``type`` or a numeric ``response``).

Speed matters because a profile grows by thousands of files a month: the walk uses
``os.scandir``, files are read with raw ``os.read`` calls and parsed with orjson, and the
columns are built as plain lists that become a DataFrame once at the end.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import orjson

from metahuman_lib._gc import paused_gc
from metahuman_lib._shards import map_pulled
from metahuman_lib.profile import Profile

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MAX_FILE_BYTES = 4 * 1024 * 1024
"""Files above this size are skipped (``too_large``): a memory's content is capped at 50,000
characters by MetaHuman OS, so anything this big is not a memory written by it."""

DEFAULT_TYPE = "observation"
DEFAULT_IMPORTANCE = 0.5
MODES: tuple[str, ...] = ("dual", "emulation", "agent")

TYPE_MODES: dict[str, str] = {
    "inner_dialogue": "dual",
    "reflection": "dual",
    "dream": "dual",
    "daydream": "dual",
    "conversation": "emulation",
    "chat": "emulation",
    "observation": "emulation",
    "journal": "emulation",
    "action": "agent",
    "task": "agent",
    "tool_use": "agent",
    "tool_invocation": "agent",
}
"""The mode of a memory whose ``metadata.cognitiveMode`` is not dual/emulation/agent (spec
section 2); every other type is ``emulation``."""

MEMORY_COLUMNS: tuple[str, ...] = (
    "id",
    "timestamp",
    "type",
    "mode",
    "mode_source",
    "content",
    "response",
    "tags",
    "entities",
    "importance",
    "user_id",
    "metadata",
    "category",
    "path",
)

SKIP_REASONS: dict[str, str] = {
    "encrypted": "an encrypted .json.enc memory; it cannot be read without the key",
    "not_memory_file": "a file that is neither *.json nor *.json.enc, or not a regular file",
    "symlink_outside_profile": "a symbolic link that leads outside the profile folder",
    "unreadable": "the file (or folder) could not be opened, listed or read (permissions, "
                  "broken link, I/O error)",
    "too_large": "the file is larger than the size limit",
    "not_utf8": "the bytes are not valid UTF-8",
    "invalid_json": "the text is not valid JSON (including an empty file)",
    "not_object": "the JSON value is not an object (an array, a number, a string, null)",
    "missing_id": "no string id in the file and none in the file name",
    "missing_timestamp": "no timestamp field",
    "bad_timestamp": "the timestamp is not an ISO 8601 date-time string",
    "wrong_field_type": "a field has the wrong JSON type (e.g. a number as response)",
    "empty_content": "content is missing or only whitespace",
    "duplicate_id": "the same file met twice through a link inside the profile (read once)",
}
"""Every reason a file can be skipped for, with what it means (see docs/memory-format.md)."""

REPAIR_REASONS: dict[str, str] = {
    "id_collision": "another memory has the same id (MetaHuman OS ids have 100 ms resolution): both are "
                    "kept, this one under '<id>~<n>'",
    "field_dropped": "a field had the wrong JSON type (e.g. a number as response): only that field was "
                     "left out, the memory is kept",
    "lone_surrogate": "the text held a lone UTF-16 surrogate escape (as JavaScript's JSON.stringify writes "
                      "for a cut emoji); it became U+FFFD and the memory is kept",
}
"""What the loader repaired in a memory it kept, with what it means (see docs/memory-format.md)."""

_MIN_TS = datetime(1678, 1, 1, tzinfo=UTC)  # datetime64[ns] range
_MAX_TS = datetime(2261, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class SkippedFile:
    """One file the loader did not turn into a row.

    Attributes:
        path: the path relative to the episodic folder (POSIX separators).
        reason: one of :data:`SKIP_REASONS`.
        detail: a short human explanation (the bad field, the parse error, the kept duplicate).
    """

    path: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class LoadReport:
    """What a load saw: counts and every skipped file with its reason.

    Attributes:
        episodic_dir: the folder that was walked.
        files_seen: every file (and escaping link) the walk met.
        loaded: rows in the memories table.
        skipped: the files that were not loaded, in path order.
        repaired: memories that were loaded after a repair (a renamed id, a dropped field, a
            replaced lone surrogate), in path order.
    """

    episodic_dir: Path
    files_seen: int
    loaded: int
    skipped: tuple[SkippedFile, ...] = field(default_factory=tuple)
    repaired: tuple[SkippedFile, ...] = field(default_factory=tuple)

    def counts_repaired(self) -> dict[str, int]:
        """Loaded memories the loader repaired, per reason (see :data:`REPAIR_REASONS`)."""
        counts = Counter(item.reason for item in self.repaired)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def encrypted(self) -> int:
        """How many encrypted ``.json.enc`` memories were counted (and not read)."""
        return sum(1 for item in self.skipped if item.reason == "encrypted")

    def counts_by_reason(self) -> dict[str, int]:
        """Skipped files per reason, most frequent first (ties by name)."""
        counts = Counter(item.reason for item in self.skipped)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_frame(self) -> pd.DataFrame:
        """The skipped files as a table with columns ``path``, ``reason``, ``detail``."""
        import pandas as pd
        return pd.DataFrame(
            {
                "path": [item.path for item in self.skipped],
                "reason": [item.reason for item in self.skipped],
                "detail": [item.detail for item in self.skipped],
            }
        )


def memory_mode(memory_type: str, metadata: dict[str, Any]) -> tuple[str, str]:
    """The cognitive mode of a memory and where it came from (``metadata`` or ``type``).

    ``metadata.cognitiveMode`` wins when it is dual, emulation or agent (``environment`` and
    anything else fall back to the type table, spec section 2).
    """
    declared = metadata.get("cognitiveMode")
    if declared in MODES:
        return declared, "metadata"
    return TYPE_MODES.get(memory_type, "emulation"), "type"


def parse_timestamp(value: Any) -> datetime | None:
    """Parse an ISO 8601 timestamp to an aware UTC datetime; None when it is not one.

    A timestamp without an offset is taken as UTC (MetaHuman OS writes ``toISOString()``).
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    else:
        parsed = parsed.astimezone(UTC)
    if not _MIN_TS <= parsed <= _MAX_TS:
        return None
    return parsed


_STR_COLUMNS = frozenset({"id", "type", "mode", "mode_source", "content", "path"})
_NUMBER_TYPES = (int, float)
_IS_STR = str.__instancecheck__
_MODE_SET = frozenset(MODES)

T = TypeVar("T")
Row = tuple[Any, ...]
"""One memory's values in :data:`MEMORY_COLUMNS` order (the timestamp as UTC microseconds)."""
FileRef = tuple[str, str, str | None]
"""A memory file to read: its path, its path relative to the episodic folder, its category."""


_NAME = attrgetter("name")
_FIRST_READ = 1 << 16
_BATCH_FILES = 4096
"""Files parsed (and handed to ``per_shard``) at a time: their parsed JSON, the bulk of a load's
memory, is freed batch by batch."""


class _Skip(Exception):
    """Raised inside one file's checks; carries the skip reason and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _transpose(rows: list[Row]) -> dict[str, tuple[Any, ...]]:
    """The rows as one tuple of values per column of :data:`MEMORY_COLUMNS`."""
    if not rows:
        return {name: () for name in MEMORY_COLUMNS}
    return dict(zip(MEMORY_COLUMNS, zip(*rows, strict=True), strict=True))


def _columns(values: dict[str, tuple[Any, ...]], names: tuple[str, ...]) -> dict[str, Any]:
    """The ``names`` columns as Arrow strings, numpy numbers and lists for the rest: they pickle
    fast, so a worker's batches of the table travel to the parent cheaply."""
    import pyarrow as pa
    data: dict[str, Any] = {}
    for name in names:
        column = values[name]
        if name == "timestamp":
            data[name] = np.array(column, dtype=np.int64)
        elif name == "importance":
            data[name] = np.array(column, dtype=np.float64)
        elif name in _STR_COLUMNS:
            data[name] = pa.array(column, type=pa.large_string())
        else:
            data[name] = list(column)
    return data


def _concat_columns(parts: list[dict[str, Any]]) -> dict[str, Any]:
    import pyarrow as pa
    if len(parts) == 1:
        return parts[0]
    data: dict[str, Any] = {}
    for name in parts[0]:
        values = [part[name] for part in parts]
        if name in _STR_COLUMNS:
            data[name] = pa.concat_arrays(values)
        elif isinstance(values[0], np.ndarray):
            data[name] = np.concatenate(values)
        else:
            data[name] = list(chain.from_iterable(values))
    return data


def _frame(data: dict[str, Any], keep: np.ndarray | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The memories table from columns: the ``keep`` rows (all when None), sorted by time, then
    id; and for every input row its index in the table (-1 for rows not kept)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    kept = np.flatnonzero(keep) if keep is not None else np.arange(len(data["id"]))
    if keep is not None:
        data = {name: _take(values, kept) for name, values in data.items()}
    by_time = pa.table({"timestamp": data["timestamp"], "id": data["id"]})
    order = pc.sort_indices(by_time, sort_keys=[("timestamp", "ascending"), ("id", "ascending")])
    order = order.to_numpy()
    frame: dict[str, Any] = {}
    for name in data:
        values = _take(data[name], order)
        if name == "timestamp":
            micros = values.astype("datetime64[us]")
            frame[name] = pd.DatetimeIndex(micros).tz_localize("UTC").as_unit("ns")
        elif name == "importance":
            frame[name] = values
        elif name in _STR_COLUMNS:
            frame[name] = pd.Series(values, dtype="str")
        else:
            frame[name] = pd.Series(values, dtype=object)
    position = np.full(len(keep) if keep is not None else len(kept), -1, dtype=np.int64)
    position[kept[order]] = np.arange(order.size)
    return pd.DataFrame(frame), position


def _take(values: Any, indices: np.ndarray) -> Any:
    if isinstance(values, list):  # an object array, built item by item (never 2-D)
        values = np.fromiter(values, dtype=object, count=len(values))
    return values.take(indices)


def _is_str_list(value: Any) -> bool:
    return type(value) is list and all(map(_IS_STR, value))


def _utc_micros(value: Any) -> int | None:
    """UTC microseconds since the epoch of an ISO 8601 timestamp; None when it is not one."""
    parsed = parse_timestamp(value)
    return None if parsed is None else round(parsed.timestamp() * 1_000_000)


def _fast_row(obj: dict[str, Any], rel: str, category: str | None) -> Row | None:
    """The row of a well-formed memory, or None when anything needs a closer look.

    This is the hot path of a load: one ``get`` per field, exact type checks (orjson only
    makes exact ``str``/``list``/``dict``/``int``/``float``) and no helper calls that a
    100k-file load would pay for. :func:`_validate` explains failures.
    """
    get = obj.get
    memory_id, content, memory_type = get("id"), get("content"), get("type")
    response, metadata, tags, entities = get("response"), get("metadata"), get("tags"), get("entities")
    importance, user_id = get("importance"), get("userId")
    if not (type(memory_id) is str and memory_id
            and type(content) is str and content and not content.isspace()
            and (memory_type is None or type(memory_type) is str)
            and (response is None or type(response) is str)
            and (metadata is None or type(metadata) is dict)
            and (tags is None or (type(tags) is list and all(map(_IS_STR, tags))))
            and (entities is None or (type(entities) is list and all(map(_IS_STR, entities))))
            and (importance is None or type(importance) in _NUMBER_TYPES)
            and (user_id is None or type(user_id) is str)):
        return None
    micros = _utc_micros(get("timestamp"))
    if micros is None:
        return None
    memory_type = memory_type or DEFAULT_TYPE
    declared = metadata.get("cognitiveMode") if metadata else None
    if declared in _MODE_SET:
        mode, source = declared, "metadata"
    else:
        mode, source = TYPE_MODES.get(memory_type, "emulation"), "type"
    return (memory_id, micros, memory_type, mode, source, content, response, tags or [],
            entities or [], DEFAULT_IMPORTANCE if importance is None else float(importance),
            user_id, metadata or {}, category, rel)


def _wrong_type(name: str, expected: str, value: Any) -> _Skip:
    return _Skip("wrong_field_type", f"'{name}' must be {expected}, got {type(value).__name__}")


def _optional(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], expected: str) -> Any:
    """The field's value when absent/null or of the right JSON type; raise otherwise."""
    value = obj.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise _wrong_type(name, expected, value)
    return value


def _memory_id(obj: dict[str, Any], name: str) -> str:
    """The ``id`` field, or the ``evt-<digits>`` prefix of the file name when it is absent."""
    memory_id = obj.get("id")
    if memory_id is None:
        if name.startswith("evt-") and name[4:19].isdigit():
            return name[:19]
        raise _Skip("missing_id", "no 'id' field and the file name does not start with evt-<digits>")
    if not isinstance(memory_id, str) or not memory_id:
        raise _wrong_type("id", "a non-empty string", memory_id)
    return memory_id


def _timestamp(obj: dict[str, Any]) -> datetime:
    raw = obj.get("timestamp")
    if raw is None:
        raise _Skip("missing_timestamp", "no 'timestamp' field")
    stamp = parse_timestamp(raw)
    if stamp is None:
        raise _Skip("bad_timestamp", f"'timestamp' is not an ISO 8601 date-time: {str(raw)[:40]!r}")
    return stamp


def _validate(obj: dict[str, Any], rel: str, category: str | None, repairs: list[SkippedFile]) -> Row:
    """The row of a memory the fast path refused, or :class:`_Skip` with the first problem.

    Checks run in a fixed order (id, timestamp, content) so a file with several problems always
    gets the same reason. A missing id is taken from the file name. A bad optional field (type,
    response, tags, entities, importance, userId, metadata) costs only that field: it is left
    out, noted in ``repairs``, and the memory is kept.
    """
    memory_id = _memory_id(obj, rel.rsplit("/", 1)[-1])
    stamp = _timestamp(obj)
    content = _optional(obj, "content", str, "a string")

    def optional(name: str, kind: type | tuple[type, ...], expected: str) -> Any:
        try:
            return _optional(obj, name, kind, expected)
        except _Skip as bad:
            repairs.append(SkippedFile(rel, "field_dropped", f"{bad.detail}; left out"))
            return None

    memory_type = optional("type", str, "a string") or DEFAULT_TYPE
    response = optional("response", str, "a string")
    lists = []
    for field_name in ("tags", "entities"):
        value = obj.get(field_name)
        if value is not None and not _is_str_list(value):
            repairs.append(SkippedFile(rel, "field_dropped", f"'{field_name}' must be a list of strings; left out"))
            value = None
        lists.append(value or [])
    importance = optional("importance", _NUMBER_TYPES, "a number")
    user_id = optional("userId", str, "a string")
    metadata = optional("metadata", dict, "an object") or {}
    if content is None or not content.strip():
        raise _Skip("empty_content", "'content' is missing or blank")
    mode, source = memory_mode(memory_type, metadata)
    return (memory_id, round(stamp.timestamp() * 1_000_000), memory_type, mode, source, content, response, lists[0],
            lists[1], DEFAULT_IMPORTANCE if importance is None else float(importance),
            user_id, metadata, category, rel)


def _read_limited(path: str, max_file_bytes: int) -> bytes | None:
    """The file's bytes, or None when it is larger than ``max_file_bytes``.

    Raw ``os.open``/``os.read`` avoid the buffered-file overhead of ``open()``. A memory is
    almost always smaller than the first read, and a short read of a regular file means its
    end was reached, so most files cost three system calls (no ``fstat``).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        first = min(_FIRST_READ, max_file_bytes + 1)
        data = os.read(fd, first)
        if len(data) < first:
            return data
        if os.fstat(fd).st_size > max_file_bytes:
            return None
        chunks = [data]
        total = len(data)
        while total <= max_file_bytes:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return None if total > max_file_bytes else b"".join(chunks)
    finally:
        os.close(fd)


def _decode_problem(data: bytes, exc: Exception) -> _Skip:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return _Skip("not_utf8", f"invalid UTF-8 at byte {bad.start}")
    return _Skip("invalid_json", str(exc).split("\n", 1)[0][:120])


def _parse_file(path: str, rel: str, category: str | None, max_file_bytes: int,
                repairs: list[SkippedFile]) -> Row:
    """Read, parse and check one ``*.json`` file; raise :class:`_Skip` when it is bad."""
    try:
        data = _read_limited(path, max_file_bytes)
    except OSError as exc:
        raise _Skip("unreadable", exc.strerror or type(exc).__name__) from exc
    if data is None:
        raise _Skip("too_large", f"larger than {max_file_bytes} bytes")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        obj = _lenient_json(data)
        if obj is None:
            raise _decode_problem(data, exc) from exc
        repairs.append(SkippedFile(rel, "lone_surrogate", "a lone \\uD8xx-\\uDFxx escape became U+FFFD"))
    if type(obj) is not dict:
        raise _Skip("not_object", f"the JSON value is a {type(obj).__name__}")
    return _fast_row(obj, rel, category) or _validate(obj, rel, category, repairs)


def _lenient_json(data: bytes) -> Any:
    """JSON that orjson refuses only for lone surrogate escapes (``"\\ud83d"``, which JavaScript
    writes for a cut emoji): parsed, with each lone surrogate replaced by U+FFFD; else None."""
    import json

    if b"\\u" not in data:
        return None
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return _without_lone_surrogates(obj)


def _without_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # pairs are joined, lone halves replaced
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    return value


class _Walk:
    """The episodic tree in path order: memory files to read, and files skipped on sight.

    With a ``depth``, the folders that many levels below the one walked are not entered but
    listed in :attr:`folders` (each as the arguments of a walk of its own, after the number of
    files met before it), so that several processes can walk them: see :meth:`tasks`.
    """

    def __init__(self, base: str, profile_dir: str) -> None:
        self.profile_real = os.path.realpath(profile_dir)
        self.visited = {os.path.realpath(base)}
        self.files: list[FileRef] = []
        self.folders: list[tuple[int, tuple[str, str, str | None]]] = []
        self.skipped: list[SkippedFile] = []
        self.files_seen = 0

    def walk(self, folder: str, rel_prefix: str, category: str | None, depth: int | None = None) -> None:
        try:
            with os.scandir(folder) as iterator:
                entries = sorted(iterator, key=_NAME)
        except OSError as exc:  # a folder we may not list: report it, read the rest
            self.skipped.append(SkippedFile(rel_prefix.rstrip("/") or ".", "unreadable",
                                            f"cannot list the folder: {exc.strerror or exc}"))
            return
        files = self.files
        for entry in entries:
            name = entry.name
            if name.endswith(".json") and entry.is_file(follow_symlinks=False):  # the usual case
                files.append((entry.path, rel_prefix + name, category))
                self.files_seen += 1
                continue
            rel = rel_prefix + name
            if entry.is_symlink():
                self._follow_link(entry, rel, rel_prefix, category)
            elif entry.is_dir(follow_symlinks=False):
                walk = (entry.path, rel + "/", _category(rel_prefix, entry.name, category))
                if depth == 0:
                    self.folders.append((len(self.files), walk))
                else:
                    self.walk(*walk, None if depth is None else depth - 1)
            elif entry.is_file(follow_symlinks=False):
                self._file(entry.path, entry.name, rel, category)
            else:
                self._special(rel)

    def tasks(self, most_files: int) -> list[list[FileRef] | tuple[str, str, str | None]]:
        """The files met and the folders left for later, in path order: runs of at most
        ``most_files`` files (a flat folder is shared out too), and folders."""
        tasks: list[list[FileRef] | tuple[str, str, str | None]] = []
        start = 0
        for stop, folder in [*self.folders, (len(self.files), None)]:
            tasks += [self.files[low : min(stop, low + most_files)] for low in range(start, stop, most_files)]
            start = stop
            if folder is not None:
                tasks.append(folder)
        return tasks

    def _follow_link(self, entry: os.DirEntry[str], rel: str, rel_prefix: str,
                     category: str | None) -> None:
        target = os.path.realpath(entry.path)
        if not (target == self.profile_real or target.startswith(self.profile_real + os.sep)):
            self.files_seen += 1
            self.skipped.append(SkippedFile(rel, "symlink_outside_profile", f"links to {target}"))
        elif os.path.isdir(target):
            if target not in self.visited:  # a link to a folder already walked would loop
                self.visited.add(target)
                self.walk(entry.path, rel + "/", _category(rel_prefix, entry.name, category))
        elif os.path.exists(target) and not os.path.isfile(target):
            self._special(rel)
        else:  # a regular file, or a broken link that reading reports as unreadable
            self._file(entry.path, entry.name, rel, category)

    def _special(self, rel: str) -> None:
        """A pipe, socket or device: opening it could block, so it is never read."""
        self.files_seen += 1
        self.skipped.append(SkippedFile(rel, "not_memory_file", "not a regular file"))

    def _file(self, path: str, name: str, rel: str, category: str | None) -> None:
        self.files_seen += 1
        if name.endswith(".json"):
            self.files.append((path, rel, category))
        elif name.endswith(".json.enc"):
            self.skipped.append(SkippedFile(rel, "encrypted",
                                            "encrypted memory (AES-256); no key to read it"))
        else:
            self.skipped.append(SkippedFile(rel, "not_memory_file", "not a *.json or *.json.enc file"))


def _category(rel_prefix: str, name: str, category: str | None) -> str | None:
    """A top-level folder that is not a year (``reflections``, ``dreams``, ...) is a category."""
    if rel_prefix == "" and not (len(name) == 4 and name.isdigit()):
        return name
    return category


def load_memories(
    profile: Profile, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> tuple[pd.DataFrame, LoadReport]:
    """Load every memory of ``profile`` into the memories table.

    Args:
        profile: the profile to read; its episodic folder must exist.
        max_file_bytes: files larger than this are skipped as ``too_large``.

    Returns:
        The memories table (columns :data:`MEMORY_COLUMNS`, sorted by timestamp then id) and a
        :class:`LoadReport` naming every skipped file and its reason. When two files share an
        id, the first in path order is kept and the other is skipped as ``duplicate_id``.

    Raises:
        ProfileError: the profile's episodic folder does not exist (one line naming it).
    """
    frame, report, _ = load_memories_with(profile, None, max_file_bytes=max_file_bytes)
    return frame, report


@dataclass(frozen=True)
class ShardResult(Generic[T]):
    """What a ``per_shard`` function of :func:`load_memories_with` made of one batch of files.

    Attributes:
        value: the function's result for the batch's rows.
        positions: for each of those rows, its index in the memories table (-1: a repeated id).
    """

    value: T
    positions: np.ndarray


def load_memories_with(
    profile: Profile, per_shard: Callable[[dict[str, tuple[Any, ...]]], T] | None, *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, columns: Sequence[str] = MEMORY_COLUMNS,
) -> tuple[pd.DataFrame, LoadReport, list[ShardResult[T]]]:
    """:func:`load_memories`, also running ``per_shard`` on the rows each worker parsed.

    Work that needs one memory at a time (curation's) then runs where the memory was read, in
    parallel, before the table exists. ``per_shard`` gets one batch of memories at a time (see
    :func:`read_in_batches`; the batches come in no set order), as a tuple of values per column of :data:`MEMORY_COLUMNS` (the timestamp as UTC
    microseconds); its result must pickle. ``columns`` are the table's columns (``id``,
    ``timestamp`` and ``path`` always): a caller that needs only a few saves their transfer.
    """
    profile.require_exists()
    names = tuple(name for name in MEMORY_COLUMNS
                  if name in columns or name in ("id", "timestamp", "path"))
    with paused_gc():
        return _load(profile, max_file_bytes, per_shard, names)


def reread_memories(profile: Profile, paths: Iterable[str], *,
                    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> list[Row]:
    """The rows (values of :data:`MEMORY_COLUMNS`) of the memory files at ``paths`` (relative to
    the episodic folder, as in the ``path`` column) that still read well: for looking a few
    memories up again when the table was loaded without their text."""
    episodic = str(profile.episodic_dir)  # once: a Path per file cost 20 µs
    files = [(os.path.join(episodic, rel), rel,
              _category("", rel.split("/", 1)[0], None) if "/" in rel else None) for rel in paths]
    return _parse_files(files, max_file_bytes)[0]


_FORK_FILES = 2000
"""Files a process meets before it forks its helpers: fewer cost less than a fork (about
50 ms of curation); more never wait long for one (the first month of a profile's day folders)."""


def read_in_batches(profile: Profile, per_batch: Callable[[list[FileRef]], T],
                    ) -> tuple[list[T], list[SkippedFile], int]:
    """Walk the episodic tree and run ``per_batch`` on its memory files, on every core.

    The day folders (``YYYY/MM/DD``, ``<category>/YYYY/MM``: three levels down) are the tasks:
    each process pulls the next one and walks it, and hands the files of the folders it walked
    to ``per_batch`` in batches of :data:`_BATCH_FILES` (the last one smaller; one batch's
    parsed memories are freed before the next is read). Small tasks keep the cores evenly busy
    to the end; large batches keep the per-batch work efficient.

    Returns:
        The batches' results, in the order the processes made them (a batch holds files of
        several folders: put rows in path order by their paths, see :func:`_path_order`), the
        files skipped on sight (links leaving the profile, encrypted memories, ...) and the
        number of files the walk met.
    """
    base, profile_dir = str(profile.episodic_dir), str(profile.profile_dir)
    top = _Walk(base, profile_dir)
    top.walk(base, "", None, depth=2)
    tasks = top.tasks(_BATCH_FILES)
    seen = [0]  # files this process met before it forked its helpers

    def work(pulled: Iterator[int]) -> tuple[list[T], list[SkippedFile], int]:
        walk, results, pending = _Walk(base, profile_dir), [], []
        walk.visited |= top.visited
        for task in pulled:
            item, before = tasks[task], len(pending)
            if isinstance(item, list):
                pending += item
            else:
                walk.files = pending
                walk.walk(*item)
            seen[0] += len(pending) - before
            while len(pending) >= _BATCH_FILES:
                results.append(per_batch(pending[:_BATCH_FILES]))
                del pending[:_BATCH_FILES]
        if pending:
            results.append(per_batch(pending))
        return results, walk.skipped, walk.files_seen

    done = map_pulled(work, len(tasks), worth_forking=lambda: seen[0] >= _FORK_FILES)
    skipped = top.skipped + [item for _, (_, noted, _) in done for item in noted]
    return ([value for _, (made, _, _) in done for value in made], skipped,
            top.files_seen + sum(count for _, (_, _, count) in done))


def _load(profile: Profile, max_file_bytes: int,
          per_shard: Callable[[dict[str, tuple[Any, ...]]], T] | None, names: tuple[str, ...],
          ) -> tuple[pd.DataFrame, LoadReport, list[ShardResult[T]]]:
    def parse_batch(files: list[FileRef]) -> tuple[dict[str, Any], list[SkippedFile], Any]:
        rows, skipped = _parse_files(files, max_file_bytes)
        values = _transpose(rows)
        del rows
        return _columns(values, names), skipped, per_shard(values) if per_shard is not None else None

    parts, walk_skipped, files_seen = read_in_batches(profile, parse_batch)
    if not parts:
        parts = [parse_batch([])]
    noted = walk_skipped + [item for _, part, _ in parts for item in part]
    skipped = [item for item in noted if item.reason not in REPAIR_REASONS]
    repaired = [item for item in noted if item.reason in REPAIR_REASONS]
    data = _concat_columns([columns for columns, _, _ in parts])
    keep = _unique_ids(data, str(profile.episodic_dir), skipped, repaired)
    frame, position = _frame(data, keep)
    report = LoadReport(profile.episodic_dir, files_seen, len(frame),
                        tuple(sorted(skipped, key=lambda item: item.path)),
                        tuple(sorted(repaired, key=lambda item: item.path)))
    results, offset = [], 0
    for columns, _, value in parts:
        size = len(columns["id"])
        results.append(ShardResult(value, position[offset : offset + size]))
        offset += size
    return frame, report, results if per_shard is not None else []


def _path_order(paths: list[str]) -> list[int]:
    """Row numbers in the walk's order: by path, compared folder by folder (``2025/...`` before
    ``2025-old/...``, though ``-`` sorts before ``/``)."""
    return sorted(range(len(paths)), key=lambda row: paths[row].split("/"))


def _unique_ids(data: dict[str, Any], episodic_dir: str, skipped: list[SkippedFile],
                repaired: list[SkippedFile]) -> np.ndarray | None:
    """Make every id unique, in path order, losing no memory.

    The same file met twice (through a link inside the profile) is read once: the later path is
    skipped as ``duplicate_id``. Two different memories with one id (MetaHuman OS ids have 100 ms
    resolution) are both kept: the later one becomes ``<id>~2`` (``~3``, ...), noted in ``repaired``
    as ``id_collision``. Returns the rows to keep, or None when all are (the usual case).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    ids = data["id"]
    if pc.count_distinct(ids).as_py() == len(ids):
        return None
    keep = np.ones(len(ids), dtype=bool)
    names = ids.to_pylist()
    taken = set(names)
    first: dict[str, tuple[str, str]] = {}
    renamed = False
    paths = data["path"].to_pylist()
    for index in _path_order(paths):
        memory_id, rel = names[index], paths[index]
        real = os.path.realpath(os.path.join(episodic_dir, rel))
        if memory_id not in first:
            first[memory_id] = (rel, real)
            continue
        kept_rel, kept_real = first[memory_id]
        if real == kept_real:
            keep[index] = False
            skipped.append(SkippedFile(rel, "duplicate_id", f"the same file as {kept_rel}, read once"))
            continue
        number = 2
        while f"{memory_id}~{number}" in taken:
            number += 1
        names[index] = f"{memory_id}~{number}"
        taken.add(names[index])
        renamed = True
        repaired.append(SkippedFile(rel, "id_collision", f"id {memory_id!r} is also {kept_rel}'s; kept as "
                                                         f"{names[index]!r}"))
    if renamed:
        data["id"] = pa.array(names, type=ids.type)
    return keep if not keep.all() else None


def _parse_files(files: list[tuple[str, str, str | None]],
                 max_file_bytes: int) -> tuple[list[Row], list[SkippedFile]]:
    """The rows of the readable files and the skipped ones (with the repair notes of the rows kept),
    each in the given order."""
    rows: list[Row] = []
    skipped: list[SkippedFile] = []
    for path, rel, category in files:
        try:
            repairs: list[SkippedFile] = []
            rows.append(_parse_file(path, rel, category, max_file_bytes, repairs))
            skipped.extend(repairs)  # repair notes travel with the skipped files; _load splits them
        except _Skip as problem:
            skipped.append(SkippedFile(rel, problem.reason, problem.detail))
    return rows, skipped


@dataclass(frozen=True)
class MemorySummary:
    """Counts that describe a loaded profile (what ``metahuman load`` prints).

    Attributes:
        total: memories loaded.
        first, last: the oldest and newest timestamp (None when empty).
        by_type, by_mode, by_month, by_category: memories per value, largest first
            (``by_month`` in calendar order, UTC ``YYYY-MM``; ``by_category`` uses ``-`` for
            memories in plain date folders).
        skipped: skipped files per reason (see :data:`SKIP_REASONS`).
        files_seen: every file the walk met.
    """

    total: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    by_type: dict[str, int]
    by_mode: dict[str, int]
    by_month: dict[str, int]
    by_category: dict[str, int]
    skipped: dict[str, int]
    files_seen: int


def _counts(values: pd.Series) -> dict[str, int]:
    counts = values.value_counts(dropna=False)
    pairs = sorted(((str(key), int(count)) for key, count in counts.items()),
                   key=lambda kv: (-kv[1], kv[0]))
    return dict(pairs)


def summarize_memories(memories: pd.DataFrame, report: LoadReport) -> MemorySummary:
    """Counts by type, mode, month and category, plus the skipped files by reason."""
    stamps = memories["timestamp"]
    months = stamps.dt.strftime("%Y-%m")
    return MemorySummary(
        total=len(memories),
        first=stamps.min() if len(memories) else None,
        last=stamps.max() if len(memories) else None,
        by_type=_counts(memories["type"]),
        by_mode=_counts(memories["mode"]),
        by_month={str(k): int(v) for k, v in months.value_counts().sort_index().items()},
        by_category=_counts(memories["category"].fillna("-")),
        skipped=report.counts_by_reason(),
        files_seen=report.files_seen,
    )
