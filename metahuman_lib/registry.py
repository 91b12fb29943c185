"""The model registry ``etc/model-registry.json``: versions, aliases, lineage, backups, run lock.

MetaHuman OS reads this file (spec section 4): ``original_base_model``, ``current_base_model``,
``model_type``, ``training_history`` and ``versioning`` stay at the top level, in its format.
Everything the workbench adds lives beside them under ``workbench``::

    {"original_base_model": ..., "current_base_model": ..., "model_type": ...,
     "training_history": [...], "versioning": {...},
     "workbench": {"schema": 1, "mirror_profile": "greggles", "mirror_digest": "<sha256>",
                   "profiles": {"greggles": {"original_base_model": ...,
                                             "aliases": {"current": 3, "previous": 2},
                                             "versions": [{...}, ...]},
                                "alice": {...}}}}

Two profiles under one root never mix lineages: each profile has its own version numbers,
aliases and original base under ``workbench.profiles.<username>``, and a run can only be
registered for the profile whose ``out/fine-tuned-models/`` folder holds it. The MetaHuman OS
fields at the top level describe exactly ONE profile, ``mirror_profile`` (the first profile that
was imported or registered; change it with :func:`set_mirror_profile`); they are regenerated from
that profile's lineage on every write. When something else (MetaHuman OS itself) changes them, the
digest no longer matches and writes are refused until ``registry import`` takes the changes in.

Every change runs in :func:`_transaction`: a file lock, a timestamped backup of the previous file
under ``etc/model-registry.backups/``, and an atomic write (temporary file, fsync, rename).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from filelock import FileLock, Timeout

from metahuman_lib._io import (
    atomic_write_bytes,
    atomic_write_json,
    read_json,
    sha256_file,
    sha256_tree,
    storage_error,
)
from metahuman_lib.errors import ProfileError, RegistryError
from metahuman_lib.profile import Profile

if TYPE_CHECKING:
    import pandas as pd

SCHEMA = 1
STATUSES = ("candidate", "promoted", "rejected", "failed", "smoke_test")
MIRROR_KEYS = ("original_base_model", "current_base_model", "model_type", "training_history")
DEFAULT_VERSIONING = {"enabled": True, "auto_update_base": True, "keep_all_versions": True}
DEFAULT_KEEP = 3
BACKUPS_KEPT = 200
LOCK_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------------------------
# time and paths
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# loading, corruption, backups
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# the MetaHuman OS mirror
# --------------------------------------------------------------------------------------------


def _digest(data: dict[str, Any]) -> str:
    mirrored = {key: data.get(key) for key in MIRROR_KEYS}
    return hashlib.sha256(orjson.dumps(mirrored, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _model_type(model: str | None, root: Path) -> str:
    if model is None:
        return "huggingface"
    if model.startswith(("/", "./", "../", "profiles/")) or _abs(root, model).exists():
        return "local"
    return "huggingface"


def _history_entry(record: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """One MetaHuman OS ``training_history`` entry for a version (imported ones as they were).

    MetaHuman OS reads ``training_success`` as "a usable model" (``getLatestModel`` filters on it,
    ``registerTrainingRun`` drops entries without it), so only a version that was promoted says
    true; ``base_model_used`` is the model the version was trained from: its parent version's
    weights when it continues one, else the base.
    """
    if record.get("metahuman_os") is not None:
        entry = dict(record["metahuman_os"])
        if record.get("gguf_path") is None:
            entry.pop("gguf_path", None)
        if record.get("weights_pruned_at"):
            entry["weights_pruned"] = True
        return entry
    entry: dict[str, Any] = {
        "version": record["version"],
        "run_id": record.get("run_id"),
        "run_label": record.get("run_label"),
        "timestamp": record.get("trained_at") or record.get("registered_at"),
        "base_model_used": _trained_from(record, state),
        "output_model_path": record.get("output_path"),
    }
    if record.get("gguf_path"):
        entry["gguf_path"] = record["gguf_path"]
    entry["samples_trained"] = (record.get("samples") or {}).get("train")
    entry["mode_filter"] = record.get("mode_filter")
    entry["training_success"] = any(event.get("event") == "promoted" for event in record.get("events") or [])
    entry["workbench_status"] = record.get("status")
    return entry


def _trained_from(record: dict[str, Any], state: dict[str, Any]) -> str | None:
    parent = _find(state, record.get("parent_version"))
    if parent is not None and parent.get("output_path"):
        return parent["output_path"]
    return record.get("base_model")


def lineage_base(parent: dict[str, Any], method: str | None) -> str | None:
    """The base a child of ``parent`` sits on: a LoRA on a full model sits on that model's folder;
    an adapter's child keeps the adapter's base; a full fine-tune keeps the lineage's base."""
    output = parent.get("output_path")
    kind = parent.get("output_kind") or (Path(output).name if output else None)  # imported: ".../model"
    if method == "lora" and kind == "model":
        return output
    return parent.get("base_model")


def _refresh_mirror(data: dict[str, Any], root: Path) -> None:
    """Regenerate the MetaHuman OS fields from the mirror profile's lineage."""
    section = data["workbench"]
    name = section.get("mirror_profile")
    if name is None or name not in section["profiles"]:
        return
    state = section["profiles"][name]
    current = _find(state, state["aliases"].get("current"))
    original = state.get("original_base_model")
    data["original_base_model"] = original
    data["current_base_model"] = current["output_path"] if current else original
    data["model_type"] = _model_type(data["current_base_model"], root)
    data["training_history"] = [_history_entry(r, state) for r in sorted(state["versions"], key=_version_key)]
    data.setdefault("versioning", dict(DEFAULT_VERSIONING))
    section["mirror_digest"] = _digest(data)
    data["workbench"] = data.pop("workbench")  # MetaHuman OS's fields first, ours after them


def _check_drift(data: dict[str, Any], registry_path: Path) -> None:
    """Refuse to overwrite MetaHuman OS fields that were changed outside the workbench."""
    section = data.get("workbench")
    has_metahuman_fields = any(key in data for key in MIRROR_KEYS)
    if section is None:
        if has_metahuman_fields and data.get("training_history"):
            raise RegistryError(
                f"{registry_path} holds a MetaHuman OS registry the workbench has not imported yet; "
                "import it into the profile it belongs to first: "
                "metahuman registry import --username USER"
            )
        return
    digest = section.get("mirror_digest")
    if digest is not None and section.get("mirror_profile") and digest != _digest(data):
        raise RegistryError(
            f"The MetaHuman OS fields of {registry_path} were changed outside the workbench "
            f"(mirror of profile {section['mirror_profile']!r}); take the changes in with: "
            f"metahuman registry import --username {section['mirror_profile']}"
        )


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


@contextmanager
def _transaction(profile: Profile, now: datetime) -> Iterator[dict[str, Any]]:
    """Lock, load, let the caller change the dict, then back up the old file and write atomically."""
    path = profile.registry_path
    with _locked(path):
        data = load_registry(path)
        _check_drift(data, path)
        yield data
        section = _section(data)
        section["schema"] = SCHEMA
        if section.get("mirror_profile") is None and profile.username in section["profiles"]:
            section["mirror_profile"] = profile.username
        _refresh_mirror(data, profile.root)
        _write_backup(path, now)
        atomic_write_json(path, data)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


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


HISTORY_COLUMNS = (
    "version", "status", "aliases", "parent_version", "run_label", "trained_at", "method",
    "base_model", "samples_train", "recent_loss_before", "recent_loss_after", "old_loss_before",
    "old_loss_after", "old_change_pct", "gate_passed", "weights_present", "output_path",
)


def _aliases_of(state: dict[str, Any], version: int) -> str:
    return ",".join(name for name, value in sorted(state["aliases"].items()) if value == version)


def _history_row(state: dict[str, Any], record: dict[str, Any], root: Path) -> dict[str, Any]:
    figures = (record.get("evaluation") or {}).get("figures") or {}
    return {
        "version": record["version"],
        "status": record["status"],
        "aliases": _aliases_of(state, record["version"]),
        "parent_version": record.get("parent_version"),
        "run_label": record.get("run_label"),
        "trained_at": record.get("trained_at"),
        "method": record.get("method"),
        "base_model": record.get("base_model"),
        "samples_train": (record.get("samples") or {}).get("train"),
        "recent_loss_before": figures.get("recent_loss_before"),
        "recent_loss_after": figures.get("recent_loss_after"),
        "old_loss_before": figures.get("old_loss_before"),
        "old_loss_after": figures.get("old_loss_after"),
        "old_change_pct": figures.get("old_change_pct"),
        "gate_passed": (record.get("evaluation") or {}).get("passed"),
        "weights_present": bool(record.get("output_path"))
        and not record.get("weights_pruned_at") and _abs(root, record["output_path"]).exists(),
        "output_path": record.get("output_path"),
    }


def history(profile: Profile) -> pd.DataFrame:
    """All versions of this profile as a pandas DataFrame (columns :data:`HISTORY_COLUMNS`)."""
    import pandas as pd

    state = profile_state(profile)
    rows = [_history_row(state, r, profile.root) for r in sorted(state["versions"], key=_version_key)]
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    frame["parent_version"] = frame["parent_version"].astype("Int64")  # versions stay integers
    return frame


def lineage(profile: Profile, version: int | None = None) -> list[dict[str, Any]]:
    """The chain from ``version`` (default: current) back to the original base, newest first.

    The last element is ``{"version": None, "model": <original base>}``.
    """
    state = profile_state(profile)
    start = version if version is not None else state["aliases"].get("current")
    chain: list[dict[str, Any]] = []
    seen: set[int] = set()
    cursor = _require(state, profile, start) if start is not None else None
    while cursor is not None:
        if cursor["version"] in seen:
            raise RegistryError(f"Lineage of {profile.username!r} loops at v{cursor['version']}; restore a backup.")
        seen.add(cursor["version"])
        chain.append({"version": cursor["version"], "status": cursor["status"],
                      "run_label": cursor.get("run_label"), "model": cursor.get("output_path"),
                      "parent_version": cursor.get("parent_version")})
        cursor = _find(state, cursor.get("parent_version"))
    chain.append({"version": None, "status": "original", "run_label": None,
                  "model": state.get("original_base_model"), "parent_version": None})
    return chain


# --------------------------------------------------------------------------------------------
# verifying a run folder
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCheck:
    """Whether a run folder is complete and verified, with every problem as a snake_case reason."""

    run_dir: Path
    problems: tuple[tuple[str, str], ...] = ()
    output_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        return "; ".join(f"{reason}: {detail}" for reason, detail in self.problems)


def _safetensors_complete(path: Path) -> str | None:
    """Why a safetensors file is truncated or malformed, or None when its size matches its header."""
    size = path.stat().st_size
    if size < 8:
        return f"{path.name} has {size} bytes"
    with open(path, "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if header_len <= 0 or 8 + header_len > size:
            return f"{path.name} header length {header_len} exceeds the file"
        try:
            header = orjson.loads(handle.read(header_len))
        except orjson.JSONDecodeError:
            return f"{path.name} header is not JSON"
    ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
    expected = 8 + header_len + max(ends, default=0)
    if size != expected:
        return f"{path.name} has {size} bytes, its header says {expected}"
    return None


def _check_output(run_dir: Path) -> tuple[Path | None, list[tuple[str, str]]]:
    for kind, config_name in (("adapter", "adapter_config.json"), ("model", "config.json")):
        folder = run_dir / "output" / kind
        if not folder.is_dir():
            continue
        problems = []
        if not (folder / config_name).is_file():
            problems.append(("output_incomplete", f"output/{kind}/{config_name} is missing"))
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            problems.append(("output_incomplete", f"output/{kind}/ has no *.safetensors weights"))
        for weight in weights:
            why = _safetensors_complete(weight)
            if why:
                problems.append(("output_truncated", why))
        return folder, problems
    return None, [("output_missing", "neither output/adapter/ nor output/model/ exists")]


def _check_checksums(run_dir: Path, manifest: dict[str, Any], output: Path | None) -> list[tuple[str, str]]:
    problems = []
    for name, entry in sorted((manifest.get("files") or {}).items()):
        path = run_dir / name
        if not path.is_file():
            problems.append(("checksum_file_missing", f"{name} is recorded in the manifest but missing"))
        elif sha256_file(path) != entry.get("sha256"):
            problems.append(("checksum_mismatch", f"{name} does not match its recorded sha256"))
    expected_tree = (manifest.get("training") or {}).get("output_sha256")
    if expected_tree and output is not None and sha256_tree(output) != expected_tree:
        problems.append(("checksum_mismatch", f"{_rel(run_dir, output)} does not match training.output_sha256"))
    return problems


def verify_run(run_dir: Path) -> RunCheck:
    """Check that a run finished and its outputs arrived whole (defect 9 of MetaHuman OS).

    A run is verified when ``status.json`` says ``succeeded``, ``metrics.json`` has ``before`` and
    ``after``, ``output/adapter/`` (with ``adapter_config.json``) or ``output/model/`` (with
    ``config.json``) holds safetensors whose sizes match their headers, and every sha256 recorded in
    the manifest (``files`` and ``training.output_sha256``) matches the file on disk.
    """
    run_dir = Path(run_dir)
    problems: list[tuple[str, str]] = []
    status = _read_optional(run_dir / "status.json")
    if status is None:
        problems.append(("status_missing", "status.json is missing or unreadable"))
    elif status.get("state") != "succeeded":
        problems.append(("run_not_succeeded", f"status.json state is {status.get('state')!r}"))
    metrics = _read_optional(run_dir / "metrics.json")
    if not isinstance(metrics, dict) or "before" not in metrics or "after" not in metrics:
        problems.append(("metrics_missing", "metrics.json is missing or lacks before/after"))
    output, output_problems = _check_output(run_dir)
    problems += output_problems
    manifest = _read_optional(run_dir / "manifest.json") or {}
    problems += _check_checksums(run_dir, manifest, output)
    return RunCheck(run_dir=run_dir, problems=tuple(problems), output_dir=output)


def _read_optional(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, orjson.JSONDecodeError):
        return None


# --------------------------------------------------------------------------------------------
# registering
# --------------------------------------------------------------------------------------------


def _run_label_of(profile: Profile, run_dir: Path) -> str:
    run_dir = Path(run_dir).resolve()
    label = run_dir.name
    try:
        expected = profile.run_dir(label).resolve()
    except ProfileError as exc:
        raise RegistryError(f"{run_dir} is not a run folder (its name is not a run label).") from exc
    if expected != run_dir:
        raise RegistryError(
            f"Run folder {run_dir} does not belong to profile {profile.username!r} "
            f"(expected it at {expected}); register it under the profile that trained it."
        )
    return label


def _parent_version(train_config: dict[str, Any]) -> int | None:
    """The declared parent: ``parent_version``, or ``parent`` as N or ``{"version": N, "kind": ...}``."""
    for key in ("parent_version", "parent"):
        value = train_config.get(key)
        if isinstance(value, dict):
            value = None if value.get("kind") == "base" else value.get("version")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _count_lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def _trained_at(status: dict[str, Any], label: str) -> str:
    finished = status.get("finished_at") or status.get("updated_at")
    if isinstance(finished, str) and finished:
        return finished
    stamp = datetime.strptime(label[:17], "%Y-%m-%d-%H%M%S").replace(tzinfo=UTC)
    return _iso(stamp)


def _loaded(effective: dict[str, Any], train_config: dict[str, Any]) -> dict[str, Any]:
    """What the trainer really loaded (``effective_config.json``'s ``loaded``), with checksums.

    ``base_model`` is the lineage's base (what a LoRA adapter sits on), ``loaded_from`` the weights
    folder or hub id actually read, ``built_on`` the parent version the trainer loaded (None for a
    foundation run), with the sha256 of the parent's weights as the trainer found them.
    """
    loaded = effective.get("loaded") if isinstance(effective.get("loaded"), dict) else {}
    parent = loaded.get("parent") if isinstance(loaded.get("parent"), dict) else None
    base = (loaded.get("base_model") or effective.get("base_model") or effective.get("base_model_path")
            or train_config.get("base_model"))
    built_on = None
    if parent is not None:
        built_on = {"version": parent.get("version"), "kind": parent.get("kind"),
                    "tree_sha256": parent.get("tree_sha256"), "weights_sha256": parent.get("weights_sha256"),
                    "adapter": loaded.get("adapter")}
    return {"base_model": base, "loaded_from": loaded.get("weights_from") or base,
            "base_model_sha256": effective.get("base_model_sha256") or train_config.get("base_model_sha256"),
            "built_on": built_on, "trainer_reported": bool(loaded)}


def _check_built_on_parent(profile: Profile, state: dict[str, Any], record: dict[str, Any]) -> None:
    """Refuse a run that says it builds on a parent but did not load it (MetaHuman OS defect 8)."""
    parent_version, built_on = record["parent_version"], record["loaded"]["built_on"]
    if parent_version is None or not record["loaded"]["trainer_reported"]:
        return
    where = f"Run {record['run_label']} of {profile.username!r} declares parent v{parent_version}"
    if built_on is None or built_on.get("version") != parent_version:
        got = "nothing" if built_on is None else f"v{built_on.get('version')}"
        raise RegistryError(f"{where} but the trainer loaded {got} (effective_config.json loaded.parent); "
                            "it did not build on its parent. Re-run it from the parent's weights.")
    expected = _require(state, profile, parent_version).get("output_sha256")
    found = built_on.get("tree_sha256")
    if expected and found and expected != found:
        raise RegistryError(f"{where} but the parent weights it loaded (sha256 {found[:12]}…) are not the "
                            f"registered v{parent_version} ({expected[:12]}…). Re-run it from the parent's weights.")


def _samples(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, Any] = {
        "train": _count_lines(run_dir / "dataset.jsonl"),
        "eval_recent": _count_lines(run_dir / "eval_recent.jsonl"),
        "eval_old": _count_lines(run_dir / "eval_old.jsonl"),
    }
    selection_counts = (manifest.get("selection") or {}).get("counts")
    if isinstance(selection_counts, dict):
        counts["selection"] = selection_counts
    return counts


def _run_record(profile: Profile, run_dir: Path, check: RunCheck, now: datetime) -> dict[str, Any]:
    """Everything the registry records about a verified run (no version number yet)."""
    label = _run_label_of(profile, run_dir)
    manifest = _read_optional(run_dir / "manifest.json") or {}
    train_config = _read_optional(run_dir / "train_config.json") or {}
    effective = _read_optional(run_dir / "effective_config.json") or {}
    status = _read_optional(run_dir / "status.json") or {}
    loaded = _loaded(effective, train_config)
    parent_version = _parent_version(train_config)
    if parent_version is None and loaded["built_on"] is not None:
        parent_version = loaded["built_on"].get("version")
    selection = manifest.get("selection")
    dataset = run_dir / "dataset.jsonl"
    return {
        "status": "candidate",
        "parent_version": parent_version,
        "run_label": label,
        "run_id": manifest.get("run_id") or hashlib.sha256(label.encode()).hexdigest()[:16],
        "run_dir": _rel(profile.root, run_dir),
        "registered_at": _iso(now),
        "trained_at": _trained_at(status, label),
        "method": effective.get("method") or train_config.get("method")
        or ("lora" if check.output_dir and check.output_dir.name == "adapter" else "full"),
        "base_model": loaded["base_model"],
        "base_model_sha256": loaded["base_model_sha256"],
        "loaded": loaded,
        "output_kind": check.output_dir.name if check.output_dir else None,
        "output_path": _rel(profile.root, check.output_dir) if check.output_dir else None,
        "output_sha256": sha256_tree(check.output_dir) if check.output_dir else None,
        "gguf_path": None,
        "dataset_sha256": sha256_file(dataset) if dataset.is_file() else None,
        "selection_sha256": hashlib.sha256(orjson.dumps(selection, option=orjson.OPT_SORT_KEYS)).hexdigest()
        if selection is not None else None,
        "samples": _samples(run_dir, manifest),
        "mode_filter": train_config.get("mode_filter") or ((selection or {}).get("parameters") or {}).get("mode"),
        "smoke_test": bool(((((manifest.get("cycle") or {}).get("parameters") or {}).get("blocks") or {})
                            .get("pipeline") or {}).get("smoke_test")),
        "evaluation": manifest.get("evaluation"),
        "weights_pruned_at": None,
        "events": [{"at": _iso(now), "event": "registered"}],
    }


def register(profile: Profile, run_dir: Path, *, now: datetime) -> dict[str, Any]:
    """Add a complete, verified run as the next version of this profile.

    The version is a ``candidate``; when the run's manifest already holds a failed gate decision
    (``evaluation.passed`` false, written by the evaluation step) it is recorded as ``rejected``.
    Promotion is a separate step (:func:`promote`).

    Raises:
        RegistryError: the run is incomplete or unverified (each problem named), belongs to
            another profile, is already registered, or names a parent this profile does not have.
    """
    run_dir = Path(run_dir).resolve()
    check = verify_run(run_dir)
    if not check.ok:
        raise RegistryError(f"Run {run_dir.name} is not complete and verified, not registering it: {check.describe()}")
    record = _run_record(profile, run_dir, check, now)
    with _transaction(profile, now) as data:
        state = _profile_state(data, profile.username, create=True)
        _refuse_duplicate(state, profile, record["run_label"])
        if record["parent_version"] is not None:
            parent = _require(state, profile, record["parent_version"])
            _check_built_on_parent(profile, state, record)
            record["base_model"] = lineage_base(parent, record["method"]) or record["base_model"]
        elif state.get("original_base_model") is None:
            state["original_base_model"] = record["base_model"]
        record["version"] = max((r["version"] for r in state["versions"]), default=0) + 1
        evaluation = record.get("evaluation") or {}
        if record.get("smoke_test"):
            record["status"] = "smoke_test"
            record["events"].append({"at": _iso(now), "event": "smoke_test",
                                     "reason": "trained below the sample-count gate; never made current"})
        elif evaluation.get("passed") is False:
            record["status"] = "rejected"
            record["events"].append({"at": _iso(now), "event": "rejected",
                                     "reasons": list(evaluation.get("reasons") or [])})
        state["versions"].append(record)
    return record


def _refuse_duplicate(state: dict[str, Any], profile: Profile, label: str) -> None:
    existing = next((r for r in state["versions"] if r.get("run_label") == label), None)
    if existing is not None:
        raise RegistryError(
            f"Run {label} is already registered for {profile.username!r} as v{existing['version']}."
        )


def record_failed(profile: Profile, run_label: str, reason: str, *, now: datetime) -> dict[str, Any]:
    """Record a run that failed as a ``failed`` version, so the history shows it and why.

    A failed version has no weights and can never be promoted or rolled back to.
    """
    run_dir = profile.run_dir(run_label)
    with _transaction(profile, now) as data:
        state = _profile_state(data, profile.username, create=True)
        _refuse_duplicate(state, profile, run_label)
        record = {
            "version": max((r["version"] for r in state["versions"]), default=0) + 1,
            "status": "failed", "parent_version": None, "run_label": run_label,
            "run_id": hashlib.sha256(run_label.encode()).hexdigest()[:16],
            "run_dir": _rel(profile.root, run_dir), "registered_at": _iso(now),
            "trained_at": _iso(now), "method": None, "base_model": None, "output_path": None,
            "gguf_path": None, "samples": {}, "mode_filter": None, "evaluation": None,
            "weights_pruned_at": None, "failure": reason,
            "events": [{"at": _iso(now), "event": "failed", "reason": reason}],
        }
        state["versions"].append(record)
    return record


def set_evaluation(profile: Profile, version: int, evaluation: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """Store a gate decision on a version; a failed decision turns a candidate into ``rejected``."""
    with _transaction(profile, now) as data:
        state = _profile_state(data, profile.username, create=True)
        record = _require(state, profile, version)
        record["evaluation"] = evaluation
        if evaluation.get("passed") is False and record["status"] == "candidate":
            record["status"] = "rejected"
            record["events"].append({"at": _iso(now), "event": "rejected",
                                     "reasons": list(evaluation.get("reasons") or [])})
    return record


def set_gguf_path(profile: Profile, version: int, gguf: Path, *, now: datetime) -> dict[str, Any]:
    """Record the GGUF file made from a version's weights (MetaHuman OS's ``gguf_path``)."""
    with _transaction(profile, now) as data:
        state = _profile_state(data, profile.username, create=True)
        record = _require(state, profile, version)
        record["gguf_path"] = _rel(profile.root, Path(gguf))
        record["events"].append({"at": _iso(now), "event": "gguf_written", "path": record["gguf_path"]})
    return record


# --------------------------------------------------------------------------------------------
# promote, rollback, reset, prune
# --------------------------------------------------------------------------------------------


def _weights_present(profile: Profile, record: dict[str, Any]) -> bool:
    path = record.get("output_path")
    return bool(path) and not record.get("weights_pruned_at") and _abs(profile.root, path).exists()


def _move_current(state: dict[str, Any], version: int | None) -> None:
    aliases = state["aliases"]
    if aliases.get("current") != version:
        aliases["previous"] = aliases.get("current")
        aliases["current"] = version


def promote(profile: Profile, version: int, *, now: datetime, force: bool = False) -> dict[str, Any]:
    """Make ``version`` the model the next run builds on (``current_base_model``).

    Only a version whose gate passed is promoted; ``force`` overrides a missing or failed gate
    (the event records that it was forced). Failed versions and versions without weights never are.
    """
    with _transaction(profile, now) as data:
        state = _profile_state(data, profile.username, create=True)
        record = _require(state, profile, version)
        _refuse_unusable(profile, record)
        if record["status"] == "smoke_test":
            raise RegistryError(f"v{version} of {profile.username!r} is a smoke test, trained below the sample-count "
                                "gate; it is never made current. Run again with enough memories.")
        passed = (record.get("evaluation") or {}).get("passed")
        if passed is not True and not force:
            why = "its gate failed: " + "; ".join((record.get("evaluation") or {}).get("reasons") or []) \
                if passed is False else "it has no gate decision yet"
            raise RegistryError(
                f"Not promoting v{version} of {profile.username!r}: {why}. "
                "Pass --force to promote it anyway."
            )
        record["status"] = "promoted"
        record["events"].append({"at": _iso(now), "event": "promoted", "forced": bool(force and passed is not True)})
        _move_current(state, version)
    return record


def _refuse_unusable(profile: Profile, record: dict[str, Any]) -> None:
    if record["status"] == "failed":
        raise RegistryError(f"v{record['version']} of {profile.username!r} is a failed run; it has no model to use.")
    if not _weights_present(profile, record):
        raise RegistryError(
            f"v{record['version']} of {profile.username!r} has no weights on disk "
            f"({record.get('output_path')}{', pruned' if record.get('weights_pruned_at') else ''}); pick another version."
        )


def rollback(profile: Profile, version: int | None = None, *, now: datetime) -> dict[str, Any]:
    """Make an earlier promoted version current again (default: the ``previous`` alias)."""
    with _transaction(profile, now) as data:
        state = _profile_state(data, profile.username, create=True)
        target = version if version is not None else state["aliases"].get("previous")
        if target is None:
            raise RegistryError(f"Profile {profile.username!r} has no previous version to roll back to; "
                                "name one: metahuman registry rollback VERSION")
        record = _require(state, profile, target)
        _refuse_unusable(profile, record)
        if record["status"] != "promoted":
            raise RegistryError(
                f"v{target} of {profile.username!r} was never promoted (status {record['status']}); "
                f"roll back only to a promoted version, or promote it with --force."
            )
        record["events"].append({"at": _iso(now), "event": "rolled_back_to"})
        _move_current(state, target)
    return record


def reset(profile: Profile, *, now: datetime) -> dict[str, Any]:
    """Point ``current`` back at the original base model, keeping the whole history (resetToOriginalBase)."""
    with _transaction(profile, now) as data:
        state = _profile_state(data, profile.username, create=True)
        if state.get("original_base_model") is None:
            raise RegistryError(f"Profile {profile.username!r} has no original base model recorded yet.")
        _move_current(state, None)
        state.setdefault("events", []).append({"at": _iso(now), "event": "reset_to_original_base"})
    return show(profile)


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` removed and what it kept, each kept one with its reason."""

    removed: tuple[int, ...]
    kept: dict[int, str] = field(default_factory=dict)
    freed_bytes: int = 0
    dry_run: bool = False


def _protected(state: dict[str, Any], keep: int, candidates: list[dict[str, Any]]) -> dict[int, str]:
    kept: dict[int, str] = {}
    current = _find(state, state["aliases"].get("current"))
    if current is not None:
        kept[current["version"]] = "current"
        if current.get("parent_version") is not None:
            kept.setdefault(current["parent_version"], "parent_of_current")
        for record in state["versions"]:  # a LoRA on a full-model version sits on that version's weights
            if record.get("output_path") and record.get("output_path") == current.get("base_model"):
                kept.setdefault(record["version"], "base_of_current")
    if state["aliases"].get("previous") is not None:
        kept.setdefault(state["aliases"]["previous"], "previous")
    for record in sorted(candidates, key=_version_key)[-keep:] if keep > 0 else []:
        kept.setdefault(record["version"], f"last_{keep}")
    return kept


def _weight_folders(output: Path) -> list[Path]:
    """A version's weights: its output folder, and the merged LoRA export beside it when there is one."""
    merged = output.parent / "merged"
    return [output, merged] if output.parent.name == "output" and merged.is_dir() else [output]


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _prune_plan(profile: Profile, state: dict[str, Any], keep: int) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Which versions lose their weights, and why each other version with weights is kept."""
    fine_tuned = profile.fine_tuned_dir.resolve()
    with_weights = [r for r in state["versions"] if _weights_present(profile, r)]
    kept = _protected(state, keep, with_weights)
    doomed = []
    for record in sorted(with_weights, key=_version_key):
        if record["version"] in kept:
            continue
        if fine_tuned not in _abs(profile.root, record["output_path"]).resolve().parents:
            kept[record["version"]] = "outside_profile_folder"
            continue
        doomed.append(record)
    return doomed, dict(sorted(kept.items()))


def prune(profile: Profile, *, keep: int = DEFAULT_KEEP, now: datetime, dry_run: bool = False) -> PruneResult:
    """Delete the weights of all but the last ``keep`` versions; never current, its parent or previous.

    The registry keeps every version's record (lineage is never lost); a pruned version is marked
    ``weights_pruned_at`` and can no longer be promoted or rolled back to. Only folders inside this
    profile's ``out/fine-tuned-models/`` are ever deleted. ``dry_run`` reports without changing anything.
    """
    if keep < 1:
        raise RegistryError(f"keep must be at least 1, got {keep}")
    if dry_run:
        doomed, kept = _prune_plan(profile, profile_state(profile), keep)
        freed = sum(_folder_size(f) for r in doomed for f in _weight_folders(_abs(profile.root, r["output_path"])))
        return PruneResult(tuple(r["version"] for r in doomed), kept, freed, dry_run=True)
    with _transaction(profile, now) as data:
        state = _profile_state(data, profile.username, create=True)
        doomed, kept = _prune_plan(profile, state, keep)
        freed = 0
        for record in doomed:
            for folder in _weight_folders(_abs(profile.root, record["output_path"])):
                freed += _folder_size(folder)
                shutil.rmtree(folder)
            record["weights_pruned_at"] = _iso(now)
            record["events"].append({"at": _iso(now), "event": "weights_pruned"})
    return PruneResult(tuple(r["version"] for r in doomed), kept, freed, dry_run=False)


# --------------------------------------------------------------------------------------------
# MetaHuman OS import and the mirror profile
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    """What an import of a MetaHuman OS registry added, and what it had to correct."""

    username: str
    added: tuple[int, ...]
    already_known: tuple[int, ...]
    notes: tuple[str, ...]
    current_version: int | None


def _imported_record(profile: Profile, entry: dict[str, Any], now: datetime) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    entry = dict(entry)
    gguf = entry.get("gguf_path")
    if gguf and not _abs(profile.root, gguf).exists():
        notes.append(f"v{entry['version']}: gguf_path {gguf} was never written; dropped")
        gguf = None
    success = entry.get("training_success") is not False
    output = entry.get("output_model_path")
    if success and output and not _abs(profile.root, output).exists():
        notes.append(f"v{entry['version']}: output {output} is not on disk")
    record = {
        "version": int(entry["version"]),
        "status": "promoted" if success else "failed",
        "parent_version": None,
        "run_label": entry.get("run_label"),
        "run_id": entry.get("run_id"),
        "run_dir": None,
        "registered_at": _iso(now),
        "trained_at": entry.get("timestamp"),
        "method": None,
        "base_model": entry.get("base_model_used"),
        "output_path": output if success else None,
        "gguf_path": gguf,
        "samples": {"train": entry.get("samples_trained")},
        "mode_filter": entry.get("mode_filter"),
        "evaluation": None,
        "weights_pruned_at": None,
        "imported": True,
        "metahuman_os": entry,
        "events": [{"at": _iso(now), "event": "imported_from_metahuman_os"}],
    }
    return record, notes


def _link_parents(state: dict[str, Any]) -> None:
    """An imported run's parent is the version whose output it was trained from."""
    by_output = {r.get("output_path"): r["version"] for r in state["versions"] if r.get("output_path")}
    for record in state["versions"]:
        if record.get("imported") and record.get("parent_version") is None:
            parent = by_output.get(record.get("base_model"))
            if parent is not None and parent < record["version"]:
                record["parent_version"] = parent


def import_metahuman_os(profile: Profile, source: Path | None = None, *, now: datetime) -> ImportResult:
    """Take a MetaHuman OS registry's lineage into this profile (the registry's own file by default).

    Entries already known (same version and run label) are skipped, so importing again after
    MetaHuman OS trained on its own only adds the new runs. A recorded ``gguf_path`` that was
    never written is dropped (defect 9); ``current_base_model`` decides the ``current`` alias.
    This profile becomes the one whose lineage the MetaHuman OS fields show.
    """
    path = profile.registry_path
    source_data = load_registry(Path(source)) if source is not None else load_registry(path)
    if not isinstance(source_data.get("training_history"), list) or "current_base_model" not in source_data:
        raise RegistryError(f"{source or path} has no MetaHuman OS registry fields to import.")
    with _locked(path):
        data = load_registry(path)
        section = _section(data)
        if section.get("mirror_profile") not in (None, profile.username) and source is None:
            raise RegistryError(
                f"The MetaHuman OS fields of {path} belong to profile {section['mirror_profile']!r}; "
                f"importing them into {profile.username!r} would mix lineages."
            )
        if source is not None or section.get("mirror_profile") not in (None, profile.username):
            _check_drift(data, path)  # only importing the file's own fields may take their changes in
        state = _profile_state(data, profile.username, create=True)
        result = _merge_history(profile, state, source_data, now)
        if section.get("mirror_profile") in (None, profile.username):
            section["mirror_profile"] = profile.username
            data["versioning"] = source_data.get("versioning") or data.get("versioning") or dict(DEFAULT_VERSIONING)
        _refresh_mirror(data, profile.root)
        _write_backup(path, now)
        atomic_write_json(path, data)
    return result


def _merge_history(profile: Profile, state: dict[str, Any], source: dict[str, Any], now: datetime) -> ImportResult:
    known = {(r["version"], r.get("run_label")) for r in state["versions"]}
    taken = {r["version"] for r in state["versions"]}
    added, skipped, notes = [], [], []
    for entry in source["training_history"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("version"), int):
            notes.append(f"skipped an entry without an integer version: {str(entry)[:80]}")
            continue
        if (entry["version"], entry.get("run_label")) in known:
            skipped.append(entry["version"])
            continue
        if entry["version"] in taken:
            raise RegistryError(
                f"MetaHuman OS v{entry['version']} ({entry.get('run_label')}) clashes with a different "
                f"v{entry['version']} of {profile.username!r}; restore a backup or rename the run."
            )
        record, record_notes = _imported_record(profile, entry, now)
        state["versions"].append(record)
        taken.add(record["version"])
        added.append(record["version"])
        notes += record_notes
    if state.get("original_base_model") is None:
        state["original_base_model"] = source.get("original_base_model")
    _link_parents(state)
    current = next((r for r in state["versions"] if r.get("output_path") == source.get("current_base_model")), None)
    if current is not None and current["version"] in added:
        _move_current(state, current["version"])
    return ImportResult(profile.username, tuple(added), tuple(skipped), tuple(notes),
                        state["aliases"].get("current"))


def set_mirror_profile(profile: Profile, *, now: datetime) -> dict[str, Any]:
    """Make this profile's lineage the one MetaHuman OS sees in the top-level fields."""
    with _transaction(profile, now) as data:
        _profile_state(data, profile.username, create=True)
        _section(data)["mirror_profile"] = profile.username
    return show(profile)


# --------------------------------------------------------------------------------------------
# the run lock
# --------------------------------------------------------------------------------------------


def _holder_path(profile: Profile) -> Path:
    return profile.lock_path.with_name(profile.lock_path.name + ".holder.json")


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_holder(profile: Profile) -> dict[str, Any] | None:
    """Who holds the profile's run lock (run label, pid, started at), or None when it is free."""
    holder = _read_optional(_holder_path(profile))
    if not isinstance(holder, dict) or not _pid_alive(holder.get("pid")):
        return None
    lock = FileLock(str(profile.lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return holder
    lock.release()
    return None


@contextmanager
def run_lock(profile: Profile, run_label: str, *, now: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Hold the profile's run lock for one run; a second run of the same profile is refused.

    The lock is an OS file lock on ``profile.lock_path``, so it is released when the holder dies
    (even by SIGKILL) and never goes stale. Who holds it is written beside it.

    Raises:
        RegistryError: another run holds the lock; the message names its run label, pid and start.
    """
    profile.lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(profile.lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = _read_optional(_holder_path(profile)) or {}
        raise RegistryError(
            f"Profile {profile.username!r} is busy: run {holder.get('run_label', '?')} "
            f"(pid {holder.get('pid', '?')}, started {holder.get('started_at', '?')}) holds "
            f"{profile.lock_path}. Wait for it to finish, or stop that process first."
        ) from None
    holder = {"run_label": run_label, "pid": os.getpid(), "started_at": _iso(now or utc_now())}
    try:
        atomic_write_json(_holder_path(profile), holder)
        yield holder
    finally:
        _holder_path(profile).unlink(missing_ok=True)
        lock.release()


def record_in_manifest(run_dir: Path, record: dict[str, Any], *, promoted: bool) -> None:
    """Write the registry's outcome for a run into its manifest's ``registry`` section."""
    from metahuman_lib.runfolder import update_manifest

    def change(manifest: dict[str, Any]) -> None:
        manifest["registry"] = {"version": record["version"], "status": record["status"],
                                "promoted": promoted, "output_path": record.get("output_path")}

    update_manifest(Path(run_dir), change)


_VERSION_PATTERN = re.compile(r"^v?(\d+)$")


def parse_version(value: str | int) -> int:
    """``3``, ``"3"`` or ``"v3"`` as 3; anything else is a one-line error."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _VERSION_PATTERN.match(str(value).strip())
    if not match:
        raise RegistryError(f"Not a version: {value!r}; use a number such as 3 or v3.")
    return int(match.group(1))


# --------------------------------------------------------------------------------------------
# what the pipeline's registry step does (notebook 05)
# --------------------------------------------------------------------------------------------

ACTIONS = ("", "promote", "rollback", "reset", "prune")


def register_and_promote(profile: Profile, run_dir: str | Path, *, now: datetime) -> dict[str, Any]:
    """The registry step of a run: register it (once), promote it when its gate passed.

    Re-running the step for a run that is already registered does not register it twice, so a
    resumed pipeline is safe. A rejected candidate stays registered as ``rejected``; that is a
    normal outcome, reported with the gate's reasons. With an empty ``run_dir`` nothing happens.
    The outcome is also written to the run's manifest (section ``registry``).
    """
    if not run_dir:
        return {"registered": False, "reason": "no run_dir: exploring the registry only"}
    run_dir = Path(run_dir).resolve()
    label = _run_label_of(profile, run_dir)
    flags = versioning(profile)
    existing = next((r for r in profile_state(profile)["versions"] if r.get("run_label") == label), None)
    record = existing or register(profile, run_dir, now=now)
    passed = (record.get("evaluation") or {}).get("passed")
    notes = []
    if record["status"] == "smoke_test":
        notes.append(f"v{record['version']} is a smoke test (trained below the sample-count gate): it is "
                     "registered for the record and never becomes current")
    if passed is True and record["status"] == "candidate":
        if flags["auto_update_base"]:
            record = promote(profile, record["version"], now=now)
        else:
            notes.append(f"gate passed, not promoted: versioning.auto_update_base is false in "
                         f"{profile.registry_path}; promote it with: metahuman registry promote "
                         f"v{record['version']} --username {profile.username}")
    promoted = profile_state(profile)["aliases"].get("current") == record["version"]
    if promoted and not flags["keep_all_versions"]:
        pruned = prune(profile, keep=1, now=now)
        if pruned.removed:
            notes.append("versioning.keep_all_versions is false: weights of "
                         + ", ".join(f"v{v}" for v in pruned.removed) + " removed")
    record_in_manifest(run_dir, record, promoted=promoted)
    return {"registered": True, "version": record["version"], "status": record["status"],
            "promoted": promoted, "gate_passed": passed,
            "reasons": list((record.get("evaluation") or {}).get("reasons") or []), "notes": notes}


def versioning(profile: Profile) -> dict[str, bool]:
    """MetaHuman OS's ``versioning`` flags of the registry file, checked.

    ``auto_update_base`` (a passing version becomes current) and ``keep_all_versions`` (false: older
    weights are pruned after each promotion) are honoured; ``enabled: false`` is refused, since
    every workbench run is a version.

    Raises:
        RegistryError: a flag is not true/false, or versioning is disabled.
    """
    data = load_registry(profile.registry_path)
    flags = dict(DEFAULT_VERSIONING) | (data.get("versioning") or {})
    for key in DEFAULT_VERSIONING:
        if not isinstance(flags[key], bool):
            raise RegistryError(f"versioning.{key} in {profile.registry_path} must be true or false, "
                                f"got {flags[key]!r}.")
    if not flags["enabled"]:
        raise RegistryError(f"versioning.enabled is false in {profile.registry_path}: every workbench run "
                            "registers a version, so it cannot run with versioning off; set it to true.")
    return flags


def apply_action(profile: Profile, action: str, *, now: datetime, version: int | None = None,
                 keep: int = DEFAULT_KEEP, force: bool = False) -> Any:
    """Run one registry action named by a notebook parameter (``""`` does nothing)."""
    if action not in ACTIONS:
        close = difflib.get_close_matches(action, ACTIONS[1:], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise RegistryError(f"Unknown registry action {action!r}; use one of {', '.join(ACTIONS[1:])} "
                            f"or an empty string.{hint}")
    if action == "promote":
        if version is None:
            raise RegistryError("action 'promote' needs a version (notebook parameter version = N).")
        return promote(profile, version, now=now, force=force)
    if action == "rollback":
        return rollback(profile, version, now=now)
    if action == "reset":
        return reset(profile, now=now)
    if action == "prune":
        return prune(profile, keep=keep, now=now)
    return show(profile)
