"""Selection: every invariant as a property, stratified proportions, manifests and the old probe."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from _helpers_selection import MODES, NOW, make_samples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metahuman_lib.errors import ConfigError, PipelineStepError, WorkbenchError
from metahuman_lib.profile import Profile
from metahuman_lib.runfolder import read_manifest
from metahuman_lib.samples import SAMPLE_COLUMNS, read_samples_jsonl
from metahuman_lib.selection import (
    largest_remainder,
    load_old_probe_ids,
    parse_now,
    reproduce_selection,
    run_selection,
    select,
    total_variation,
    write_selection,
)
from metahuman_lib.strategies import Strategy

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def samples_tables(draw, max_per_memory: int = 3):
    """Small samples tables: memories within 200 days before NOW (a few after), 1..n samples each."""
    memories = draw(st.lists(st.tuples(st.integers(-3, 200 * 24), st.sampled_from(MODES),
                                       st.integers(1, max_per_memory)), min_size=0, max_size=60))
    rows = []
    for index, (hours_ago, mode, size) in enumerate(memories):
        stamp = pd.Timestamp(NOW) - pd.Timedelta(hours=hours_ago)
        for part in range(size):
            rows.append({"sample_id": f"m{index:03d}#{part}", "memory_id": f"m{index:03d}",
                         "timestamp": stamp, "type": "conversation", "mode": mode, "mode_source": "type",
                         "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a b"}],
                         "assistant_text": "a b", "word_count": 2})
    frame = pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["word_count"] = frame["word_count"].astype("int64")
    return frame


strategies_ = st.builds(
    Strategy,
    days_recent=st.one_of(st.none(), st.integers(0, 120)),
    old_samples=st.integers(0, 80),
    max_samples=st.one_of(st.none(), st.integers(0, 100)),
    mode=st.one_of(st.none(), st.sampled_from(MODES)),
    old_sampling=st.sampled_from(["uniform", "stratified"]),
    eval_recent_share=st.sampled_from([0.0, 0.05, 0.3]),
    eval_recent_min=st.integers(0, 4),
    old_probe_size=st.integers(0, 10),
    old_probe_max_share=st.sampled_from([0.0, 0.1, 0.5]),
)


def _memory_sets(selection):
    return [set(frame["memory_id"]) for frame in (selection.train, selection.eval_recent, selection.eval_old)]


@PROPERTY
@given(samples=samples_tables(), strategy=strategies_, seed=st.integers(0, 2**32 - 1))
def test_invariants(samples, strategy, seed):
    selection = select(samples, strategy, NOW, seed)
    counts, train = selection.counts, selection.train
    eligible = samples[samples["timestamp"] <= pd.Timestamp(NOW)]
    # nothing after now; no duplicates; the three sets share no memory
    assert (train["timestamp"] <= pd.Timestamp(NOW)).all()
    assert not train["sample_id"].duplicated().any()
    train_m, recent_m, old_m = _memory_sets(selection)
    assert not (train_m & recent_m) and not (train_m & old_m) and not (recent_m & old_m)
    # whole memories: every eligible sample of a chosen memory comes along
    for frame in (train, selection.eval_recent, selection.eval_old):
        expected = eligible[eligible["memory_id"].isin(set(frame["memory_id"]))]
        assert sorted(frame["sample_id"]) == sorted(expected["sample_id"])
    # every sample is accounted for exactly once
    assert counts.input_samples == (counts.after_now + counts.old_probe + counts.mode_filtered_out
                                    + counts.recent_pool + counts.old_available)
    assert counts.recent_pool == counts.eval_recent + counts.recent_available
    assert counts.train_samples == len(train) == counts.recent_selected + counts.old_selected
    # mode filter before sampling
    if strategy.mode is not None:
        assert (train["mode"] == strategy.mode).all()
        assert (selection.eval_recent["mode"] == strategy.mode).all()
    # recent / old split by the window
    recent_rows = selection.is_recent(train)
    assert int(recent_rows.sum()) == counts.recent_selected
    if strategy.is_foundation:
        assert counts.old_available == 0 and selection.cutoff is None
    if strategy.days_recent == 0:
        assert counts.recent_pool == 0
    # max honoured; all recent in when it does not bind; 0 means 0
    cap = strategy.max_samples
    if cap is not None:
        assert counts.train_samples <= cap
    if cap is None or counts.recent_available <= cap:
        assert counts.recent_selected == counts.recent_available
    if strategy.old_samples == 0:
        assert counts.old_selected == 0
    # old: the target is min(K, pool) less what max leaves no room for; whole memories fill it
    assert counts.old_target == min(strategy.old_samples, counts.old_available) - counts.old_dropped_by_max
    assert counts.old_selected <= counts.old_target
    left = counts.old_target - counts.old_selected
    if left:
        old_pool = eligible[(~eligible["memory_id"].isin(train_m | old_m))
                            & (eligible["timestamp"] < pd.Timestamp(selection.cutoff))]
        if strategy.mode is not None:
            old_pool = old_pool[old_pool["mode"] == strategy.mode]
        assert (old_pool.groupby("memory_id").size() > left).all()
    # the held-out recent slice: at most half the pool
    assert counts.eval_recent <= counts.recent_pool // 2


@PROPERTY
@given(samples=samples_tables(max_per_memory=1), strategy=strategies_, seed=st.integers(0, 1000))
def test_exactly_k_old_when_memories_are_single_samples(samples, strategy, seed):
    counts = select(samples, strategy, NOW, seed).counts
    if strategy.max_samples is None:
        assert counts.old_selected == min(strategy.old_samples, counts.old_available)
    else:
        room = max(strategy.max_samples - counts.recent_selected, 0)
        assert counts.old_selected == min(strategy.old_samples, counts.old_available, room)


@PROPERTY
@given(samples=samples_tables(), strategy=strategies_, seed=st.integers(0, 1000), data=st.data())
def test_deterministic_whatever_the_row_order(samples, strategy, seed, data):
    first = select(samples, strategy, NOW, seed)
    order = data.draw(st.permutations(range(len(samples))))
    second = select(samples.iloc[list(order)], strategy, NOW, seed)
    for name in ("train", "eval_recent", "eval_old"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    assert first.counts == second.counts and first.distances == second.distances


def test_seed_changes_the_draw_and_only_its_stream():
    samples = make_samples(600)
    strategy = Strategy(days_recent=30, old_samples=100)
    one, two = select(samples, strategy, NOW, 1), select(samples, strategy, NOW, 2)
    assert set(one.train["sample_id"]) != set(two.train["sample_id"])
    more = select(samples, strategy.with_overrides(old_samples=150), NOW, 1)
    # changing the old-sample count never changes the held-out sets
    pd.testing.assert_frame_equal(one.eval_recent, more.eval_recent)
    pd.testing.assert_frame_equal(one.eval_old, more.eval_old)


def test_mode_filter_gives_k_old_of_that_mode():
    samples = make_samples(2000)
    selection = select(samples, Strategy(days_recent=30, old_samples=300, mode="agent"), NOW, 0)
    old = selection.train[~selection.is_recent(selection.train)]
    assert len(old) == 300 and (old["mode"] == "agent").all()


def test_max_subsamples_recent_when_recent_alone_exceed_it():
    samples = make_samples(2000, days=60)
    selection = select(samples, Strategy(days_recent=30, old_samples=500, max_samples=100), NOW, 0)
    counts = selection.counts
    assert (counts.recent_selected, counts.old_selected, counts.train_samples) == (100, 0, 100)
    assert counts.recent_dropped_by_max == counts.recent_available - 100
    assert counts.old_dropped_by_max == 500


def test_recent_window_uses_timestamp_in_utc():
    samples = make_samples(500)
    selection = select(samples, Strategy(days_recent=10, old_samples=0, eval_recent_min=0,
                                         eval_recent_share=0.0), NOW, 0)
    cutoff = pd.Timestamp(NOW - timedelta(days=10))
    expected = samples[(samples["timestamp"] >= cutoff) & (samples["timestamp"] <= pd.Timestamp(NOW))]
    probe = set(selection.eval_old["memory_id"])
    assert set(selection.train["sample_id"]) == set(expected[~expected["memory_id"].isin(probe)]["sample_id"])


@pytest.mark.parametrize(
    ("weights", "total", "expected"),
    [
        ([5, 3, 2], 5, [3, 1, 1]),  # quotas 2.5, 1.5, 1.0 -> remainders tie, earlier first
        ([1, 1, 1], 2, [1, 1, 0]),
        ([10, 0, 30], 4, [1, 0, 3]),
        ([7, 2, 1], 100, [7, 2, 1]),  # never more than the stratum holds
        ([3, 3], 0, [0, 0]),
    ],
)
def test_largest_remainder(weights, total, expected):
    assert largest_remainder(np.array(weights), total).tolist() == expected


@PROPERTY
@given(weights=st.lists(st.integers(0, 500), min_size=1, max_size=30), total=st.integers(0, 3000))
def test_largest_remainder_is_proportional(weights, total):
    parts = largest_remainder(np.array(weights), total)
    whole = sum(weights)
    assert parts.sum() == min(total, whole)
    for part, weight in zip(parts, weights):
        if whole:
            exact = min(total, whole) * weight / whole
            assert np.floor(exact) <= part <= np.ceil(exact)


def test_stratified_follows_month_and_mode_proportions():
    samples = make_samples(5000, days=400, seed=3)
    strategy = Strategy(days_recent=30, old_samples=700, old_sampling="stratified", old_probe_size=0)
    selection = select(samples, strategy, NOW, 5)
    old_pool = samples[samples["timestamp"] < pd.Timestamp(selection.cutoff)]
    key = lambda frame: frame["timestamp"].dt.strftime("%Y-%m") + "/" + frame["mode"]
    pool_counts = key(old_pool).value_counts().sort_index()
    chosen = selection.train[~selection.is_recent(selection.train)]
    chosen_counts = key(chosen).value_counts().reindex(pool_counts.index, fill_value=0)
    expected = largest_remainder(pool_counts.to_numpy(), 700)
    assert chosen_counts.tolist() == expected.tolist()
    assert selection.distances["stratified"]["month_mode"] < selection.distances["uniform"]["month_mode"]


def test_total_variation():
    left, right = np.array([0.5, 0.5, 0.0]), np.array([1.0, 0.0, 0.0])
    assert total_variation(left, right) == 0.5
    assert total_variation(left, left) == 0.0
    assert total_variation(np.array([0.0, 0.0, 1.0]), right) == 1.0
    assert total_variation(None, left) is None


def test_bad_inputs():
    samples = make_samples(5)
    with pytest.raises(ConfigError, match="now must be a timezone-aware datetime"):
        select(samples, Strategy(), NOW.replace(tzinfo=None), 0)
    with pytest.raises(WorkbenchError, match=r"2 duplicate sample_id values \(first: 'evt-0000000'\)"):
        select(pd.concat([samples, samples.iloc[:2]]), Strategy(), NOW, 0)
    with pytest.raises(ConfigError, match="now must be an ISO 8601 time"):
        parse_now("yesterday")
    assert parse_now("2025-12-01T00:00:00") == NOW


def test_write_and_reproduce(tmp_path):
    samples = make_samples(800, max_per_memory=2, future=5)
    selection = select(samples, Strategy(name="monthly", days_recent=30, old_samples=200,
                                         old_sampling="stratified"), NOW, 11)
    run_dir = tmp_path / "run"
    manifest = write_selection(run_dir, selection)
    section = manifest["selection"]
    assert section["seed"] == 11 and section["now"] == "2025-12-01T00:00:00Z"
    assert section["parameters"]["old_samples"] == 200 and section["strategy"] == "monthly"
    assert section["counts"] == selection.counts.to_dict()
    assert section["ids"]["train"] == selection.train["sample_id"].tolist()
    assert section["quality"]["train"]["total"] == len(selection.train)
    assert section["quality"]["eval_old"]["total"] == len(selection.eval_old)
    assert section["quality"]["train"]["short_pct"] + section["quality"]["train"]["medium_pct"] + \
        section["quality"]["train"]["long_pct"] == pytest.approx(100.0, abs=0.2)
    assert section["library_version"]
    assert set(manifest["files"]) == {"dataset.jsonl", "eval_recent.jsonl", "eval_old.jsonl"}
    back = read_samples_jsonl(run_dir / "dataset.jsonl")
    assert back["sample_id"].tolist() == selection.train["sample_id"].tolist()
    # re-running from the manifest on shuffled rows plus newer memories gives identical files
    grown = pd.concat([make_samples(50, future=30, seed=9).iloc[50:].assign(
        sample_id=lambda f: "new-" + f["sample_id"], memory_id=lambda f: "new-" + f["memory_id"]),
        samples.sample(frac=1.0, random_state=2)])
    report = reproduce_selection(run_dir, grown, tmp_path / "again")
    assert report.identical and report.mismatched == []
    changed = samples.drop(index=samples.index[samples["timestamp"] < pd.Timestamp("2025-06-01", tz="UTC")][:3])
    report = reproduce_selection(run_dir, changed, tmp_path / "changed")
    assert not report.identical and "dataset.jsonl" in report.mismatched


def test_old_probe_is_fixed_at_foundation_and_reused(tmp_path):
    profile = Profile(tmp_path, "tester")
    samples = make_samples(1500, days=300)
    foundation = Strategy(days_recent=None, old_samples=0, old_probe_size=60)
    first = run_selection(profile, samples, foundation, NOW - timedelta(days=40), 0, tmp_path / "r1")
    assert first.old_probe_created and len(first.eval_old) == 60
    assert load_old_probe_ids(profile) == first.old_probe_memory_ids
    monthly = Strategy(days_recent=30, old_samples=300, old_probe_size=10)
    second = run_selection(profile, samples, monthly, NOW, 4, tmp_path / "r2")
    assert not second.old_probe_created
    pd.testing.assert_frame_equal(first.eval_old, second.eval_old)
    assert not set(second.train["memory_id"]) & set(first.eval_old["memory_id"])
    assert (tmp_path / "r1" / "eval_old.jsonl").read_bytes() == (tmp_path / "r2" / "eval_old.jsonl").read_bytes()
    assert read_manifest(tmp_path / "r2")["selection"]["old_probe"]["created"] is False
    # months spread: the probe covers every month of the foundation's history
    months = lambda frame: set(frame["timestamp"].dt.strftime("%Y-%m"))
    assert months(first.eval_old) == months(samples[samples["timestamp"] <= pd.Timestamp(NOW - timedelta(days=40))])


def test_exploring_does_not_fix_the_probe(tmp_path):
    profile = Profile(tmp_path, "tester")
    run_selection(profile, make_samples(100), Strategy(), NOW, 0)
    assert load_old_probe_ids(profile) is None


@PROPERTY
@given(samples=samples_tables(), strategy=strategies_, seed=st.integers(0, 1000), data=st.data())
def test_given_probe_is_never_trained_on(samples, strategy, seed, data):
    memories = sorted(set(samples["memory_id"]))
    probe = data.draw(st.lists(st.sampled_from(memories), unique=True) if memories else st.just([]))
    selection = select(samples, strategy, NOW, seed, old_probe_ids=probe + ["gone-memory"])
    eligible = samples[samples["timestamp"] <= pd.Timestamp(NOW)]
    assert sorted(selection.eval_old["sample_id"]) == sorted(
        eligible[eligible["memory_id"].isin(probe)]["sample_id"])
    assert not set(selection.train["memory_id"]) & set(probe)
    assert not set(selection.eval_recent["memory_id"]) & set(probe)
    assert selection.old_probe_memory_ids == tuple(sorted([*probe, "gone-memory"]))
    assert not selection.old_probe_created


def test_a_run_folder_keeps_its_selection(tmp_path):
    samples = make_samples(300)
    strategy = Strategy(days_recent=30, old_samples=50)
    first = write_selection(tmp_path, select(samples, strategy, NOW, 1))
    again = write_selection(tmp_path, select(samples.iloc[::-1], strategy, NOW, 1))  # a resumed step
    assert again["files"] == first["files"]
    with pytest.raises(PipelineStepError, match=r"already holds a different selection \(dataset.jsonl differs\)"):
        write_selection(tmp_path, select(samples, strategy, NOW, 2))


def test_greedy_fill_skips_a_memory_that_overflows_and_takes_later_ones_that_fit() -> None:
    """Fixed inputs: memory 1 (5 samples) would overflow the 6-sample budget after memory 0 (3);
    it is skipped, and the later memories 2 (2 samples) and 3 (1 sample) that fit are taken."""
    import numpy as np

    from metahuman_lib.selection import _greedy_fill

    order = np.array([0, 1, 2, 3])
    size = np.array([3, 5, 2, 1])
    assert _greedy_fill(order, size, 6).tolist() == [0, 2, 3]
    assert _greedy_fill(order, size, 8).tolist() == [0, 1]
    assert _greedy_fill(np.array([1, 3, 2]), size, 4).tolist() == [3, 2]
    assert _greedy_fill(order, size, 0).tolist() == []
