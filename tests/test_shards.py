"""Forked shards: results in order and equal to a serial run; a failing, dying or hanging worker
costs time, never a result; no worker is left behind."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator

import pytest

from metahuman_lib import _shards
from metahuman_lib._shards import map_pulled, map_shards, shard_bounds, worker_count


def _pid_and_squares(start: int, stop: int) -> tuple[int, list[int]]:
    return os.getpid(), [n * n for n in range(start, stop)]


@pytest.fixture
def three_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_shards.WORKERS_ENV, "3")


@pytest.mark.parametrize(("total", "shards", "weight"), [
    (0, 2, 1.0), (1, 2, 1.0), (7, 3, 1.0), (10, 2, 1.0), (100_007, 2, 1.1), (5, 5, 3.0), (3, 8, 1.0),
])
def test_shard_bounds_cover_the_range_in_order(total: int, shards: int, weight: float) -> None:
    bounds = shard_bounds(total, shards, weight)
    assert bounds[0][0] == 0 and bounds[-1][1] == total
    assert all(stop == start for (_, stop), (start, _) in itertools.pairwise(bounds))
    assert len(bounds) == max(1, min(shards, total))
    if len(bounds) > 1:
        assert all(stop > start for start, stop in bounds)
        rest = [stop - start for start, stop in bounds[1:]]
        assert max(rest) - min(rest) <= 1


def test_the_first_shard_is_larger_by_its_weight() -> None:
    (first, cut), (_, total) = shard_bounds(210, 2, first_weight=1.1)
    assert (first, total) == (0, 210) and cut == 110


def test_workers_compute_shards_in_order(three_workers: None) -> None:
    results = map_shards(_pid_and_squares, 90, min_shard=10)
    assert len(results) == 3
    assert [value for _, part in results for value in part] == [n * n for n in range(90)]
    assert results[0][0] == os.getpid()
    assert {pid for pid, _ in results[1:]}.isdisjoint({os.getpid()})


def test_one_worker_or_small_inputs_stay_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_shards.WORKERS_ENV, "1")
    assert worker_count() == 1
    assert [pid for pid, _ in map_shards(_pid_and_squares, 90, min_shard=10)] == [os.getpid()]
    monkeypatch.setenv(_shards.WORKERS_ENV, "4")
    assert [pid for pid, _ in map_shards(_pid_and_squares, 15, min_shard=10)] == [os.getpid()]
    assert map_shards(_pid_and_squares, 0) == [(os.getpid(), [])]


def test_a_bad_worker_setting_is_ignored(monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(_shards.WORKERS_ENV, "many")
    with caplog.at_level(logging.WARNING, logger="metahuman_lib._shards"):
        assert worker_count() >= 1
    assert "METAHUMAN_WORKERS" in caplog.text


@pytest.mark.parametrize("failure", ["raise", "exit", "unpicklable"])
def test_a_failed_worker_is_computed_again_here(three_workers: None, failure: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    parent = os.getpid()

    def flaky(start: int, stop: int) -> list[object]:
        if os.getpid() != parent and start >= 60:
            if failure == "raise":
                raise RuntimeError("worker trouble")
            if failure == "exit":
                os._exit(3)
            return [lambda: None]  # a result that cannot be pickled
        return list(range(start, stop))

    with caplog.at_level(logging.WARNING, logger="metahuman_lib._shards"):
        results = map_shards(flaky, 90, min_shard=10)
    assert [value for part in results for value in part] == list(range(90))
    assert "computing them in the main process" in caplog.text


def test_an_error_in_the_work_itself_surfaces(three_workers: None) -> None:
    def broken(start: int, stop: int) -> list[int]:
        raise ValueError(f"bad item {start}")

    with pytest.raises(ValueError, match="bad item 0"):
        map_shards(broken, 90, min_shard=10)


def test_a_hanging_worker_is_stopped_and_computed_here(three_workers: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shards, "GRACE_S", 0.5)
    parent = os.getpid()

    def slow_in_worker(start: int, stop: int) -> list[int]:
        if os.getpid() != parent:
            time.sleep(60)
        return list(range(start, stop))

    started = time.monotonic()
    results = map_shards(slow_in_worker, 90, min_shard=10)
    assert [value for part in results for value in part] == list(range(90))
    assert time.monotonic() - started < 20


def test_no_worker_is_left_behind(three_workers: None) -> None:
    workers = [pid for pid, _ in map_shards(_pid_and_squares, 90, min_shard=10)[1:]]
    assert len(workers) == 2
    for pid in workers:  # exited and reaped: no such process any more (not even a zombie)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_workers_fork_from_a_process_with_other_threads(three_workers: None) -> None:
    """As in a Jupyter kernel: another thread is busy (and holds a lock now and then)."""
    lock, stop = threading.Lock(), threading.Event()

    def busy() -> None:
        while not stop.is_set():
            with lock:
                time.sleep(0.0005)

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    try:
        results = map_shards(_pid_and_squares, 90, min_shard=10)
    finally:
        stop.set()
        thread.join()
    assert [value for _, part in results for value in part] == [n * n for n in range(90)]
    assert len({pid for pid, _ in results}) == 3


def _pid_and_tasks(pulled: Iterator[int]) -> tuple[int, list[int]]:
    return os.getpid(), [task * 10 for task in pulled]


def _all_values(results: list[tuple[list[int], tuple[int, list[int]]]]) -> list[int]:
    return sorted(value for _, (_, values) in results for value in values)


def test_pulled_tasks_are_each_done_once_by_some_process(three_workers: None) -> None:
    results = map_pulled(_pid_and_tasks, 200)
    assert _all_values(results) == [task * 10 for task in range(200)]
    assert sorted(task for done, _ in results for task in done) == list(range(200))
    assert all([task * 10 for task in done] == values for done, (_, values) in results)
    assert results[0][1][0] == os.getpid() and len(results) == 3


def test_the_helpers_are_forked_only_once_the_work_is_worth_it(three_workers: None) -> None:
    assert [pid for _, (pid, _) in map_pulled(_pid_and_tasks, 50, worth_forking=lambda: False)] \
        == [os.getpid()]
    asked = []

    def after_ten() -> bool:
        asked.append(1)
        return len(asked) > 10

    results = map_pulled(_pid_and_tasks, 50, worth_forking=after_ten)
    assert results[0][0][:10] == list(range(10))  # this process alone until the 11th task
    assert _all_values(results) == [task * 10 for task in range(50)]


def test_one_worker_pulls_everything_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_shards.WORKERS_ENV, "1")
    assert map_pulled(_pid_and_tasks, 5) == [([0, 1, 2, 3, 4], (os.getpid(), [0, 10, 20, 30, 40]))]
    assert map_pulled(_pid_and_tasks, 0) == [([], (os.getpid(), []))]


def test_the_tasks_of_a_dead_worker_are_done_here(three_workers: None,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    parent = os.getpid()

    def dies_in_workers(pulled: Iterator[int]) -> list[int]:
        done = []
        for task in pulled:
            if os.getpid() != parent:
                os._exit(3)  # after pulling a task, which is then lost with it
            time.sleep(0.001)
            done.append(task)
        return done

    with caplog.at_level(logging.WARNING, logger="metahuman_lib._shards"):
        results = map_pulled(dies_in_workers, 60)
    assert sorted(task for _, values in results for task in values) == list(range(60))
    assert "failed" in caplog.text
