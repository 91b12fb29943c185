"""Hand-built memories tables (the loader's contract) for curation and quality tests."""

from __future__ import annotations

from typing import Any

import pandas as pd

from metahuman_lib.memory import MEMORY_COLUMNS, memory_mode


def memory(content: str, *, memory_type: str = "conversation", response: str | None = None,
           timestamp: str = "2025-11-01T12:00:00Z", tags: list[str] | None = None,
           metadata: dict[str, Any] | None = None, memory_id: str | None = None,
           user_id: str | None = "tester") -> dict[str, Any]:
    """One memories-table row; the mode is derived as the loader derives it."""
    metadata = metadata or {}
    mode, source = memory_mode(memory_type, metadata)
    return {"id": memory_id, "timestamp": timestamp, "type": memory_type, "mode": mode,
            "mode_source": source, "content": content, "response": response,
            "tags": tags or [], "entities": [], "importance": 0.5, "user_id": user_id,
            "metadata": metadata, "category": None, "path": ""}


def memories_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A memories table from rows; ids and paths default to ``m000``, ``m001``, ..."""
    filled = []
    for index, row in enumerate(rows):
        row = dict(row)
        row["id"] = row["id"] or f"m{index:03d}"
        row["path"] = row["path"] or f"2025/11/01/{row['id']}-x.json"
        filled.append(row)
    frame = pd.DataFrame(filled, columns=list(MEMORY_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    for column in ("response", "tags", "entities", "user_id", "metadata", "category"):
        frame[column] = frame[column].astype(object)
    return frame
