"""The demo generator: exact on-disk format, determinism, content mix, safety of overwrites."""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from metahuman_lib.demo import (
    DEMO_END,
    LOCAL_OFFSET,
    MARKER_NAME,
    generate_demo_files,
    iso_utc,
    local_date_folder,
    memory_file_name,
    memory_id_for,
    resolve_profile,
    slugify,
    write_demo_profile,
)
from metahuman_lib.errors import ProfileError
from metahuman_lib.memory import load_memories
from metahuman_lib.profile import ROOT_ENV_VAR, Profile

FILE_NAME = re.compile(r"^(evt-\d{15})-([a-z0-9-]{1,50})\.json$")
DATE_PATH = re.compile(r"^(?:(reflections|dreams|audio-dreams|audio|curated|tool-invocations|actions)/)?"
                       r"(\d{4})/(\d{2})/(\d{2})/[^/]+$")


@pytest.fixture(scope="module")
def small_files() -> list:
    return generate_demo_files("demo", memories=200, months=2, seed=3)


@pytest.fixture(scope="module")
def demo_payloads(demo_profile: Profile) -> list[tuple[str, dict]]:
    """Every memory file the loader accepts, parsed independently of the loader."""
    _frame, report = load_memories(demo_profile)
    skipped = {item.path for item in report.skipped}
    out = []
    for path in sorted(demo_profile.episodic_dir.rglob("*.json")):
        rel = path.relative_to(demo_profile.episodic_dir).as_posix()
        if rel not in skipped:
            out.append((rel, orjson.loads(path.read_bytes())))
    assert len(out) == 600
    return out


# ---------------------------------------------------------------- naming rules

@pytest.mark.parametrize(
    ("content", "slug"),
    [
        ("User: How are you feeling today?\n\nAssistant: Honestly pretty wired...",
         "user-how-are-you-feeling-today-assistant-honestly-"),
        ('Me: "good morning"', "me-good-morning"),
        ("Invoked skill: web_search", "invoked-skill-web-search"),
        ("a - b", "a---b"),
        ("--Already-dashed--", "already-dashed"),
        ("Ñandú über café", "and-ber-caf"),
        ("", "event"),
        ("?!", "event"),
        ("x" * 80, "x" * 50),
    ],
)
def test_slug_rule(content: str, slug: str) -> None:
    assert slugify(content) == slug


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (datetime(2025, 11, 22, 18, 49, 19, 123000, tzinfo=UTC), "evt-202511221849191"),
        (datetime(2025, 1, 2, 3, 4, 5, 999999, tzinfo=UTC), "evt-202501020304059"),
        (datetime(2025, 11, 22, 20, 49, 19, 0, tzinfo=UTC) + timedelta(hours=0), "evt-202511222049190"),
    ],
)
def test_memory_id_is_utc_digits_plus_one_millisecond_digit(stamp: datetime, expected: str) -> None:
    assert memory_id_for(stamp) == expected


def test_file_name_and_iso_format_of_the_spec_example() -> None:
    stamp = datetime(2025, 11, 22, 18, 49, 19, 123000, tzinfo=UTC)
    content = "User: How are you feeling today?\n\nAssistant: Honestly pretty wired..."
    assert memory_file_name(memory_id_for(stamp), content) == (
        "evt-202511221849191-user-how-are-you-feeling-today-assistant-honestly-.json")
    assert iso_utc(stamp) == "2025-11-22T18:49:19.123Z"


@pytest.mark.parametrize(
    ("utc", "folder"),
    [("2025-11-22T18:49:19+00:00", "2025/11/22"), ("2025-11-23T03:30:00+00:00", "2025/11/22"),
     ("2025-11-23T07:00:00+00:00", "2025/11/23"), ("2026-01-01T06:59:59+00:00", "2025/12/31")],
)
def test_folder_is_the_local_date(utc: str, folder: str) -> None:
    assert local_date_folder(datetime.fromisoformat(utc)) == folder


# ---------------------------------------------------------------- determinism

def test_same_seed_same_bytes(small_files: list) -> None:
    again = generate_demo_files("demo", memories=200, months=2, seed=3)
    assert [(f.path, f.data, f.mtime) for f in again] == [(f.path, f.data, f.mtime) for f in small_files]


def test_other_seed_other_bytes(small_files: list) -> None:
    other = generate_demo_files("demo", memories=200, months=2, seed=4)
    assert [f.data for f in other] != [f.data for f in small_files]


def test_written_trees_are_byte_identical(tmp_path: Path) -> None:
    trees = []
    for name in ("a", "b"):
        profile = write_demo_profile(tmp_path / name, "demo", memories=120, months=1, seed=9)
        trees.append({p.relative_to(profile.episodic_dir).as_posix(): p.read_bytes()
                      for p in sorted(profile.episodic_dir.rglob("*")) if p.is_file()})
    assert trees[0] == trees[1] and len(trees[0]) == 130


# ---------------------------------------------------------------- the on-disk format

def test_every_file_name_follows_the_id_slug_rule(demo_payloads: list) -> None:
    for rel, payload in demo_payloads:
        name = rel.rsplit("/", 1)[-1]
        match = FILE_NAME.match(name)
        assert match, name
        assert match.group(1) == payload["id"]
        assert name == memory_file_name(payload["id"], payload["content"])


def test_every_path_is_category_then_local_date(demo_profile: Profile, demo_payloads: list) -> None:
    categories = Counter()
    crossing_midnight = 0
    for rel, payload in demo_payloads:
        match = DATE_PATH.match(rel)
        assert match, rel
        categories[match.group(1)] += 1
        stamp = datetime.fromisoformat(payload["timestamp"])
        local = stamp + LOCAL_OFFSET
        assert "/".join(match.group(2, 3, 4)) == f"{local:%Y/%m/%d}"
        crossing_midnight += local.date() != stamp.date()
    assert crossing_midnight > 50  # evening memories sit in the previous day's folder
    assert set(categories) == {None, "reflections", "dreams", "audio-dreams", "audio", "curated",
                               "tool-invocations", "actions"}


def test_timestamps_are_js_iso_utc_and_before_end(demo_payloads: list) -> None:
    for _rel, payload in demo_payloads:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", payload["timestamp"])
        stamp = datetime.fromisoformat(payload["timestamp"])
        assert DEMO_END - timedelta(days=122) <= stamp < DEMO_END
        assert payload["id"] == memory_id_for(stamp)


def test_growth_over_time(demo_profile: Profile) -> None:
    frame, _ = load_memories(demo_profile)
    weeks = frame["timestamp"].dt.tz_localize(None).dt.to_period("W").value_counts().sort_index()
    first_month, last_month = weeks.iloc[:4].mean(), weeks.iloc[-5:-1].mean()
    assert last_month > 2.5 * first_month


def test_mix_of_types_shapes_and_signals(demo_payloads: list) -> None:
    payloads = [p for _rel, p in demo_payloads]
    types = Counter(p.get("type", "<missing>") for p in payloads)
    for memory_type in ("conversation", "inner_dialogue", "reflection", "dream", "observation",
                        "journal", "tool_invocation", "action", "task", "summary", "<missing>"):
        assert types[memory_type] > 0, memory_type
    chats = [p for p in payloads if p.get("type") == "conversation"]
    older = [p for p in chats if "response" in p]
    newer = [p for p in chats if "response" not in p]
    assert all(p["content"].startswith('Me: "') and p["tags"][0] == "chat" for p in older)
    assert all(re.match(r"User: .+\n\nAssistant: .+", p["content"], re.DOTALL) for p in newer)
    assert len(older) > 50 and len(newer) > 50
    inner_chats = [p for p in payloads if p.get("type") == "inner_dialogue" and "response" in p]
    assert inner_chats and all(p["tags"][:2] == ["chat", "dual"]
                               for p in inner_chats)
    meta = [p["metadata"] for p in payloads]
    assert sum("cognitiveMode" in m for m in meta) > 100
    assert any(m.get("cognitiveMode") == "environment" for m in meta)
    assert sum(m.get("reinforcementSignal") == -1 for m in meta) >= 3
    assert sum("feedback" in p["tags"] for p in payloads) >= 3
    tools = [p for p in payloads if p.get("type") == "tool_invocation"]
    assert all(p["content"] == f"Invoked skill: {p['metadata']['toolName']}" for p in tools)
    assert all({"toolInputs", "toolOutputs", "success", "executionTimeMs"} <= set(p["metadata"])
               for p in tools)
    assert any(not p["metadata"]["success"] and p["metadata"]["error"] for p in tools)


def test_length_mix_filler_duplicates_and_pii(demo_payloads: list) -> None:
    replies = []
    for _rel, p in demo_payloads:
        if p.get("type") == "conversation":
            replies.append(p.get("response") or p["content"].split("\n\nAssistant: ", 1)[-1])
    words = [len(reply.split()) for reply in replies]
    short = sum(w <= 40 for w in words) / len(words)
    long = sum(w > 100 for w in words) / len(words)
    assert 0.35 <= short <= 0.75 and 0.03 <= long <= 0.25
    lowered = [reply.lower() for reply in replies]
    assert any(r.startswith(("okay, so", "alright, so", "let me think")) for r in lowered)
    assert any(r.startswith(("sometimes", "solution")) for r in lowered)
    contents = Counter(p["content"] for _rel, p in demo_payloads)
    assert any(count > 1 for count in contents.values())
    text = "\n".join(p["content"] + (p.get("response") or "") for _rel, p in demo_payloads)
    assert re.search(r"[\w.+-]+@example\.(com|org)", text)
    assert re.search(r"\b(sk-[0-9a-f]{40}|ghp_[A-Za-z0-9]{36}|AKIA[A-Z2-7]{16})\b", text)
    assert re.search(r"555[ )-]+01\d", text)
    long_types = Counter(p["type"] for _rel, p in demo_payloads
                         if len(p["content"].split()) > 100 and "type" in p)
    assert long_types["reflection"] + long_types["journal"] > 10


def test_recurring_persona(demo_payloads: list) -> None:
    text = " ".join(p["content"] for _rel, p in demo_payloads)
    for name in ("Pepper", "Maya", "garden", "Spanish", "greenhouse"):
        assert text.count(name) >= 10, name


def test_bad_and_encrypted_files_are_present(demo_profile: Profile) -> None:
    encrypted = list(demo_profile.episodic_dir.rglob("*.json.enc"))
    assert len(encrypted) == 3
    assert all(re.fullmatch(r"evt-\d{15}-encrypted\.json\.enc", p.name) for p in encrypted)


# ---------------------------------------------------------------- arguments and safety

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"memories": 0}, "memories and months must be at least 1, got 0 and 1"),
    ({"months": 0}, "memories and months must be at least 1, got 5 and 0"),
    ({"end": datetime(2025, 1, 1)}, "end must be timezone-aware"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    arguments = {"memories": 5, "months": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_demo_files("demo", **arguments)


def test_end_moves_the_whole_history(tmp_path: Path) -> None:
    end = DEMO_END + timedelta(days=30)
    profile = write_demo_profile(tmp_path, "later", memories=50, months=1, seed=1, end=end)
    frame, _ = load_memories(profile)
    assert frame["timestamp"].max() < end and frame["timestamp"].min() >= end - timedelta(days=31)
    assert set(frame["user_id"]) == {"later"}


def test_existing_demo_needs_overwrite(tmp_path: Path) -> None:
    write_demo_profile(tmp_path, "demo", memories=20, months=1, seed=1)
    with pytest.raises(ProfileError, match=r"A demo profile already exists at .*; pass --overwrite"):
        write_demo_profile(tmp_path, "demo", memories=20, months=1, seed=2)
    profile = write_demo_profile(tmp_path, "demo", memories=30, months=1, seed=2, overwrite=True)
    assert len(load_memories(profile)[0]) == 30
    assert orjson.loads((profile.profile_dir / MARKER_NAME).read_bytes())["seed"] == 2


def test_real_profile_is_never_overwritten(tmp_path: Path) -> None:
    real = Profile(tmp_path, "greggles")
    real.episodic_dir.mkdir(parents=True)
    (real.episodic_dir / "keep.json").write_text("{}")
    with pytest.raises(ProfileError, match="was not generated by the workbench"):
        write_demo_profile(tmp_path, "greggles", memories=5, months=1, overwrite=True)
    assert (real.episodic_dir / "keep.json").exists()


def test_no_staging_folder_is_left_behind(tmp_path: Path) -> None:
    profile = write_demo_profile(tmp_path, "demo", memories=10, months=1)
    assert sorted(p.name for p in profile.episodic_dir.parent.iterdir()) == ["episodic"]


def test_resolve_profile_writes_the_demo_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_ENV_VAR, str(tmp_path))
    profile = resolve_profile("demo", "")
    assert profile.root == tmp_path.resolve()
    assert len(load_memories(profile)[0]) == 1500
    again = resolve_profile("demo", str(tmp_path))
    assert again == profile


def test_resolve_profile_requires_other_profiles_to_exist(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"^No MetaHuman OS profile for 'greggles': expected the folder"):
        resolve_profile("greggles", str(tmp_path))
    with pytest.raises(ProfileError, match="Invalid username"):
        resolve_profile("../demo", str(tmp_path))


def test_a_profile_appearing_during_the_write_is_left_alone(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from metahuman_lib import demo

    real_replace = os.replace

    def racing_replace(src: str, dst: str) -> None:
        Path(dst).mkdir(parents=True)
        (Path(dst) / "theirs.json").write_text("{}")
        real_replace(src, dst)

    monkeypatch.setattr(demo.os, "replace", racing_replace)
    with pytest.raises(ProfileError, match="appeared at .* while the demo was being written"):
        write_demo_profile(tmp_path, "demo", memories=5, months=1)
    episodic = Profile(tmp_path, "demo").episodic_dir
    assert sorted(p.name for p in episodic.iterdir()) == ["theirs.json"]
    assert sorted(p.name for p in episodic.parent.iterdir()) == ["episodic"]
    shutil.rmtree(episodic)
    assert resolve_profile("demo", str(tmp_path)).episodic_dir == episodic  # the race is harmless
    assert sorted(p.name for p in episodic.iterdir()) == ["theirs.json"]
