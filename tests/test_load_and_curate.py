"""The one-pass ``load_and_curate`` (workers curate the memories they read) gives exactly what
``load_memories`` then ``build_samples`` give, serially or in shards and batches of files,
whatever the options."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _helpers_curation import write_mixed_profile

from metahuman_lib import _shards, memory
from metahuman_lib.curation import CurationOptions, build_samples, load_and_curate
from metahuman_lib.memory import load_memories
from metahuman_lib.profile import Profile
from metahuman_lib.quality import curate_profile

NOW = datetime(2025, 12, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def mixed_profile(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Profile:
    """The demo profile plus what needs all memories at once (see ``write_mixed_profile``)."""
    return write_mixed_profile(tmp_path_factory.mktemp("mixed"), demo_root, repeated_id=True)


def _serial_reference(profile: Profile, options: CurationOptions, now: datetime | None):
    memories, report = load_memories(profile)
    if now is not None:
        memories = memories[memories["timestamp"] <= pd.Timestamp(now)].reset_index(drop=True)
    return memories, report, build_samples(memories, options)


def _assert_same(got: tuple[Any, ...], expected: tuple[Any, ...]) -> None:
    memories, report, result = got
    want_memories, want_report, want_result = expected
    pd.testing.assert_frame_equal(memories, want_memories[list(memories.columns)])
    assert report == want_report
    pd.testing.assert_frame_equal(result.samples, want_result.samples)
    pd.testing.assert_frame_equal(result.dropped, want_result.dropped)
    assert result.stats == want_result.stats


OPTIONS = [
    CurationOptions(username="Greg"),
    CurationOptions(),  # the username comes from the memories
    CurationOptions(username="Greg", mode="agent"),
    CurationOptions(username="Greg", dedup=False, scrub=False, strip_filler=False),
    CurationOptions(username="Greg", near_dup_threshold=1.0, min_words=6,
                    include=frozenset({"summary", "rejected_by_person"})),
]


@pytest.mark.parametrize("workers", ["1", "3"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"mode={o.mode},dedup={o.dedup}")
@pytest.mark.parametrize("now", [NOW, None], ids=["now", "all"])
@pytest.mark.parametrize("keep", [True, False], ids=["table", "light"])
def test_one_pass_equals_load_then_build(mixed_profile: Profile, options: CurationOptions,
                                         now: datetime | None, workers: str, keep: bool,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _serial_reference_with(monkeypatch, mixed_profile, options, now)
    monkeypatch.setenv(_shards.WORKERS_ENV, workers)
    monkeypatch.setattr(_shards, "MIN_SHARD", 50)
    if workers != "1":  # forked early, and each month folder read in batches of files
        monkeypatch.setattr(memory, "_FORK_FILES", 20)
        monkeypatch.setattr(memory, "_BATCH_FILES", 37)
    got = load_and_curate(mixed_profile, options, now=now, keep_memories=keep)
    _assert_same(got, expected)
    light = ["id", "timestamp", "type", "mode", "mode_source", "path"]
    if options.username is None:
        light.insert(-1, "user_id")
    assert list(got[0].columns) == (list(expected[0].columns) if keep else light)


def _serial_reference_with(monkeypatch: pytest.MonkeyPatch, profile: Profile,
                           options: CurationOptions, now: datetime | None):
    with monkeypatch.context() as patch:
        patch.setenv(_shards.WORKERS_ENV, "1")
        return _serial_reference(profile, options, now)


def test_the_mixed_profile_has_what_the_test_is_about(mixed_profile: Profile) -> None:
    memories, report, result = load_and_curate(mixed_profile, CurationOptions(username="Greg"),
                                               now=NOW)
    assert report.counts_repaired().get("id_collision") == 1  # a copy under the same id: kept, then deduplicated
    assert not (memories["timestamp"] > pd.Timestamp(NOW)).any()
    tools = result.samples[result.samples["memory_id"].str.startswith("evt-20251201100000")]
    instructions = [messages[1]["content"] for messages in tools["messages"]]
    assert "Use web_search." in instructions  # the missing parent
    assert "Book the dentist" in instructions  # its own instruction wins over the parent's
    assert sum(text not in ("Use web_search.", "Book the dentist") for text in instructions) == 3


def test_build_samples_in_shards_equals_serial(mixed_profile: Profile,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    memories, _ = load_memories(mixed_profile)
    with monkeypatch.context() as patch:
        patch.setenv(_shards.WORKERS_ENV, "1")
        expected = build_samples(memories, CurationOptions(username="Greg"))
    monkeypatch.setenv(_shards.WORKERS_ENV, "2")
    monkeypatch.setattr(_shards, "MIN_SHARD", 50)
    got = build_samples(memories, CurationOptions(username="Greg"))
    pd.testing.assert_frame_equal(got.samples, expected.samples)
    pd.testing.assert_frame_equal(got.dropped, expected.dropped)
    assert got.stats == expected.stats


@pytest.mark.parametrize("keep", [True, False])
def test_quality_review_uses_the_one_pass(mixed_profile: Profile, keep: bool) -> None:
    review = curate_profile(mixed_profile, CurationOptions(username="Greg"), now=NOW,
                            keep_memories=keep)
    memories, _, expected = _serial_reference(mixed_profile, CurationOptions(username="Greg"), NOW)
    pd.testing.assert_frame_equal(review.curation.samples, expected.samples)
    assert review.metrics.total == len(expected.samples)
    if keep:
        pd.testing.assert_frame_equal(review.memories, memories)
    else:
        assert review.memories is None
