"""The seed's quality metrics (spec section 3) on a hand-built dataset with known answers, and gates."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pandas as pd
import pytest
from _helpers_curation import memories_frame, memory

from metahuman_lib.curation import build_samples
from metahuman_lib.errors import ConfigError, PipelineStepError
from metahuman_lib.quality import (
    GateResult,
    QualityGates,
    count_recent,
    evaluate_gates,
    finish_review,
    format_metrics_block,
    monthly_volume,
    percent,
    quality_metrics,
    require_gates,
    type_coverage,
)
from metahuman_lib.samples import records_to_samples


def _text(words: int, lead: str = "") -> str:
    body = [f"w{i}" for i in range(words - len(lead.split()))]
    return " ".join([lead, *body]).strip() if lead else " ".join(body)


def _samples(specs: list[tuple[str, str, str]]):
    """Samples from (assistant text, mode, ISO timestamp)."""
    records = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                             {"role": "assistant", "content": text}],
                "metadata": {"sample_id": f"s{i}", "memory_id": f"s{i}", "type": "conversation",
                             "mode": mode, "mode_source": "type", "timestamp": stamp}}
               for i, (text, mode, stamp) in enumerate(specs)]
    return records_to_samples(records)


# 8 samples with word counts 1, 40, 41, 100, 101, 5, 50, 200 (sum 538)
HAND_BUILT = [
    (_text(1), "dual", "2025-09-30T23:59:59Z"),
    (_text(40, "As an AI"), "dual", "2025-10-01T00:00:00Z"),
    (_text(41), "emulation", "2025-10-15T12:00:00Z"),
    (_text(100, "I’m just"), "emulation", "2025-10-20T12:00:00Z"),   # curly apostrophe
    (_text(101, "okay, so"), "emulation", "2025-11-01T00:00:00Z"),
    ("two  words\n\nhere now  ok", "emulation", "2025-11-02T00:00:00Z"),  # 5 words, whitespace runs
    (_text(50, "Certainly"), "agent", "2025-11-03T00:00:00Z"),
    (_text(200, "certainly as an ai"), "agent", "2025-11-04T00:00:00Z"),
]


def test_metrics_on_a_hand_built_dataset() -> None:
    samples = _samples(HAND_BUILT)
    assert samples["word_count"].tolist() == [1, 40, 41, 100, 101, 5, 50, 200]
    metrics = quality_metrics(samples, {"memories": 12, "duplicates_exact": 2, "duplicates_near": 1,
                                        "scrubbed_email": 3, "dropped_summary": 1})
    assert (metrics.total, metrics.short, metrics.medium, metrics.long) == (8, 3, 3, 2)
    assert (metrics.short_pct, metrics.medium_pct, metrics.long_pct) == (37.5, 37.5, 25.0)
    assert (metrics.filler, metrics.filler_pct) == (5, 62.5)
    assert metrics.avg_words == 67.3  # 538 / 8 = 67.25, half up
    assert metrics.modes == {"dual": 2, "emulation": 4, "agent": 2}
    assert metrics.mode_pct == {"dual": 25.0, "emulation": 50.0, "agent": 25.0}
    assert metrics.per_month == {"2025-09": 1, "2025-10": 3, "2025-11": 4}
    assert metrics.top_fillers == (("as an ai", 2), ("certainly", 2), ("i'm just", 1), ("okay, so", 1))
    histogram = dict(metrics.length_histogram)
    assert histogram["1-10"] == 2 and histogram["31-40"] == 1 and histogram["41-60"] == 2
    assert histogram["81-100"] == 1 and histogram["101-150"] == 1 and histogram["151-200"] == 1
    assert sum(histogram.values()) == 8 and histogram["0"] == 0 and histogram[">500"] == 0
    assert (metrics.memories, metrics.duplicates_exact, metrics.duplicates_near) == (12, 2, 1)
    assert metrics.scrubbed["email"] == 3 and metrics.dropped["summary"] == 1
    assert orjson.loads(orjson.dumps(metrics.to_dict()))["top_fillers"][0] == ["as an ai", 2]


@pytest.mark.parametrize(("count", "total", "expected"), [
    (1, 8, 12.5), (1, 16, 6.3), (1, 400, 0.3), (2, 3, 66.7), (1, 3, 33.3), (3, 40, 7.5),
    (0, 5, 0.0), (5, 5, 100.0), (0, 0, 0.0), (1, 6, 16.7), (1, 80, 1.3),
])
def test_percent_rounds_half_up_to_one_decimal(count: int, total: int, expected: float) -> None:
    assert percent(count, total) == expected


def test_metrics_of_no_samples() -> None:
    metrics = quality_metrics(_samples([]))
    assert (metrics.total, metrics.short_pct, metrics.avg_words, metrics.per_month) == (0, 0.0, 0.0, {})
    assert evaluate_gates(metrics) == [GateResult("sample_count", "fail", "no samples: every memory "
                                                  "was dropped or the profile is empty")]


def _metrics_with(total: int, short: int, filler: int, modes=(30, 50, 20), medium=None, long=None):
    medium = medium if medium is not None else (total - short) * 2 // 3
    long = long if long is not None else total - short - medium
    specs = [(_text(10, "certainly" if i < filler else ""), "dual", "2025-11-01T00:00:00Z")
             for i in range(short)]
    specs += [(_text(60), "dual", "2025-11-01T00:00:00Z") for _ in range(medium)]
    specs += [(_text(120), "dual", "2025-11-01T00:00:00Z") for _ in range(long)]
    samples = _samples(specs)
    dual, emulation = modes[0] * total // 100, modes[1] * total // 100
    samples["mode"] = ["dual"] * dual + ["emulation"] * emulation + ["agent"] * (total - dual - emulation)
    return quality_metrics(samples)


@pytest.mark.parametrize(("short", "status", "reason"), [
    (600, "fail", "60.0% of samples are short (<=40 words): must be below 60%"),
    (599, "warn", "59.9% of samples are short (<=40 words): below the 60% gate but above the 50% target"),
    (500, "warn", "50.0% of samples are short (<=40 words): below the 60% gate but above the 50% target"),
    (499, "pass", "49.9% of samples are short (<=40 words): below the 50% target"),
])
def test_short_gate_boundaries(short: int, status: str, reason: str) -> None:
    gates = evaluate_gates(_metrics_with(1000, short, 0), "foundation")
    assert gates[0] == GateResult("short", status, reason)


@pytest.mark.parametrize(("filler", "status"), [(150, "fail"), (149, "warn"), (100, "warn"), (99, "pass")])
def test_filler_gate_boundaries(filler: int, status: str) -> None:
    assert evaluate_gates(_metrics_with(1000, 400, filler))[1].status == status


def test_sample_count_gates() -> None:
    small = _metrics_with(100, 40, 0)
    foundation = evaluate_gates(small, "foundation")[2]
    assert foundation == GateResult("sample_count", "fail", "only 100 samples: a foundation run needs "
                                    "more than 3,000; keep collecting memories")
    lowered = QualityGates(min_total_foundation=99, min_new_monthly=100)
    assert evaluate_gates(small, "foundation", gates=lowered)[2].status == "pass"
    assert evaluate_gates(small, "monthly", new_samples=501)[2] == GateResult(
        "sample_count", "pass", "501 new samples: more than the 500 needed for a monthly run")
    assert evaluate_gates(small, "monthly", new_samples=500)[2].status == "fail"
    assert evaluate_gates(small, "monthly", gates=lowered)[2].status == "fail"  # 100 is not > 100
    with pytest.raises(ConfigError, match="Unknown gate kind 'weekly'"):
        evaluate_gates(small, "weekly")


def test_length_and_mode_mix_only_warn() -> None:
    good = evaluate_gates(_metrics_with(100, 45, 0, medium=40, long=15))
    assert [(g.name, g.status) for g in good[3:]] == [("length_mix", "pass"), ("mode_mix", "pass")]
    off = evaluate_gates(_metrics_with(100, 45, 0, modes=(10, 85, 5), medium=50, long=5))
    assert off[3] == GateResult("length_mix", "warn", "outside the seed's targets: medium 50.0% "
                                "(target 30-40%), long 5.0% (target 10-20%)")
    assert off[4] == GateResult("mode_mix", "warn", "outside the seed's target mix: dual 10.0% "
                                "(target 20-40%), emulation 85.0% (target 40-60%), agent 5.0% (target 10-20%)")


def test_require_gates_raises_with_every_failed_reason() -> None:
    results = [GateResult("short", "fail", "93.0% short"), GateResult("filler", "warn", "12%"),
               GateResult("sample_count", "fail", "only 230 samples")]
    with pytest.raises(PipelineStepError, match=r"^Quality gates failed: short: 93.0% short; "
                                                r"sample_count: only 230 samples\.$"):
        require_gates(results)
    require_gates([GateResult("short", "pass", "fine"), GateResult("mode_mix", "warn", "off")])


def test_gate_settings_from_mapping() -> None:
    assert QualityGates.from_mapping({"min_total_foundation": 10}).min_total_foundation == 10
    assert QualityGates.from_mapping(None) == QualityGates()
    with pytest.raises(ConfigError, match="Unknown quality gate setting 'max_short'.*'max_short_pct'"):
        QualityGates.from_mapping({"max_short": 10})


def test_metrics_block_in_the_seeds_layout() -> None:
    metrics = _metrics_with(1000, 930, 83)
    block = format_metrics_block(metrics, evaluate_gates(metrics), "foundation")
    lines = block.splitlines()
    assert lines[0] == "Quality metrics (1,000 samples from 0 memories):"
    assert "- Short samples (<=40 words): 93.0%  ⚠️ TOO HIGH" in lines
    assert "- Filler detected: 8.3%  ✓ Good" in lines
    assert "- Total samples: 1,000  ⚠️ TOO LOW" in lines
    assert "Gates (foundation):" in lines
    assert "- FAIL short: 93.0% of samples are short (<=40 words): must be below 60%" in lines


def test_count_recent() -> None:
    samples = _samples(HAND_BUILT)
    now = datetime(2025, 11, 4, tzinfo=UTC)
    assert count_recent(samples, now, days=30) == 6  # 2025-10-05 < t <= 2025-11-04
    assert count_recent(samples, now, days=3) == 3
    with pytest.raises(ValueError, match="timezone-aware"):
        count_recent(samples, datetime(2025, 11, 4))


def test_type_coverage_and_monthly_volume() -> None:
    answer = "I repotted the basil and it already looks happier on the sill."
    frame = memories_frame([
        memory(answer, memory_type="journal", timestamp="2025-10-01T00:00:00Z"),
        memory(answer, memory_type="journal", timestamp="2025-10-02T00:00:00Z"),
        memory("Summary of the week in the garden.", memory_type="summary", timestamp="2025-11-01T00:00:00Z"),
        memory("Went for a long run by the creek and felt great.", memory_type="observation",
               timestamp="2025-11-02T00:00:00Z"),
    ])
    result = build_samples(frame)
    coverage = type_coverage(frame, result).set_index("type")
    assert coverage.loc["journal"].to_dict() == {"memories": 2, "samples": 1, "dropped": 1,
                                                 "summary": 0, "exact_duplicate": 1}
    assert coverage.loc["summary", "dropped"] == 1 and coverage.loc["observation", "samples"] == 1
    volume = monthly_volume(frame, result.samples)
    assert volume.values.tolist() == [["2025-10", 2, 1], ["2025-11", 2, 1]]


def test_finish_review_records_the_manifest_and_enforces_gates(demo_profile, tmp_path) -> None:
    from metahuman_lib.quality import curate_profile
    from metahuman_lib.runfolder import read_manifest

    assert finish_review(curate_profile(demo_profile), "").startswith("Exploring")
    review = curate_profile(demo_profile, gates=QualityGates(min_total_foundation=10))
    assert finish_review(review, tmp_path / "run").startswith("Quality recorded")
    section = read_manifest(tmp_path / "run")["quality"]
    assert section["passed"] is True and section["kind"] == "foundation"
    assert section["metrics"]["total"] == review.metrics.total
    assert [g["name"] for g in section["gates"]] == ["short", "filler", "sample_count", "length_mix",
                                                     "mode_mix"]
    strict = curate_profile(demo_profile)
    with pytest.raises(PipelineStepError, match="Quality gates failed: sample_count: only"):
        finish_review(strict, tmp_path / "run2")
    assert read_manifest(tmp_path / "run2")["quality"]["passed"] is False


def test_a_review_as_of_now_leaves_out_later_memories(demo_profile) -> None:
    """A run dated ``now`` reviews only the memories that existed then, as selection does."""
    from metahuman_lib.quality import curate_profile

    everything = curate_profile(demo_profile)
    newest = everything.memories["timestamp"].max()
    cutoff = newest - pd.Timedelta(days=30)
    as_of = curate_profile(demo_profile, now=cutoff.to_pydatetime())
    assert as_of.memories["timestamp"].max() <= cutoff
    assert len(as_of.memories) == int((everything.memories["timestamp"] <= cutoff).sum())
    assert 0 < as_of.metrics.total < everything.metrics.total


def test_an_exploring_review_uses_the_gates_of_the_newest_run(tmp_path) -> None:
    import orjson

    from metahuman_lib.profile import Profile
    from metahuman_lib.quality import QualityGates, review_gates

    profile = Profile(tmp_path / "root", "tester")
    assert review_gates(profile, {}, "") == QualityGates()  # no run yet: the seed's gates
    run = profile.run_dir("2025-11-30-000000-aaaaaa")
    run.mkdir(parents=True)
    (run / "manifest.json").write_bytes(orjson.dumps(
        {"cycle": {"parameters": {"blocks": {"quality": {"min_total_foundation": 300}}}}}))
    assert review_gates(profile, {}, "").min_total_foundation == 300
    assert review_gates(profile, {"min_total_foundation": 50}, "").min_total_foundation == 50
    assert review_gates(profile, {}, str(run)) == QualityGates()  # inside a run: the run's own settings, given
