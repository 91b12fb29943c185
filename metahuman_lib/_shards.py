"""Run one function on every core, with forked workers: over contiguous shards of a range
(:func:`map_shards`), or over tasks that the processes pull from one queue (:func:`map_pulled`).

Why: loading and curating a profile is per-memory Python work, and the GIL keeps it on one
core. Forked workers see the parent's data without copying it in (copy-on-write), so only
their results travel back, pickled; the parent does a share of the work itself.

Safety: a worker runs only our pure computation, pickles and writes; it never logs or prints,
and leaves with ``os._exit``. Forking a process that has other threads (a Jupyter kernel's) is
safe for such a worker unless a lock it needs was held at the fork; so the parent never waits
for a worker forever: a worker that fails in any way (an exception, a crash, being killed, or
no result well after the parent finished the same amount of work) is stopped and its work is
done again in the parent, where an exception then surfaces normally. Results are the same
whichever way the shards ran. Forking is used on Linux only, for inputs worth it, and never
with ``METAHUMAN_WORKERS=1``.
"""

from __future__ import annotations

import logging
import mmap
import os
import pickle
import select
import signal
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any, BinaryIO, Generic, TypeVar

R = TypeVar("R")

WORKERS_ENV = "METAHUMAN_WORKERS"
MIN_SHARD = 5000
"""Below this many items per shard, a fork and a pickled result cost more than they save."""
PATIENCE = 10.0
"""A worker gets this many times the parent's own time for a shard (plus :data:`GRACE_S`)."""
GRACE_S = 10.0
WORKER_OVERHEAD = 0.1
"""A worker also pickles its result and the parent unpickles it, at about this fraction of
the shard's work; so the parent's own shard is that much larger and all finish together."""

_log = logging.getLogger(__name__)


def worker_count() -> int:
    """The cores this process may use, or ``$METAHUMAN_WORKERS`` when set (1 turns forking off)."""
    configured = os.environ.get(WORKERS_ENV, "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            _log.warning("ignoring %s=%r: not a whole number", WORKERS_ENV, configured)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def shard_bounds(total: int, shards: int, first_weight: float = 1.0) -> list[tuple[int, int]]:
    """``shards`` contiguous ``(start, stop)`` ranges covering ``range(total)``; the first is
    ``first_weight`` times as large as each of the others (which differ by at most one)."""
    shards = max(1, min(shards, total))
    if shards == 1:
        return [(0, total)]
    first = round(total * first_weight / (first_weight + shards - 1))
    first = min(total - (shards - 1), max(1, first))
    rest = total - first
    edges = [0] + [first + rest * index // (shards - 1) for index in range(shards)]
    return list(pairwise(edges))


def map_shards(func: Callable[[int, int], R], total: int, *, min_shard: int | None = None) -> list[R]:
    """``[func(start, stop) for each shard of range(total)]``, the shards run on all cores.

    Args:
        func: computes one shard's result from its ``(start, stop)``; it reads its inputs from
            data that exists before the call (the workers inherit it), and its result must pickle.
        total: the number of items to split.
        min_shard: the fewest items worth a worker of their own (default :data:`MIN_SHARD`).

    Returns:
        The shards' results in range order.
    """
    shards = 1
    if sys.platform == "linux" and hasattr(os, "fork"):
        shards = min(worker_count(), total // max(1, min_shard or MIN_SHARD))
    bounds = shard_bounds(total, max(1, shards), first_weight=1.0 + WORKER_OVERHEAD)
    workers = [_Worker(func, start, stop) for start, stop in bounds[1:]]
    try:
        started = time.monotonic()
        results = [func(*bounds[0])]
        deadline = time.monotonic() + PATIENCE * (time.monotonic() - started) + GRACE_S
        results += [worker.result(deadline) for worker in workers]
    finally:
        for worker in workers:
            worker.stop()
    return results


def map_pulled(func: Callable[[Iterator[int]], R], total: int, *,
               worth_forking: Callable[[], bool] = lambda: True) -> list[tuple[list[int], R]]:
    """Run ``func`` over tasks ``0 .. total-1`` that this process and its workers pull from one queue.

    Why a queue: when the size of each task is unknown until it runs (a folder not yet listed),
    contiguous shards can leave one core idle while the other still works; pulling one task at
    a time keeps both busy to the end. This process starts alone and forks the workers between
    two of its tasks, as soon as ``worth_forking()`` says the work is large enough (a small
    profile never pays for a fork).

    Args:
        func: does the tasks its iterator yields (pulled as it asks for them) and returns one
            result for all of them; its result must pickle.
        total: the number of tasks.
        worth_forking: asked in this process before each task it pulls, until it says yes.

    Returns:
        One ``(tasks done, result)`` per process that ran. A worker that fails is treated as in
        :func:`map_shards`: the tasks it had not reported are done again here.
    """
    workers = min(worker_count(), total) if sys.platform == "linux" and hasattr(os, "fork") else 1
    if workers <= 1 or total * _TASK_BYTES > _pipe_room():
        return [(list(range(total)), func(iter(range(total))))]
    read_end, write_end = os.pipe()
    try:
        _enlarge_pipe(write_end, total * _TASK_BYTES)
        os.write(write_end, b"".join(task.to_bytes(_TASK_BYTES, "little") for task in range(total)))
    finally:
        os.close(write_end)  # readers see the end of the queue once it is empty
    forked: list[_Worker[tuple[list[int], R]]] = []

    def run(_start: int, _stop: int, *, may_fork: bool = False) -> tuple[list[int], R]:
        done: list[int] = []

        def pulled() -> Iterator[int]:
            while chunk := os.read(read_end, _TASK_BYTES):  # one task per read; reads never interleave
                if may_fork and not forked and worth_forking():
                    forked.extend(_Worker(run, 0, 0, "the tasks it pulled") for _ in range(workers - 1))
                done.append(int.from_bytes(chunk, "little"))
                yield done[-1]

        return done, func(pulled())

    try:
        started = time.monotonic()
        results = [run(0, 0, may_fork=True)]
        deadline = time.monotonic() + PATIENCE * (time.monotonic() - started) + GRACE_S
        results += [worker.result(deadline) for worker in forked]
    finally:
        for worker in forked:
            worker.stop()
        os.close(read_end)
    covered = {task for done, _ in results for task in done}
    missing = [task for task in range(total) if task not in covered]
    if missing:
        results.append((missing, func(iter(missing))))
    return results


_TASK_BYTES = 4


def _pipe_room() -> int:
    """The most bytes a pipe can be made to hold (Linux's ``pipe-max-size``, else 64 KiB)."""
    try:
        with open("/proc/sys/fs/pipe-max-size", encoding="ascii") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 1 << 16


def _enlarge_pipe(fd: int, size: int) -> None:
    if size > 1 << 16:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


class _Worker(Generic[R]):
    """A forked process that computes one shard and pickles its result into an unlinked
    temporary file (written at memory speed while the parent still works; a pipe would make
    the worker wait for the parent to read). The worker's end of a pipe closes when it exits,
    which tells the parent it is done."""

    def __init__(self, func: Callable[[int, int], R], start: int, stop: int, work: str = "") -> None:
        self.func, self.start, self.stop_at = func, start, stop
        self.work = work or f"items {start}-{stop}"
        self.result_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():  # Python >= 3.12 warns about forking with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the worker: it never returns into the parent's code
            os.close(read_end)
            os._exit(_run_in_worker(func, start, stop, self.result_file.fileno()))
        os.close(write_end)
        self.pid: int | None = pid
        self.read_end: int | None = read_end

    def result(self, deadline: float) -> R:
        """The worker's result; when it failed or missed ``deadline``, the shard computed here."""
        outcome, value = "failed", "no result in time"
        if self._finished_by(deadline):
            status = self._wait()
            outcome, value = "failed", f"exit status {status}"
            if status == 0:
                try:
                    outcome, value = _read_result(self.result_file)
                except Exception:  # noqa: BLE001 - a truncated result counts as a failed worker
                    outcome, value = "failed", "unreadable result"
        self.stop()
        if outcome == "ok":
            return value
        _log.warning("worker for %s failed (%s); computing them in the main process", self.work, value)
        return self.func(self.start, self.stop_at)

    def _finished_by(self, deadline: float) -> bool:
        """Wait until the worker exits (its end of the pipe closes), at most until ``deadline``."""
        poller = select.poll()
        poller.register(self.read_end, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                return False
            if not os.read(self.read_end, 1):
                return True

    def _wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return status

    def stop(self) -> None:
        """Close the pipe and the file; kill and reap the worker unless it was already reaped."""
        if self.read_end is not None:
            os.close(self.read_end)
            self.read_end = None
            self.result_file.close()
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                self._wait()
            except (ChildProcessError, ProcessLookupError):
                self.pid = None


def _run_in_worker(func: Callable[[int, int], R], start: int, stop: int, result_fd: int) -> int:
    """The worker's whole life: compute, pickle, write; the exit status (never raises)."""
    try:
        buffers: list[pickle.PickleBuffer] = []
        try:
            payload = pickle.dumps(("ok", func(start, stop)), protocol=5, buffer_callback=buffers.append)
            raws = [buffer.raw() for buffer in buffers]
        except BaseException as exc:  # noqa: BLE001 - reported; the parent computes it again
            payload, raws = pickle.dumps(("failed", f"{type(exc).__name__}: {exc}")), []
        header = struct.pack(f"<QQ{len(raws)}Q", len(payload), len(raws), *(raw.nbytes for raw in raws))
        for part in (header, payload, *raws):
            view, written = memoryview(part).cast("B"), 0
            while written < len(view):
                written += os.write(result_fd, view[written:])
        return 0
    except BaseException:  # noqa: BLE001 - a failed write makes the parent compute it again
        return 1


def _read_result(result_file: BinaryIO) -> Any:
    """A worker's pickled result. Large arrays travel out of band, after the pickle, and are
    mapped rather than read: they become arrays over the file's pages, with no copy."""
    size = os.fstat(result_file.fileno()).st_size
    mapped = memoryview(mmap.mmap(result_file.fileno(), size, access=mmap.ACCESS_COPY))
    length, count = struct.unpack_from("<QQ", mapped, 0)
    sizes = struct.unpack_from(f"<{count}Q", mapped, 16)
    start = 16 + 8 * count + length
    buffers = []
    for nbytes in sizes:
        buffers.append(mapped[start : start + nbytes])
        start += nbytes
    return pickle.loads(mapped[16 + 8 * count : 16 + 8 * count + length], buffers=buffers)
