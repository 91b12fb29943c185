"""The trainer's machine-readable progress: ``status.json`` and ``train_log.jsonl``.

Backends (local, RunPod) and notebooks read these files; only the trainer's main process
writes them. ``status.json`` is replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from metahuman_lib._io import atomic_write_bytes, atomic_write_json, read_json
from metahuman_lib.runfolder import utc_now_iso
from metahuman_lib.training.backend import JobStatus

STATUS_NAME = "status.json"
TRAIN_LOG_NAME = "train_log.jsonl"
_STATUS_FIELDS = ("state", "phase", "step", "total_steps", "eta_s", "error")


def write_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``status.json`` and stamp ``updated_at``; return the new status."""
    path = Path(run_dir) / STATUS_NAME
    status = read_json(path) if path.exists() else {"state": "pending", "phase": "", "step": 0,
                                                     "total_steps": 0, "eta_s": None, "error": None}
    status.update(fields)
    status["updated_at"] = utc_now_iso()
    atomic_write_json(path, status)
    return status


def read_status(run_dir: Path) -> JobStatus:
    """The run's status as a :class:`JobStatus`; ``pending`` when the trainer has not started."""
    path = Path(run_dir) / STATUS_NAME
    if not path.exists():
        return JobStatus(state="pending")
    data = read_json(path)
    extra = {key: value for key, value in data.items() if key not in _STATUS_FIELDS}
    return JobStatus(state=data.get("state", "pending"), phase=data.get("phase", ""),
                     step=int(data.get("step") or 0), total_steps=int(data.get("total_steps") or 0),
                     eta_s=data.get("eta_s"), error=data.get("error"), extra=extra)


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one line to ``train_log.jsonl`` (flushed, so readers follow it live)."""
    with open(Path(run_dir) / TRAIN_LOG_NAME, "ab") as handle:
        handle.write(orjson.dumps(record) + b"\n")
        handle.flush()


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of ``train_log.jsonl`` (an empty list before the first step)."""
    path = Path(run_dir) / TRAIN_LOG_NAME
    if not path.exists():
        return []
    with open(path, "rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def truncate_log(run_dir: Path, last_step: int) -> None:
    """Keep only log lines up to ``last_step`` (used when resuming from a checkpoint)."""
    kept = [record for record in read_log(run_dir) if record.get("step", 0) <= last_step]
    atomic_write_bytes(Path(run_dir) / TRAIN_LOG_NAME, b"".join(orjson.dumps(record) + b"\n" for record in kept))
