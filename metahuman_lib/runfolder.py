"""A run folder and its manifest: everything one run needs and records, in one place.

Layout (``profiles/<user>/out/fine-tuned-models/YYYY-MM-DD/<run-label>/``)::

    manifest.json        sections owned by the step that writes them (see docs/architecture.md)
    dataset.jsonl        train samples           (selection)
    eval_recent.jsonl    held-out recent samples (selection)
    eval_old.jsonl       the profile's old probe (selection)
    train_config.json    what to train            (training launch)
    status.json, train_log.jsonl, metrics.json, effective_config.json, output/  (trainer)
    notebooks/, reports/, report.html, Modelfile                                  (pipeline)

The manifest is only ever changed through :func:`update_manifest`, which takes a file lock and
writes atomically, so concurrent steps never lose each other's sections.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from metahuman_lib._io import atomic_write_json, read_json, sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1


def manifest_path(run_dir: Path) -> Path:
    return Path(run_dir) / MANIFEST_NAME


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest, or an empty one when the run folder has none yet."""
    path = manifest_path(run_dir)
    if not path.exists():
        return {"schema": MANIFEST_SCHEMA}
    return read_json(path)


def update_manifest(run_dir: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply ``change`` to the manifest in place, under a lock, and write it atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(run_dir / ".manifest.lock")):
        manifest = read_manifest(run_dir)
        change(manifest)
        manifest["schema"] = MANIFEST_SCHEMA
        atomic_write_json(manifest_path(run_dir), manifest)
    return manifest


def file_entry(path: Path) -> dict[str, Any]:
    """The manifest record of one file: sha256 and size in bytes."""
    path = Path(path)
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def record_files(run_dir: Path, names: list[str]) -> dict[str, Any]:
    """Record the sha256 of files (relative to the run folder) under ``manifest['files']``."""
    run_dir = Path(run_dir)
    entries = {name: file_entry(run_dir / name) for name in names}

    def change(manifest: dict[str, Any]) -> None:
        manifest.setdefault("files", {}).update(entries)

    return update_manifest(run_dir, change)


def utc_now_iso() -> str:
    """The current UTC time as an ISO string; only for recording when something happened."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def list_run_dirs(profile: Any) -> list[Path]:
    """Every run folder of a profile that has a manifest, oldest first.

    Runs sort by their label's time, then by when they started (two runs dated the same second,
    such as simulated ones, keep the order in which they ran).
    """
    if not profile.fine_tuned_dir.is_dir():
        return []
    found = [p.parent for p in profile.fine_tuned_dir.glob("*/*/manifest.json")]
    return sorted(found, key=_run_order)


def _run_order(run_dir: Path) -> tuple[str, str]:
    started = read_manifest(run_dir).get("cycle", {}).get("started_at") or ""
    return run_dir.name[:17], str(started)
