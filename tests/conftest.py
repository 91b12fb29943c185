"""Shared fixtures: a small demo profile (session-scoped) and hand-made memory files.

Other test modules use ``demo_profile`` (about 600 memories over 4 months, written once per
session) and ``make_memory_file`` / ``empty_profile`` to build profiles with exact contents.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from metahuman_lib.demo import (
    DEMO_END,
    local_date_folder,
    memory_file_name,
    memory_id_for,
    write_demo_profile,
)
from metahuman_lib.memory import parse_timestamp
from metahuman_lib.profile import Profile

DEMO_FIXTURE_MEMORIES = 600
DEMO_FIXTURE_MONTHS = 4
DEMO_FIXTURE_SEED = 0


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MetaHuman OS root holding the small demo profile (read-only for tests)."""
    root = tmp_path_factory.mktemp("demo-root")
    write_demo_profile(root, "demo", memories=DEMO_FIXTURE_MEMORIES, months=DEMO_FIXTURE_MONTHS,
                       seed=DEMO_FIXTURE_SEED, end=DEMO_END)
    return root


@pytest.fixture(scope="session")
def demo_profile(demo_root: Path) -> Profile:
    """The small demo profile: 600 readable memories before DEMO_END, plus 7 bad and 3 encrypted
    files. Treat it as read-only; copy it (``shutil.copytree``) to modify it."""
    return Profile(demo_root, "demo")


@pytest.fixture
def empty_profile(tmp_path: Path) -> Profile:
    """A profile whose episodic folder exists and is empty."""
    profile = Profile(tmp_path / "root", "tester")
    profile.episodic_dir.mkdir(parents=True)
    return profile


def _memory_payload(content: Any = "User: hi\n\nAssistant: hello there", *,
                   timestamp: Any = "2025-11-01T12:00:00.000Z", memory_type: Any = "conversation",
                   **fields: Any) -> dict[str, Any]:
    """A valid memory object as MetaHuman OS writes it; ``fields`` override or add keys
    (use ``drop=[...]`` to remove keys)."""
    drop = fields.pop("drop", ())
    stamp = parse_timestamp(timestamp) if isinstance(timestamp, str) else None
    payload: dict[str, Any] = {
        "id": memory_id_for(stamp) if stamp else "evt-202511011200000",
        "timestamp": timestamp,
        "content": content,
        "type": memory_type,
        "entities": [],
        "tags": [],
        "importance": 0.5,
        "links": [],
        "userId": "tester",
        "metadata": {},
    }
    payload.update(fields)
    for key in drop:
        payload.pop(key, None)
    return payload


@pytest.fixture
def memory_payload() -> Callable[..., dict[str, Any]]:
    """Build a valid memory object: ``memory_payload("text", timestamp=..., memory_type=...,
    response=..., drop=["type"])``."""
    return _memory_payload


MakeMemoryFile = Callable[..., Path]


@pytest.fixture
def make_memory_file() -> MakeMemoryFile:
    """Write one memory file into a profile and return its path.

    Call as ``make_memory_file(profile, payload_or_bytes, category=None, name=None)``: a dict is
    written as indented JSON under ``[category/]YYYY/MM/DD/<id>-<slug>.json`` (the local date of
    its timestamp); raw bytes need ``name`` (or get a generic one) and go into ``2025/11/01/``.
    """

    def _make(profile: Profile, payload: dict[str, Any] | bytes | None = None, *,
              category: str | None = None, name: str | None = None,
              folder: str | None = None) -> Path:
        payload = _memory_payload() if payload is None else payload
        if isinstance(payload, dict):
            data = orjson.dumps(payload, option=orjson.OPT_INDENT_2)
            stamp = parse_timestamp(payload.get("timestamp"))
            content = payload.get("content")
            default_folder = local_date_folder(stamp) if stamp else "2025/11/01"
            default_name = memory_file_name(str(payload.get("id", "evt-0")),
                                            content if isinstance(content, str) else "")
        else:
            data, default_folder, default_name = payload, "2025/11/01", "evt-202511011200000-raw.json"
        rel = f"{category + '/' if category else ''}{folder or default_folder}/{name or default_name}"
        path = profile.episodic_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return _make



@pytest.fixture(scope="session")
def ollama_render(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, list[dict[str, str]]], str]:
    """Render a Modelfile TEMPLATE as Ollama does (Go text/template), built once per session."""
    from _helpers_ollama_render import build, render

    binary = build(tmp_path_factory.mktemp("ollama-render"))
    return lambda template, messages: render(binary, template, messages)


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handler for the test, whatever the suite inherited: a process started
    in the background by a non-interactive shell ignores SIGINT, and a SIGINT sent to it then
    raises nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
