"""The loader: the memories-table contract, every skip reason, modes, shapes, folders, times."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from metahuman_lib.demo import DEMO_END, write_demo_profile
from metahuman_lib.errors import ProfileError
from metahuman_lib.memory import (
    DEFAULT_TYPE,
    MEMORY_COLUMNS,
    SKIP_REASONS,
    LoadReport,
    SkippedFile,
    load_memories,
    memory_mode,
    parse_timestamp,
    summarize_memories,
)
from metahuman_lib.profile import Profile

GOOD_TS = "2025-11-01T12:00:00.000Z"
DTYPES = {"id": "str", "timestamp": "datetime64[ns, UTC]", "type": "str", "mode": "str",
          "mode_source": "str", "content": "str", "response": "object", "tags": "object",
          "entities": "object", "importance": "float64", "user_id": "object", "metadata": "object",
          "category": "object", "path": "str"}


def _load_one(profile: Profile, make_memory_file: Any, payload: Any, **kwargs: Any
              ) -> tuple[pd.DataFrame, LoadReport, str]:
    path = make_memory_file(profile, payload, **kwargs)
    frame, report = load_memories(profile)
    return frame, report, path.relative_to(profile.episodic_dir).as_posix()


# ---------------------------------------------------------------- the table contract

def test_columns_and_dtypes_follow_the_contract(empty_profile: Profile, make_memory_file: Any) -> None:
    make_memory_file(empty_profile)
    frame, _ = load_memories(empty_profile)
    assert tuple(frame.columns) == MEMORY_COLUMNS
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == DTYPES


def test_empty_profile_gives_empty_typed_table(empty_profile: Profile) -> None:
    frame, report = load_memories(empty_profile)
    assert len(frame) == 0
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == DTYPES
    assert report == LoadReport(empty_profile.episodic_dir, 0, 0, ())
    summary = summarize_memories(frame, report)
    assert summary.total == 0 and summary.first is None and summary.by_month == {}


def test_row_values_of_a_full_memory(empty_profile: Profile, make_memory_file: Any,
                                     memory_payload: Any) -> None:
    payload = memory_payload('Me: "how is Pepper?"', response="Asleep on my feet.",
                             tags=["chat", "emulation"], entities=["Pepper"], importance=0.8,
                             metadata={"conversationId": "c-1"})
    frame, report, rel = _load_one(empty_profile, make_memory_file, payload)
    assert report.skipped == ()
    row = frame.iloc[0].to_dict()
    assert row == {"id": "evt-202511011200000", "timestamp": pd.Timestamp(GOOD_TS),
                   "type": "conversation", "mode": "emulation", "mode_source": "type",
                   "content": 'Me: "how is Pepper?"', "response": "Asleep on my feet.",
                   "tags": ["chat", "emulation"], "entities": ["Pepper"], "importance": 0.8,
                   "user_id": "tester", "metadata": {"conversationId": "c-1"}, "category": None,
                   "path": rel}


def test_missing_optional_fields_get_defaults(empty_profile: Profile, make_memory_file: Any,
                                              memory_payload: Any) -> None:
    payload = memory_payload("Noticed the frost.", drop=["type", "tags", "entities", "importance",
                                                         "userId", "metadata", "links"])
    frame, report, _ = _load_one(empty_profile, make_memory_file, payload)
    assert report.skipped == ()
    row = frame.iloc[0]
    assert (row["type"], row["mode"], row["mode_source"]) == ("observation", "emulation", "type")
    assert row["response"] is None and row["user_id"] is None
    assert row["tags"] == [] and row["entities"] == [] and row["metadata"] == {}
    assert row["importance"] == 0.5


def test_both_chat_shapes_are_kept_as_they_are(empty_profile: Profile, make_memory_file: Any,
                                               memory_payload: Any) -> None:
    older = memory_payload('Me: "How are you?"', timestamp="2025-06-01T10:00:00.000Z",
                           response="Tired but content.", tags=["chat", "dual"])
    newer = memory_payload("User: How are you?\n\nAssistant: Honestly pretty wired.",
                           timestamp="2025-11-22T18:49:19.123Z",
                           metadata={"cognitiveMode": "dual", "sessionId": "s-41"})
    make_memory_file(empty_profile, older)
    make_memory_file(empty_profile, newer)
    frame, _ = load_memories(empty_profile)
    assert frame["content"].tolist() == [older["content"], newer["content"]]
    assert frame["response"].tolist() == ["Tired but content.", None]
    assert frame["mode"].tolist() == ["emulation", "dual"]
    assert frame["mode_source"].tolist() == ["type", "metadata"]


def test_category_folders_are_walked_and_recorded(empty_profile: Profile, make_memory_file: Any,
                                                  memory_payload: Any) -> None:
    folders = [None, "reflections", "dreams", "audio-dreams", "audio", "curated", "tool-invocations",
               "actions"]
    for minute, category in enumerate(folders):
        make_memory_file(empty_profile, memory_payload(f"memory {minute}",
                                                       timestamp=f"2025-11-01T12:0{minute}:00.000Z"),
                         category=category)
    frame, report = load_memories(empty_profile)
    assert report.files_seen == len(folders) and report.skipped == ()
    assert frame["category"].tolist() == folders
    assert frame["path"].iloc[1].startswith("reflections/2025/11/01/evt-202511011201000-memory-1")


def test_files_directly_in_deep_or_odd_folders_are_read(empty_profile: Profile, make_memory_file: Any,
                                                        memory_payload: Any) -> None:
    make_memory_file(empty_profile, memory_payload("loose"), folder=".")
    make_memory_file(empty_profile, memory_payload("deep", timestamp="2025-11-02T00:00:00Z"),
                     folder="2025/11/02/extra/deeper")
    frame, _ = load_memories(empty_profile)
    assert frame["path"].tolist() == ["evt-202511011200000-loose.json",
                                      "2025/11/02/extra/deeper/evt-202511020000000-deep.json"]
    assert frame["category"].tolist() == [None, None]


# ---------------------------------------------------------------- modes (spec section 2)

@pytest.mark.parametrize(
    ("memory_type", "metadata", "expected"),
    [
        ("inner_dialogue", {}, ("dual", "type")),
        ("reflection", {}, ("dual", "type")),
        ("dream", {}, ("dual", "type")),
        ("daydream", {}, ("dual", "type")),
        ("conversation", {}, ("emulation", "type")),
        ("chat", {}, ("emulation", "type")),
        ("observation", {}, ("emulation", "type")),
        ("journal", {}, ("emulation", "type")),
        ("action", {}, ("agent", "type")),
        ("task", {}, ("agent", "type")),
        ("tool_use", {}, ("agent", "type")),
        ("tool_invocation", {}, ("agent", "type")),
        ("summary", {}, ("emulation", "type")),
        ("some_new_type", {}, ("emulation", "type")),
        ("conversation", {"cognitiveMode": "dual"}, ("dual", "metadata")),
        ("conversation", {"cognitiveMode": "agent"}, ("agent", "metadata")),
        ("reflection", {"cognitiveMode": "emulation"}, ("emulation", "metadata")),
        ("reflection", {"cognitiveMode": "environment"}, ("dual", "type")),
        ("task", {"cognitiveMode": "DUAL"}, ("agent", "type")),
        ("task", {"cognitiveMode": 3}, ("agent", "type")),
    ],
)
def test_mode_table(memory_type: str, metadata: dict[str, Any], expected: tuple[str, str]) -> None:
    assert memory_mode(memory_type, metadata) == expected


def test_mode_columns_in_the_table(empty_profile: Profile, make_memory_file: Any,
                                   memory_payload: Any) -> None:
    make_memory_file(empty_profile, memory_payload("a", memory_type="tool_invocation",
                                                   timestamp="2025-11-01T01:00:00Z"))
    make_memory_file(empty_profile, memory_payload("b", memory_type="observation",
                                                   timestamp="2025-11-01T02:00:00Z",
                                                   metadata={"cognitiveMode": "dual"}))
    frame, _ = load_memories(empty_profile)
    assert frame[["mode", "mode_source"]].values.tolist() == [["agent", "type"], ["dual", "metadata"]]


# ---------------------------------------------------------------- timestamps

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-11-22T18:49:19.123Z", "2025-11-22T18:49:19.123000+00:00"),
        ("2025-11-22T20:49:19.123+02:00", "2025-11-22T18:49:19.123000+00:00"),
        ("2025-11-22T13:49:19-05:00", "2025-11-22T18:49:19+00:00"),
        ("2025-11-22T18:49:19", "2025-11-22T18:49:19+00:00"),
        ("2025-11-22T18:49:19.123456Z", "2025-11-22T18:49:19.123456+00:00"),
    ],
)
def test_timestamps_become_utc(text: str, expected: str) -> None:
    stamp = parse_timestamp(text)
    assert stamp is not None and stamp.isoformat() == expected


@pytest.mark.parametrize("value", ["", "yesterday", "2025-13-01T00:00:00Z", "2025-11-31T00:00:00Z",
                                   1732300159, None, ["2025-11-22"], "0001-01-01T00:00:00Z"])
def test_unparseable_timestamps(value: Any) -> None:
    assert parse_timestamp(value) is None


def test_table_timestamps_are_utc_and_sorted(empty_profile: Profile, make_memory_file: Any,
                                             memory_payload: Any) -> None:
    make_memory_file(empty_profile, memory_payload("late", timestamp="2025-11-22T20:00:00.000+02:00"))
    make_memory_file(empty_profile, memory_payload("early", timestamp="2025-11-22T17:59:59.999Z"))
    frame, _ = load_memories(empty_profile)
    assert frame["content"].tolist() == ["early", "late"]
    assert frame["timestamp"].tolist() == [pd.Timestamp("2025-11-22T17:59:59.999Z"),
                                           pd.Timestamp("2025-11-22T18:00:00Z")]
    assert str(frame["timestamp"].dt.tz) == "UTC"


def test_folder_date_does_not_override_timestamp(empty_profile: Profile, make_memory_file: Any,
                                                 memory_payload: Any) -> None:
    payload = memory_payload("near midnight", timestamp="2025-11-23T03:30:00.000Z")
    make_memory_file(empty_profile, payload, folder="2025/11/22")
    frame, _ = load_memories(empty_profile)
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2025-11-23T03:30:00Z")


# ---------------------------------------------------------------- one bad file per reason

BAD_PAYLOADS: list[tuple[str, Any, str, str]] = [
    ("invalid json", b'{"id": "evt-1", "content": "half', "invalid_json", "unexpected end of data"),
    ("empty file", b"", "invalid_json", "zero-length"),
    ("not utf-8", 'Me: "año"'.encode("latin-1"), "not_utf8", "invalid UTF-8 at byte 6"),
    ("array", b"[]", "not_object", "the JSON value is a list"),
    ("number", b"42", "not_object", "the JSON value is a int"),
    ("string", b'"hello"', "not_object", "the JSON value is a str"),
    ("null", b"null", "not_object", "the JSON value is a NoneType"),
    ("no timestamp", {"drop": ["timestamp"]}, "missing_timestamp", "no 'timestamp' field"),
    ("bad timestamp", {"timestamp": "last tuesday"}, "bad_timestamp", "'last tuesday'"),
    ("numeric timestamp", {"timestamp": 1732300159123}, "bad_timestamp", "not an ISO 8601"),
    ("list content", {"content": ["a", "b"]}, "wrong_field_type", "'content' must be a string, got list"),
    ("number id", {"id": 202511011200000}, "wrong_field_type", "'id' must be a non-empty string"),
    ("empty content", {"content": ""}, "empty_content", "'content' is missing or blank"),
    ("blank content", {"content": " \n\t "}, "empty_content", "'content' is missing or blank"),
    ("no content", {"drop": ["content"]}, "empty_content", "'content' is missing or blank"),
]


BAD_FIELDS: list[tuple[str, dict[str, Any], str, str]] = [
    ("number response", {"response": 42}, "response", "'response' must be a string, got int; left out"),
    ("number type", {"type": 7}, "type", "'type' must be a string, got int; left out"),
    ("tags not list", {"tags": "chat"}, "tags", "'tags' must be a list of strings; left out"),
    ("entities with number", {"entities": ["Maya", 3]}, "entities", "'entities' must be a list of strings"),
    ("text importance", {"importance": "high"}, "importance", "'importance' must be a number, got str"),
    ("bool importance", {"importance": True}, "importance", "'importance' must be a number, got bool"),
    ("number userId", {"userId": 5}, "user_id", "'userId' must be a string, got int; left out"),
    ("list metadata", {"metadata": []}, "metadata", "'metadata' must be an object, got list; left out"),
]
DEFAULTS = {"response": None, "type": "observation", "tags": [], "entities": [], "importance": 0.5,
            "user_id": None, "metadata": {}}


@pytest.mark.parametrize(("case", "change", "column", "detail"), BAD_FIELDS, ids=[c[0] for c in BAD_FIELDS])
def test_a_bad_field_costs_only_that_field(empty_profile: Profile, make_memory_file: Any, memory_payload: Any,
                                           case: str, change: dict[str, Any], column: str, detail: str) -> None:
    bad = make_memory_file(empty_profile, memory_payload("I kept my words", **change))
    frame, report = load_memories(empty_profile)
    assert frame["content"].tolist() == ["I kept my words"] and report.skipped == ()
    value = frame[column].iloc[0]
    assert (value.tolist() if hasattr(value, "tolist") else value) == DEFAULTS[column] or (
        column == "type" and value == DEFAULT_TYPE)
    assert report.repaired == (SkippedFile(bad.relative_to(empty_profile.episodic_dir).as_posix(), "field_dropped",
                                           report.repaired[0].detail),)
    assert detail in report.repaired[0].detail and report.counts_repaired() == {"field_dropped": 1}


def test_a_lone_surrogate_escape_costs_nothing_but_the_broken_character(empty_profile: Profile,
                                                                         make_memory_file: Any) -> None:
    raw = (b'{"id": "evt-202511011200000", "timestamp": "2025-11-01T12:00:00.000Z", "type": "conversation", '
           b'"content": "User: how was it?", "response": "Great day \\ud83d and a whole \\ud83d\\ude00 one"}')
    make_memory_file(empty_profile, raw)
    frame, report = load_memories(empty_profile)
    assert frame["response"].tolist() == ["Great day \ufffd and a whole \U0001f600 one"]
    assert report.skipped == () and [r.reason for r in report.repaired] == ["lone_surrogate"]


@pytest.mark.parametrize(("case", "change", "reason", "detail"), BAD_PAYLOADS,
                         ids=[case[0] for case in BAD_PAYLOADS])
def test_each_bad_file_is_skipped_with_its_reason(empty_profile: Profile, make_memory_file: Any,
                                                  memory_payload: Any, case: str, change: Any,
                                                  reason: str, detail: str) -> None:
    make_memory_file(empty_profile, memory_payload("a good one", timestamp="2025-10-01T00:00:00Z"))
    if isinstance(change, bytes):
        bad = make_memory_file(empty_profile, change, name="evt-202511011200001-bad.json")
    else:
        bad = make_memory_file(empty_profile, memory_payload(**{"timestamp": GOOD_TS, **change}),
                               name="evt-202511011200001-bad.json", folder="2025/11/01")
    frame, report = load_memories(empty_profile)
    assert frame["content"].tolist() == ["a good one"]
    assert len(report.skipped) == 1
    skipped = report.skipped[0]
    assert (skipped.path, skipped.reason) == (bad.relative_to(empty_profile.episodic_dir).as_posix(), reason)
    assert detail in skipped.detail
    assert reason in SKIP_REASONS
    assert report.files_seen == 2 and report.loaded == 1


def test_missing_id_is_taken_from_the_file_name(empty_profile: Profile, make_memory_file: Any,
                                                memory_payload: Any) -> None:
    payload = memory_payload("no id here", drop=["id"])
    make_memory_file(empty_profile, payload, name="evt-202511011200007-no-id-here.json")
    frame, report = load_memories(empty_profile)
    assert frame["id"].tolist() == ["evt-202511011200007"] and report.skipped == ()


def test_missing_id_without_an_id_file_name_is_skipped(empty_profile: Profile, make_memory_file: Any,
                                                       memory_payload: Any) -> None:
    make_memory_file(empty_profile, memory_payload("x", drop=["id"]), name="note.json")
    frame, report = load_memories(empty_profile)
    assert len(frame) == 0
    assert [(s.path, s.reason) for s in report.skipped] == [("2025/11/01/note.json", "missing_id")]


def test_encrypted_and_other_files_are_counted(empty_profile: Profile, make_memory_file: Any) -> None:
    make_memory_file(empty_profile)
    make_memory_file(empty_profile, b"\x00\x93\x11" * 50, name="evt-202511011200001-x.json.enc")
    make_memory_file(empty_profile, b"notes", name="README.md")
    frame, report = load_memories(empty_profile)
    assert len(frame) == 1 and report.encrypted == 1
    assert [(s.path, s.reason) for s in report.skipped] == [
        ("2025/11/01/README.md", "not_memory_file"),
        ("2025/11/01/evt-202511011200001-x.json.enc", "encrypted"),
    ]


def test_files_over_the_size_limit_are_skipped(empty_profile: Profile, make_memory_file: Any,
                                               memory_payload: Any) -> None:
    make_memory_file(empty_profile, memory_payload("short", timestamp="2025-11-01T00:00:00Z"))
    big = make_memory_file(empty_profile, memory_payload("long " * 300))
    frame, report = load_memories(empty_profile, max_file_bytes=1000)
    assert frame["content"].tolist() == ["short"]
    assert [(s.path, s.reason, s.detail) for s in report.skipped] == [
        (big.relative_to(empty_profile.episodic_dir).as_posix(), "too_large", "larger than 1000 bytes")]


def test_size_limit_is_exact(empty_profile: Profile, make_memory_file: Any) -> None:
    path = make_memory_file(empty_profile)
    size = path.stat().st_size
    assert len(load_memories(empty_profile, max_file_bytes=size)[0]) == 1
    assert load_memories(empty_profile, max_file_bytes=size - 1)[1].skipped[0].reason == "too_large"


def test_large_files_under_the_limit_are_read_whole(empty_profile: Profile, make_memory_file: Any,
                                                    memory_payload: Any) -> None:
    content = "word " * 40_000  # 200 kB: more than one read
    make_memory_file(empty_profile, memory_payload(content))
    frame, _ = load_memories(empty_profile)
    assert frame["content"].iloc[0] == content


def test_two_memories_with_one_id_are_both_kept(empty_profile: Profile, make_memory_file: Any,
                                                memory_payload: Any) -> None:
    first = make_memory_file(empty_profile, memory_payload("first memory"))
    second = make_memory_file(empty_profile, memory_payload("a different memory"), category="reflections")
    third = make_memory_file(empty_profile, memory_payload("a third one"), category="dreams")
    frame, report = load_memories(empty_profile)
    rels = [p.relative_to(empty_profile.episodic_dir).as_posix() for p in (first, second, third)]
    by_id = dict(zip(frame["id"], frame["content"], strict=True))
    # path order: 2025/..., dreams/..., reflections/...: the first keeps the id
    assert by_id == {"evt-202511011200000": "first memory", "evt-202511011200000~2": "a third one",
                     "evt-202511011200000~3": "a different memory"}
    assert report.skipped == () and len(frame) == 3
    assert sorted(r.path for r in report.repaired) == sorted(rels[1:])
    assert {r.reason for r in report.repaired} == {"id_collision"}
    assert all("evt-202511011200000" in r.detail for r in report.repaired)


def test_symlinks_outside_the_profile_are_skipped(empty_profile: Profile, make_memory_file: Any,
                                                  memory_payload: Any, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_bytes(b'{"id": "evt-1", "timestamp": "2025-11-01T00:00:00Z", "content": "x"}')
    make_memory_file(empty_profile)
    day = empty_profile.episodic_dir / "2025" / "11" / "01"
    os.symlink(outside / "secret.json", day / "evt-202511011200009-link.json")
    os.symlink(outside, empty_profile.episodic_dir / "linked-folder")
    frame, report = load_memories(empty_profile)
    assert len(frame) == 1
    assert [(s.path, s.reason) for s in report.skipped] == [
        ("2025/11/01/evt-202511011200009-link.json", "symlink_outside_profile"),
        ("linked-folder", "symlink_outside_profile"),
    ]
    assert report.skipped[0].detail == f"links to {(outside / 'secret.json').resolve()}"


def test_symlinks_inside_the_profile_are_followed_once(empty_profile: Profile, make_memory_file: Any,
                                                       memory_payload: Any) -> None:
    make_memory_file(empty_profile, memory_payload("in 2025"))
    shared = empty_profile.profile_dir / "memory" / "shared"
    shared.mkdir()
    (shared / "evt-202501010000000-shared.json").write_bytes(
        b'{"id": "evt-202501010000000", "timestamp": "2025-01-01T00:00:00Z", "content": "shared"}')
    os.symlink(shared, empty_profile.episodic_dir / "curated")
    os.symlink(empty_profile.episodic_dir / "2025", empty_profile.episodic_dir / "2025" / "loop")
    frame, report = load_memories(empty_profile)
    assert frame["content"].tolist() == ["shared", "in 2025"]
    assert frame["category"].tolist() == ["curated", None]
    assert {s.reason for s in report.skipped} == {"duplicate_id"}  # the same file through a link: read once
    assert report.repaired == ()


def test_broken_symlink_is_unreadable(empty_profile: Profile, make_memory_file: Any) -> None:
    make_memory_file(empty_profile)
    day = empty_profile.episodic_dir / "2025" / "11" / "01"
    os.symlink(day / "gone.json", day / "evt-202511011200001-broken.json")
    frame, report = load_memories(empty_profile)
    assert len(frame) == 1
    assert [(s.path, s.reason, s.detail) for s in report.skipped] == [
        ("2025/11/01/evt-202511011200001-broken.json", "unreadable", "No such file or directory")]


def test_all_bad_files_at_once_the_rest_loads(empty_profile: Profile, make_memory_file: Any,
                                              memory_payload: Any) -> None:
    for minute in range(3):
        make_memory_file(empty_profile, memory_payload(f"good {minute}",
                                                       timestamp=f"2025-10-01T00:0{minute}:00Z"))
    for index, (_case, change, _reason, _detail) in enumerate(BAD_PAYLOADS):
        name = f"evt-2025110112000{index:02d}-bad.json"
        data = change if isinstance(change, bytes) else memory_payload(**{"timestamp": GOOD_TS, **change})
        make_memory_file(empty_profile, data, name=name, folder="2025/11/01")
    frame, report = load_memories(empty_profile)
    assert frame["content"].tolist() == ["good 0", "good 1", "good 2"]
    expected = {}
    for _case, _change, reason, _detail in BAD_PAYLOADS:
        expected[reason] = expected.get(reason, 0) + 1
    assert report.counts_by_reason() == dict(sorted(expected.items(), key=lambda kv: (-kv[1], kv[0])))
    table = report.to_frame()
    assert list(table.columns) == ["path", "reason", "detail"] and len(table) == len(BAD_PAYLOADS)


def test_missing_profile_is_one_line_naming_the_folder(tmp_path: Path) -> None:
    profile = Profile(tmp_path, "nobody")
    with pytest.raises(ProfileError, match=r"^No MetaHuman OS profile for 'nobody': expected the folder "
                       + str(profile.episodic_dir).replace(".", r"\.") + r"\. Pass --root"):
        load_memories(profile)


# ---------------------------------------------------------------- the demo profile

def test_demo_profile_loads_every_memory(demo_profile: Profile) -> None:
    frame, report = load_memories(demo_profile)
    assert len(frame) == 600 == report.loaded
    assert report.files_seen == 610
    assert report.counts_by_reason() == {"encrypted": 3, "invalid_json": 2, "empty_content": 1,
                                         "missing_timestamp": 1, "not_object": 1, "not_utf8": 1,
                                         "wrong_field_type": 1}
    assert frame["id"].is_unique
    assert frame["timestamp"].is_monotonic_increasing
    assert frame["timestamp"].max() < pd.Timestamp(DEMO_END)


def test_demo_profile_mode_mix_matches_the_seed_targets(tmp_path: Path) -> None:
    """On 3,000 memories: the 600 of the shared fixture leave a share a few points of chance."""
    frame, _ = load_memories(write_demo_profile(tmp_path, "demo", memories=3000, months=6))
    share = frame["mode"].value_counts(normalize=True)
    assert 0.20 <= share["dual"] <= 0.40
    assert 0.40 <= share["emulation"] <= 0.60
    assert 0.10 <= share["agent"] <= 0.20
    assert set(frame["mode_source"]) == {"metadata", "type"}


def test_demo_profile_summary(demo_profile: Profile) -> None:
    frame, report = load_memories(demo_profile)
    summary = summarize_memories(frame, report)
    assert summary.total == 600 and sum(summary.by_mode.values()) == 600
    assert list(summary.by_month) == sorted(summary.by_month)
    assert len(summary.by_month) in (4, 5)
    assert summary.by_type["conversation"] == max(summary.by_type.values())
    assert summary.skipped["encrypted"] == 3


def test_skip_reasons_are_snake_case_and_all_exercised() -> None:
    exercised = {reason for _case, _change, reason, _detail in BAD_PAYLOADS}
    exercised |= {"missing_id", "encrypted", "not_memory_file", "too_large", "duplicate_id",
                  "symlink_outside_profile", "unreadable"}  # the dedicated tests above
    assert exercised == set(SKIP_REASONS)
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", reason) for reason in SKIP_REASONS)


def test_pipes_are_never_opened(empty_profile: Profile, make_memory_file: Any) -> None:
    make_memory_file(empty_profile)
    day = empty_profile.episodic_dir / "2025" / "11" / "01"
    os.mkfifo(day / "evt-202511011200001-pipe.json")
    os.symlink(day / "evt-202511011200001-pipe.json", day / "evt-202511011200002-link.json")
    frame, report = load_memories(empty_profile)
    assert len(frame) == 1
    assert [(s.path, s.reason, s.detail) for s in report.skipped] == [
        ("2025/11/01/evt-202511011200001-pipe.json", "not_memory_file", "not a regular file"),
        ("2025/11/01/evt-202511011200002-link.json", "not_memory_file", "not a regular file"),
    ]


def test_unlistable_folder_is_reported(empty_profile: Profile, make_memory_file: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    make_memory_file(empty_profile)
    (empty_profile.episodic_dir / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path: str) -> Any:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr("metahuman_lib.memory.os.scandir", scandir)
    frame, report = load_memories(empty_profile)
    assert len(frame) == 1
    assert report.skipped == (SkippedFile("locked", "unreadable",
                                          "cannot list the folder: Permission denied"),)


def test_a_flat_folder_is_shared_out_and_read_in_path_order(empty_profile: Profile,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Files straight in a category folder (no date folders) become tasks of a batch each, so
    several processes share them; the table is the same as read in one process."""
    import orjson

    from metahuman_lib import _shards, memory

    flat = empty_profile.episodic_dir / "reflections"
    flat.mkdir(parents=True)
    for index in range(90):
        (flat / f"evt-2025010100{index:05d}.json").write_bytes(orjson.dumps({
            "id": f"evt-2025010100{index:05d}", "timestamp": f"2025-01-01T00:{index // 60:02d}:{index % 60:02d}Z",
            "type": "reflection", "content": f"thought {index}"}))
    dated = empty_profile.episodic_dir / "2025" / "02" / "01"
    dated.mkdir(parents=True)
    (dated / "evt-202502010000000.json").write_bytes(orjson.dumps({
        "id": "evt-202501010000000", "timestamp": "2025-02-01T00:00:00Z", "content": "same id, earlier path"}))
    monkeypatch.setenv(_shards.WORKERS_ENV, "1")
    expected, expected_report = memory.load_memories(empty_profile)
    monkeypatch.setenv(_shards.WORKERS_ENV, "3")
    monkeypatch.setattr(memory, "_BATCH_FILES", 16)
    monkeypatch.setattr(memory, "_FORK_FILES", 1)
    top = memory._Walk(str(empty_profile.episodic_dir), str(empty_profile.profile_dir))
    top.walk(str(empty_profile.episodic_dir), "", None, depth=1)
    assert [len(task) for task in top.tasks(16) if isinstance(task, list)] == [16] * 5 + [10]
    got, report = memory.load_memories(empty_profile)
    pd.testing.assert_frame_equal(got, expected)
    assert report == expected_report
    assert report.counts_repaired() == {"id_collision": 1}  # the later path (reflections/) gets the new id
    assert got.loc[got["content"] == "thought 0", "id"].tolist() == ["evt-202501010000000~2"]


@pytest.mark.parametrize("workers", ["1", "3"])
def test_the_first_in_walk_order_keeps_a_shared_id(empty_profile: Profile, workers: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Folder by folder, ``2025/`` comes before ``2025-old/`` (though ``-`` sorts before ``/``),
    whichever process read which day folder and in which batch."""
    import orjson

    from metahuman_lib import _shards, memory

    for folder, content in (("2025-old/01/01", "in 2025-old"), ("2025/01/01", "in 2025")):
        day = empty_profile.episodic_dir / folder
        day.mkdir(parents=True)
        (day / "evt-202501010000000.json").write_bytes(orjson.dumps({
            "id": "evt-202501010000000", "timestamp": "2025-01-01T00:00:00Z", "content": content}))
        for index in range(20):  # more day folders, so the tasks are shared out
            other = empty_profile.episodic_dir / folder.replace("/01/01", f"/02/{index + 1:02d}")
            other.mkdir(parents=True)
            (other / f"evt-2025020{index:02d}00000{len(content)}.json").write_bytes(orjson.dumps({
                "id": f"evt-2025020{index:02d}00000{len(content)}", "timestamp": "2025-02-01T00:00:00Z",
                "content": f"filler {index}"}))
    monkeypatch.setenv(_shards.WORKERS_ENV, workers)
    monkeypatch.setattr(memory, "_FORK_FILES", 1)
    monkeypatch.setattr(memory, "_BATCH_FILES", 3)
    frame, _ = memory.load_memories(empty_profile)
    assert frame.loc[frame["content"] == "in 2025", "id"].tolist() == ["evt-202501010000000"]
    assert frame.loc[frame["content"] == "in 2025-old", "id"].tolist() == ["evt-202501010000000~2"]
    assert memory._path_order(["2025-old/a.json", "2025/b.json", "2025/a/c.json"]) == [2, 1, 0]
