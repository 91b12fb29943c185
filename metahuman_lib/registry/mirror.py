"""The fields MetaHuman OS reads, regenerated from one profile's lineage on every write (every
change runs in :func:`_transaction`), and the import of an existing MetaHuman OS registry.

What MetaHuman OS's ``packages/core/src/model-registry.ts`` reads: ``current_base_model``, and in
``training_history`` only the entries with ``training_success`` (``getLatestModel``,
``registerTrainingRun``); of ``versioning``, only ``auto_update_base``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from metahuman_lib._io import (
    atomic_write_json,
)
from metahuman_lib.errors import RegistryError
from metahuman_lib.profile import Profile
from metahuman_lib.registry.store import (
    DEFAULT_VERSIONING,
    MIRROR_KEYS,
    SCHEMA,
    _abs,
    _find,
    _iso,
    _locked,
    _move_current,
    _profile_state,
    _section,
    _version_key,
    _write_backup,
    load_registry,
    show,
)


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
