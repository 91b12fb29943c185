"""Benchmark: load and curate a 100k-memory profile with a warm page cache.

Uses the same cached profile as ``benchmarks/load_profile.py`` (``benchmarks/.cache/``, the demo
generator, seed 0; built once, about a minute). It reads every file once to warm the page cache,
then:

* runs the whole ``metahuman curate`` command as a subprocess several times: wall time (best and
  median) and peak memory (max RSS). This is the figure the targets are about;
* times the stages in-process: load + curate in one pass (``load_and_curate``, on all cores and
  with ``METAHUMAN_WORKERS=1``), then the metrics and the JSONL writing.

Run: ``python benchmarks/curate_profile.py [--memories 100000] [--repeat 5]``.
Target (issue 3): the whole command under 5 s, and faster than the TypeScript curator it
replaces, which takes 4.4 s for 100k memories here while doing less (pairs only, no
deduplication, no scrubbing).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _profile_cache import cached_profile, warm_page_cache

from metahuman_lib._shards import WORKERS_ENV, worker_count
from metahuman_lib.curation import CurationOptions, load_and_curate
from metahuman_lib.profile import Profile
from metahuman_lib.quality import quality_metrics
from metahuman_lib.samples import write_samples_jsonl

TARGET_S = 5.0
TYPESCRIPT_S = 4.4


def _command(profile: Profile, output: Path) -> float:
    """Wall time of one whole ``metahuman curate`` command (interpreter start included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "metahuman_lib", "curate", "--username", "bench",
                    "--root", str(profile.root), "--output", str(output)],
                   check=True, capture_output=True, env=dict(os.environ))
    return time.perf_counter() - started


def _timed(func, *args):
    started = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - started


def _in_process(profile: Profile, output: Path, repeat: int, workers: str | None) -> dict[str, list[float]]:
    """Best-of timings of the stages, with ``METAHUMAN_WORKERS`` set to ``workers`` (None: all cores)."""
    saved = os.environ.pop(WORKERS_ENV, None)
    if workers is not None:
        os.environ[WORKERS_ENV] = workers
    stages: dict[str, list[float]] = {"load + curate": [], "metrics": [], "write": []}
    try:
        for _ in range(repeat):
            gc.collect()
            (_, _, result), seconds = _timed(load_and_curate, profile, CurationOptions(username="bench"))
            stages["load + curate"].append(seconds)
            stages["metrics"].append(_timed(quality_metrics, result.samples, result.stats)[1])
            stages["write"].append(_timed(write_samples_jsonl, result.samples, output)[1])
            del result
    finally:
        os.environ.pop(WORKERS_ENV, None)
        if saved is not None:
            os.environ[WORKERS_ENV] = saved
    return stages


def _python_speed() -> float:
    """CPU seconds of a 10-million-step Python loop (about 0.4 s on an idle modern core), to
    judge how much the other processes on a shared machine slow everything down."""
    started, total = time.process_time(), 0
    for step in range(10_000_000):
        total += step
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    profile = cached_profile(args.memories)
    warm_page_cache(profile)
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "samples.jsonl"
        walls = [_command(profile, output) for _ in tqdm(range(args.repeat), desc="whole command",
                                                          leave=False)]
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        parallel = _in_process(profile, output, max(1, args.repeat - 2), None)
        serial = _in_process(profile, output, 1, "1")
        lines = sum(1 for _ in output.open("rb"))
    print(f"profile: {args.memories:,} memories -> {lines:,} samples written")
    print(f"whole command `metahuman curate` ({args.repeat} runs, interpreter start included): "
          f"best {min(walls):.2f} s, median {statistics.median(walls):.2f} s; "
          f"peak memory (max RSS) {rss:.0f} MiB")
    print(f"in-process, {worker_count()} worker processes (best of {len(parallel['write'])}):")
    for name, seconds in parallel.items():
        print(f"  {name:<14} {min(seconds):.2f} s")
    print(f"  load + curate with {WORKERS_ENV}=1: {min(serial['load + curate']):.2f} s")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other processes); "
          f"10M-step Python loop: {_python_speed():.2f} s CPU (about 0.4 s on an idle core)")
    median = statistics.median(walls)
    print(f"target: whole command under {TARGET_S:.0f} s -> {'met' if median < TARGET_S else 'NOT met'}; "
          f"TypeScript curator {TYPESCRIPT_S} s -> "
          f"{'faster' if median < TYPESCRIPT_S else 'NOT faster'} (median {median:.2f} s)")


if __name__ == "__main__":
    main()
