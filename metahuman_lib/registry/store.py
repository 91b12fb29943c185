"""The registry file itself: loading and checking it, reading a profile's part, timestamped
backups and restore, and the file lock every change takes."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock, Timeout

from metahuman_lib._io import (
    atomic_write_bytes,
    storage_error,
)
from metahuman_lib.errors import RegistryError
from metahuman_lib.profile import Profile

SCHEMA = 1


STATUSES = ("candidate", "promoted", "rejected", "failed", "smoke_test")


MIRROR_KEYS = ("original_base_model", "current_base_model", "model_type", "training_history")


DEFAULT_VERSIONING = {"enabled": True, "auto_update_base": True, "keep_all_versions": True}


DEFAULT_KEEP = 3


BACKUPS_KEPT = 200


LOCK_TIMEOUT_S = 30.0


def utc_now() -> datetime:
    """The current UTC time; only called at the edges (CLI, notebooks) and passed in as ``now``."""
    return datetime.now(UTC)


def parse_now(value: str | datetime | None) -> datetime:
    """``now`` from a notebook parameter: an ISO string, a datetime, or empty for the current time."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise RegistryError(f"now must be timezone-aware (UTC), got {value!r}")
        return value.astimezone(UTC)
    if not value:
        return utc_now()
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise RegistryError(f"now must carry a timezone, e.g. '2026-01-01T00:00:00Z'; got {value!r}")
    return parsed.astimezone(UTC)


def _iso(now: datetime) -> str:
    if now.tzinfo is None:
        raise RegistryError("now must be timezone-aware (UTC)")
    return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def backups_dir(registry_path: Path) -> Path:
    """Where timestamped backups of the registry go: ``etc/model-registry.backups/``."""
    registry_path = Path(registry_path)
    return registry_path.parent / f"{registry_path.stem}.backups"


def _lock_file(registry_path: Path) -> Path:
    return Path(registry_path).with_name(Path(registry_path).name + ".lock")


def _rel(root: Path, path: Path) -> str:
    """A path as the registry stores it: relative to the root when inside it (like MetaHuman OS)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _abs(root: Path, stored: str) -> Path:
    path = Path(stored)
    return path if path.is_absolute() else root / path


def list_backups(registry_path: Path) -> list[Path]:
    """Backups of the registry, oldest first (names sort by their UTC timestamp)."""
    folder = backups_dir(registry_path)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{Path(registry_path).stem}.*.json"))


def _corrupt(registry_path: Path, reason: str) -> RegistryError:
    backups = list_backups(registry_path)
    if backups:
        hint = (f"The newest backup is {backups[-1]}; restore it with: "
                f"metahuman registry restore {backups[-1]} --root {Path(registry_path).parent.parent}")
    else:
        hint = f"No backup exists in {backups_dir(registry_path)}; fix or move the file away by hand."
    return RegistryError(f"The model registry {registry_path} is corrupt ({reason}). {hint}")


def _validate(data: Any) -> str | None:
    """Why ``data`` is not a usable registry, or None when it is."""
    if not isinstance(data, dict):
        return f"top level is {type(data).__name__}, not an object"
    if not isinstance(data.get("training_history", []), list):
        return "training_history is not a list"
    section = data.get("workbench")
    if section is None:
        return None
    if not isinstance(section, dict) or not isinstance(section.get("profiles"), dict):
        return "workbench.profiles is missing or not an object"
    for name, state in section["profiles"].items():
        if not isinstance(state, dict) or not isinstance(state.get("versions"), list):
            return f"workbench.profiles.{name}.versions is not a list"
        for record in state["versions"]:
            if not isinstance(record, dict) or not isinstance(record.get("version"), int):
                return f"workbench.profiles.{name} has a version without an integer 'version'"
            if record.get("status") not in STATUSES:
                return f"workbench.profiles.{name} v{record.get('version')} has status {record.get('status')!r}"
    return None


def load_registry(registry_path: Path) -> dict[str, Any]:
    """The registry as a dict (an empty one when the file does not exist yet).

    Raises:
        RegistryError: the file is not valid JSON or not a registry; the message names the newest
            backup and the command that restores it.
    """
    registry_path = Path(registry_path)
    if not registry_path.exists():
        return {}
    try:
        data = orjson.loads(registry_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise _corrupt(registry_path, f"not valid JSON: {exc}") from exc
    problem = _validate(data)
    if problem:
        raise _corrupt(registry_path, problem)
    return data


def _backup_name(registry_path: Path, now: datetime) -> Path:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = backups_dir(registry_path)
    counter = 0
    while (candidate := folder / f"{registry_path.stem}.{stamp}-{counter:03d}.json").exists():
        counter += 1  # several changes within one microsecond (or one fixed ``now``) keep their order
    return candidate


def _write_backup(registry_path: Path, now: datetime, keep: int = BACKUPS_KEPT) -> Path | None:
    """Copy the current file to a timestamped backup (atomically) and drop the oldest beyond ``keep``."""
    if not registry_path.exists():
        return None
    target = _backup_name(registry_path, now)
    atomic_write_bytes(target, registry_path.read_bytes())
    for old in list_backups(registry_path)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def backup(registry_path: Path, *, now: datetime) -> Path:
    """Write a timestamped backup of the registry now (under the lock) and return its path."""
    registry_path = Path(registry_path)
    with _locked(registry_path):
        load_registry(registry_path)
        target = _write_backup(registry_path, now)
    if target is None:
        raise RegistryError(f"Nothing to back up: {registry_path} does not exist yet.")
    return target


def restore(registry_path: Path, source: Path | None = None, *, now: datetime) -> Path:
    """Replace the registry with a backup (the newest when ``source`` is None).

    The file being replaced is itself backed up first, even when it is corrupt, so a restore
    can always be undone.
    """
    registry_path = Path(registry_path)
    if source is None:
        backups = list_backups(registry_path)
        if not backups:
            raise RegistryError(f"No backup to restore in {backups_dir(registry_path)}.")
        source = backups[-1]
    source = Path(source)
    if not source.is_file():
        raise RegistryError(f"Backup {source} does not exist; list them with: metahuman registry backup --list")
    try:
        data = orjson.loads(source.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"Backup {source} is not valid JSON ({exc}); pick another backup.") from exc
    problem = _validate(data)
    if problem:
        raise RegistryError(f"Backup {source} is not a usable registry ({problem}); pick another backup.")
    with _locked(registry_path):
        _write_backup(registry_path, now)
        atomic_write_bytes(registry_path, source.read_bytes())
    return source


@contextmanager
def _locked(registry_path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    lock_path = _lock_file(registry_path)
    lock = FileLock(str(lock_path), timeout=timeout_s)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as exc:  # a read-only folder: one line, not a traceback
        raise storage_error(registry_path, exc) from exc
    except Timeout as exc:
        raise RegistryError(
            f"The model registry is locked by another process ({lock_path}) for more than "
            f"{timeout_s:.0f} s; wait for it to finish and try again."
        ) from exc
    try:
        stale = [*registry_path.parent.glob(f".{registry_path.name}.*.tmp"),
                 *backups_dir(registry_path).glob(".*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)  # left by a writer killed mid-write; we hold the lock
        yield
    finally:
        lock.release()


def _section(data: dict[str, Any]) -> dict[str, Any]:
    return data.setdefault("workbench", {"schema": SCHEMA, "mirror_profile": None, "profiles": {}})


def _profile_state(data: dict[str, Any], username: str, *, create: bool) -> dict[str, Any] | None:
    profiles = _section(data)["profiles"] if create else (data.get("workbench") or {}).get("profiles", {})
    if username not in profiles:
        if not create:
            return None
        profiles[username] = {"original_base_model": None,
                              "aliases": {"current": None, "previous": None}, "versions": []}
    return profiles[username]


def _version_key(record: dict[str, Any]) -> int:
    return int(record["version"])


def _find(state: dict[str, Any], version: int | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return next((r for r in state["versions"] if r["version"] == version), None)


def _require(state: dict[str, Any] | None, profile: Profile, version: int) -> dict[str, Any]:
    record = _find(state, version) if state else None
    if record is None:
        known = [f"v{r['version']}" for r in state["versions"]] if state else []
        close = difflib.get_close_matches(f"v{version}", known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise RegistryError(
            f"Profile {profile.username!r} has no version {version} "
            f"(known: {', '.join(known) or 'none'}).{hint}"
        )
    return record


def profile_state(profile: Profile) -> dict[str, Any]:
    """This profile's part of the registry (an empty lineage when it has none)."""
    data = load_registry(profile.registry_path)
    state = _profile_state(data, profile.username, create=False)
    if state is None:
        return {"original_base_model": None, "aliases": {"current": None, "previous": None}, "versions": []}
    return state


def get_version(profile: Profile, version: int) -> dict[str, Any]:
    """One version record of this profile; the error lists the known versions."""
    return _require(profile_state(profile), profile, version)


def current_version(profile: Profile) -> dict[str, Any] | None:
    """The record the ``current`` alias points at, or None when on the original base."""
    state = profile_state(profile)
    return _find(state, state["aliases"].get("current"))


def show(profile: Profile) -> dict[str, Any]:
    """A summary: which model the next run builds on, the aliases, and counts by status."""
    data = load_registry(profile.registry_path)
    state = profile_state(profile)
    current = _find(state, state["aliases"].get("current"))
    counts = {status: sum(r["status"] == status for r in state["versions"]) for status in STATUSES}
    return {
        "registry": str(profile.registry_path),
        "username": profile.username,
        "mirrored_for_metahuman_os": (data.get("workbench") or {}).get("mirror_profile") == profile.username,
        "original_base_model": state.get("original_base_model"),
        "current_version": current["version"] if current else None,
        "current_model": current["output_path"] if current else state.get("original_base_model"),
        "previous_version": state["aliases"].get("previous"),
        "versions": len(state["versions"]),
        **{f"{status}_versions": count for status, count in counts.items()},
    }


def _move_current(state: dict[str, Any], version: int | None) -> None:
    aliases = state["aliases"]
    if aliases.get("current") != version:
        aliases["previous"] = aliases.get("current")
        aliases["current"] = version
