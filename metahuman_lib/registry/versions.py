"""Versions and lineage: verifying and registering runs, the gate's decision, promote, rollback,
reset, prune, the run lock, and what the pipeline's registry step does (notebook 05)."""

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
    atomic_write_json,
    read_json,
    sha256_file,
    sha256_tree,
)
from metahuman_lib.errors import ProfileError, RegistryError
from metahuman_lib.profile import Profile

if TYPE_CHECKING:
    import pandas as pd
from metahuman_lib.registry.mirror import (
    _transaction,
    lineage_base,
    versioning,
)
from metahuman_lib.registry.store import (
    DEFAULT_KEEP,
    _abs,
    _find,
    _iso,
    _move_current,
    _profile_state,
    _rel,
    _require,
    _version_key,
    profile_state,
    show,
    utc_now,
)

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


def _weights_present(profile: Profile, record: dict[str, Any]) -> bool:
    path = record.get("output_path")
    return bool(path) and not record.get("weights_pruned_at") and _abs(profile.root, path).exists()


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
