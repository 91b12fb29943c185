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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from metahuman_lib.profile import Profile

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
    "not_memory_file": "a file that is neither *.json nor *.json.enc",
    "symlink_outside_profile": "a symbolic link that leads outside the profile folder",
    "unreadable": "the file could not be opened or read (permissions, broken link, I/O error)",
    "too_large": "the file is larger than the size limit",
    "not_utf8": "the bytes are not valid UTF-8",
    "invalid_json": "the text is not valid JSON (including an empty file)",
    "not_object": "the JSON value is not an object (an array, a number, a string, null)",
    "missing_id": "no string id in the file and none in the file name",
    "missing_timestamp": "no timestamp field",
    "bad_timestamp": "the timestamp is not an ISO 8601 date-time string",
    "wrong_field_type": "a field has the wrong JSON type (e.g. a number as response)",
    "empty_content": "content is missing or only whitespace",
    "duplicate_id": "another file already had this id (the first one in path order is kept)",
}
"""Every reason a file can be skipped for, with what it means (see docs/memory-format.md)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MIN_TS = datetime(1678, 1, 1, tzinfo=UTC)  # datetime64[ns] range
_MAX_TS = datetime(2261, 12, 31, tzinfo=UTC)
_STR_LIST_FIELDS = ("tags", "entities")


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
    """

    episodic_dir: Path
    files_seen: int
    loaded: int
    skipped: tuple[SkippedFile, ...] = field(default_factory=tuple)

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


class _Skip(Exception):
    """Raised inside one file's checks; carries the skip reason and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Columns:
    """Column lists filled one memory at a time, turned into a DataFrame once."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {name: [] for name in MEMORY_COLUMNS}
        self.seen_ids: dict[str, str] = {}

    def frame(self) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for name, values in self.values.items():
            if name == "timestamp":
                micros = np.array(values, dtype="int64").astype("datetime64[us]")
                data[name] = pd.DatetimeIndex(micros).tz_localize("UTC").as_unit("ns")
            elif name == "importance":
                data[name] = np.array(values, dtype="float64")
            elif name in _STR_COLUMNS:
                data[name] = pd.Series(values, dtype="str")
            else:
                data[name] = pd.Series(values, dtype=object)
        frame = pd.DataFrame(data)
        return frame.sort_values(["timestamp", "id"], kind="stable", ignore_index=True)


def _check_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


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


def _validate(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """The row values of one parsed memory; raises :class:`_Skip` with the first problem."""
    memory_id = _memory_id(obj, name)
    stamp = _timestamp(obj)
    content = _optional(obj, "content", str, "a string")
    memory_type = _optional(obj, "type", str, "a string")
    response = _optional(obj, "response", str, "a string")
    lists = {}
    for field_name in _STR_LIST_FIELDS:
        value = obj.get(field_name)
        if value is not None and not _check_str_list(value):
            raise _Skip("wrong_field_type", f"'{field_name}' must be a list of strings")
        lists[field_name] = value or []
    importance = _optional(obj, "importance", (int, float), "a number")
    user_id = _optional(obj, "userId", str, "a string")
    metadata = _optional(obj, "metadata", dict, "an object")
    if content is None or not content.strip():
        raise _Skip("empty_content", "'content' is missing or blank")
    return {
        "id": memory_id,
        "timestamp": (stamp - _EPOCH) // _MICROSECOND,
        "type": memory_type or DEFAULT_TYPE,
        "content": content,
        "response": response,
        "tags": lists["tags"],
        "entities": lists["entities"],
        "importance": DEFAULT_IMPORTANCE if importance is None else float(importance),
        "user_id": user_id,
        "metadata": metadata or {},
    }


def _read_limited(path: str, max_file_bytes: int) -> bytes | None:
    """The file's bytes, or None when it is larger than ``max_file_bytes``.

    Raw ``os.open``/``os.read`` avoid the buffered-file overhead of ``open()``; one read of
    ``size + 1`` bytes normally returns the whole file and proves the end was reached.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size > max_file_bytes:
            return None
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data
        chunks = [data]
        total = len(data)
        while total <= max_file_bytes:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return None if total > max_file_bytes else b"".join(chunks)
    finally:
        os.close(fd)


class _Loader:
    """One load: walks the tree, reads and validates files, collects rows and skips."""

    def __init__(self, profile: Profile, max_file_bytes: int) -> None:
        self.base = str(profile.episodic_dir)
        self.profile_real = os.path.realpath(profile.profile_dir)
        self.max_file_bytes = max_file_bytes
        self.columns = _Columns()
        self.skipped: list[SkippedFile] = []
        self.files_seen = 0
        self.visited_dirs: set[str] = set()

    def skip(self, rel: str, reason: str, detail: str = "") -> None:
        self.skipped.append(SkippedFile(rel, reason, detail))

    def walk(self, folder: str, rel_prefix: str, category: str | None) -> None:
        real = os.path.realpath(folder)
        if real in self.visited_dirs:
            return
        self.visited_dirs.add(real)
        with os.scandir(folder) as iterator:
            entries = sorted(iterator, key=lambda entry: entry.name)
        for entry in entries:
            rel = rel_prefix + entry.name
            if entry.is_symlink() and not self._inside_profile(entry.path):
                self.files_seen += 1
                self.skip(rel, "symlink_outside_profile",
                          f"links to {os.path.realpath(entry.path)}")
            elif entry.is_dir():
                sub_category = category
                if rel_prefix == "" and not (entry.name.isdigit() and len(entry.name) == 4):
                    sub_category = entry.name
                self.walk(entry.path, rel + "/", sub_category)
            else:
                self.files_seen += 1
                self.load_file(entry.path, entry.name, rel, category)

    def _inside_profile(self, path: str) -> bool:
        target = os.path.realpath(path)
        return target == self.profile_real or target.startswith(self.profile_real + os.sep)

    def load_file(self, path: str, name: str, rel: str, category: str | None) -> None:
        if not name.endswith(".json"):
            if name.endswith(".json.enc"):
                self.skip(rel, "encrypted", "encrypted memory (AES-256); no key to read it")
            else:
                self.skip(rel, "not_memory_file", "not a *.json or *.json.enc file")
            return
        try:
            data = _read_limited(path, self.max_file_bytes)
        except OSError as exc:
            self.skip(rel, "unreadable", exc.strerror or type(exc).__name__)
            return
        if data is None:
            self.skip(rel, "too_large", f"larger than {self.max_file_bytes} bytes")
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._skip_decode_error(rel, data, exc)
            return
        if not isinstance(obj, dict):
            self.skip(rel, "not_object", f"the JSON value is a {type(obj).__name__}")
            return
        try:
            fields = _validate(obj, name)
        except _Skip as problem:
            self.skip(rel, problem.reason, problem.detail)
            return
        self._add_row(fields, rel, category)

    def _skip_decode_error(self, rel: str, data: bytes, exc: Exception) -> None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad:
            self.skip(rel, "not_utf8", f"invalid UTF-8 at byte {bad.start}")
            return
        self.skip(rel, "invalid_json", str(exc).split("\n", 1)[0][:120])

    def _add_row(self, fields: dict[str, Any], rel: str, category: str | None) -> None:
        memory_id = fields["id"]
        first = self.columns.seen_ids.get(memory_id)
        if first is not None:
            self.skip(rel, "duplicate_id", f"id {memory_id!r} already loaded from {first}")
            return
        self.columns.seen_ids[memory_id] = rel
        mode, source = memory_mode(fields["type"], fields["metadata"])
        values = self.columns.values
        fields["mode"] = mode
        fields["mode_source"] = source
        fields["category"] = category
        fields["path"] = rel
        for name, column in values.items():
            column.append(fields[name])


def load_memories(
    profile: Profile, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> tuple[pd.DataFrame, LoadReport]:
    """Load every memory of ``profile`` into the memories table.

    Args:
        profile: the profile to read; its episodic folder must exist.
        max_file_bytes: files larger than this are skipped as ``too_large``.

    Returns:
        The memories table (columns :data:`MEMORY_COLUMNS`, sorted by timestamp then id) and a
        :class:`LoadReport` naming every skipped file and its reason.

    Raises:
        ProfileError: the profile's episodic folder does not exist (one line naming it).
    """
    profile.require_exists()
    loader = _Loader(profile, max_file_bytes)
    loader.walk(loader.base, "", None)
    frame = loader.columns.frame()
    report = LoadReport(
        episodic_dir=profile.episodic_dir,
        files_seen=loader.files_seen,
        loaded=len(frame),
        skipped=tuple(sorted(loader.skipped, key=lambda item: item.path)),
    )
    return frame, report
