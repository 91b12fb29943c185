"""Hand-built memories tables (the loader's contract) for curation and quality tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from metahuman_lib.memory import MEMORY_COLUMNS, load_memories, memory_mode
from metahuman_lib.profile import Profile


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


def write_mixed_profile(root: Path, demo_root: Path, *, repeated_id: bool) -> Profile:
    """The demo profile plus what needs all memories at once: tool calls whose instruction is
    their parent's text, memories after 2025-12-20, and with ``repeated_id`` an id repeated in
    another folder (kept as ``<id>~2``)."""
    shutil.copytree(demo_root / "profiles", root / "profiles")
    profile = Profile(root, "demo")
    memories, _ = load_memories(profile)
    chats = memories[memories["type"] == "conversation"].head(3)
    extra = profile.episodic_dir / "2025" / "12" / "01"
    extra.mkdir(parents=True, exist_ok=True)

    def write(name: str, payload: dict[str, Any]) -> None:
        (extra / name).write_bytes(orjson.dumps(payload))

    for index, parent in enumerate([*chats["id"], "evt-missing-parent"]):
        write(f"evt-20251201100000{index}-tool.json", {
            "id": f"evt-20251201100000{index}", "timestamp": f"2025-12-01T10:00:0{index}.000Z",
            "type": "tool_invocation", "content": "Invoked skill: web_search",
            "metadata": {"cognitiveMode": "agent", "toolName": "web_search",
                         "toolInputs": {"query": f"q{index}"}, "parentEventId": parent}})
    write("evt-202512011000009-own.json", {
        "id": "evt-202512011000009", "timestamp": "2025-12-01T10:00:09.000Z",
        "type": "tool_invocation", "content": "Invoked skill: calendar",
        "metadata": {"toolName": "calendar", "instruction": "Book the dentist",
                     "parentEventId": chats["id"].iloc[0]}})
    if repeated_id:
        first = min(profile.episodic_dir.rglob("*.json"))
        copy_dir = profile.episodic_dir / "zz-copies"
        copy_dir.mkdir()
        shutil.copy(first, copy_dir / first.name)  # the same id again, last in path order: kept as <id>~2
    for index in range(3):
        write(f"evt-20260105120000{index}-later.json", {
            "id": f"evt-20260105120000{index}", "timestamp": f"2026-01-05T12:00:0{index}.000Z",
            "type": "reflection", "content": f"A thought from the future, number {index} of three."})
    return profile
