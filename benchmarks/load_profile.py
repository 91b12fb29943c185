"""Benchmark: load a 100k-memory profile with a warm page cache.

Builds the profile once under ``benchmarks/.cache/`` (the demo generator, seed 0), reads every
file once to warm the page cache, then times ``load_memories`` a few times and prints the best
and median wall time, memories per second and the peak Python memory of one load.

Run: ``python benchmarks/load_profile.py [--memories 100000] [--repeat 3]``.
Target (issue 2): 100k memories in under 3 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import orjson
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _profile_cache import cached_profile, warm_page_cache

from metahuman_lib._shards import worker_count
from metahuman_lib.memory import load_memories
from metahuman_lib.profile import Profile


def _floor(profile: Profile) -> tuple[float, float]:
    """Wall and CPU seconds to just walk, read and ``orjson.loads`` every file: the floor any
    loader pays, measured under the same machine load as the real one."""
    started, cpu_started = time.perf_counter(), time.process_time()
    for folder, _dirs, files in os.walk(profile.episodic_dir):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                data = handle.read()
            try:
                orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
    return time.perf_counter() - started, time.process_time() - cpu_started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    profile = cached_profile(args.memories)
    size = warm_page_cache(profile)
    times, cpu_times = [], []
    for _ in tqdm(range(args.repeat), desc="timed loads", leave=False):
        gc.collect()
        started, cpu_started = time.perf_counter(), time.process_time()
        frame, report = load_memories(profile)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
        del frame
    floors = [_floor(profile) for _ in range(2)]
    floor_wall, floor_cpu = min(f[0] for f in floors), min(f[1] for f in floors)
    gc.collect()
    tracemalloc.start()
    frame, report = load_memories(profile)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    best, median = min(times), statistics.median(times)
    print(f"profile: {report.files_seen} files, {size / 1e6:.1f} MB, {len(frame)} memories loaded, "
          f"{len(report.skipped)} skipped")
    print(f"load (warm cache, {args.repeat} runs, {worker_count()} worker processes): best {best:.2f} s, "
          f"median {median:.2f} s, {len(frame) / best:,.0f} memories/s; CPU time of the main "
          f"process best {min(cpu_times):.2f} s; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} (other processes)")
    print(f"floor in one process (walk + read + orjson.loads only): wall {floor_wall:.2f} s, "
          f"CPU {floor_cpu:.2f} s; load_memories takes {best / floor_wall:.2f}x its wall time")
    print(f"peak Python memory of one load (tracemalloc): {peak / 2**20:.0f} MiB; "
          f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"target: under 3 s for 100k -> {'met' if best < 3.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
