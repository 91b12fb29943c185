"""Benchmark: load and curate a 100k-memory profile with a warm page cache.

Uses the same cached profile as ``benchmarks/load_profile.py`` (``benchmarks/.cache/``, the demo
generator, seed 0; built once, about a minute). It reads every file once to warm the page cache,
then times the stages in-process (load, curate, metrics, write JSONL) a few times, and finally
runs the whole ``metahuman curate`` command as a subprocess for its wall time and peak memory
(max RSS).

Run: ``python benchmarks/curate_profile.py [--memories 100000] [--repeat 3]``.
Target (issue 3): load + curate 100k memories in under 5 s; the TypeScript curator it replaces
takes 4.4 s for 100k here while doing less (pairs only, no deduplication, no scrubbing).
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

tqdm.monitor_interval = 0  # no monitor thread: time the stages in a process like the command's

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _profile_cache import cached_profile, warm_page_cache

from metahuman_lib.curation import CurationOptions, build_samples
from metahuman_lib.memory import load_memories
from metahuman_lib.profile import Profile
from metahuman_lib.quality import quality_metrics
from metahuman_lib.samples import write_samples_jsonl

TARGET_S = 5.0
TYPESCRIPT_S = 4.4


def _timed(stages: dict[str, list[float]], name: str, func, *args):
    started, cpu = time.perf_counter(), time.process_time()
    result = func(*args)
    stages.setdefault(name, []).append(time.perf_counter() - started)
    stages.setdefault(f"{name}_cpu", []).append(time.process_time() - cpu)
    return result


def _one_pass(profile: Profile, output: Path, stages: dict[str, list[float]]) -> dict[str, int]:
    cpu = time.process_time()
    memories, _report = _timed(stages, "load", load_memories, profile)
    result = _timed(stages, "curate", build_samples, memories, CurationOptions(username="bench"))
    _timed(stages, "metrics", quality_metrics, result.samples, result.stats)
    _timed(stages, "write", write_samples_jsonl, result.samples, output)
    stages.setdefault("cpu", []).append(time.process_time() - cpu)
    return result.stats


def _command(profile: Profile, output: Path) -> tuple[float, float]:
    """Wall time and max RSS (MiB) of the whole ``metahuman curate`` command."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "metahuman_lib", "curate", "--username", "bench",
                    "--root", str(profile.root), "--output", str(output)],
                   check=True, capture_output=True, env=dict(os.environ))
    wall = time.perf_counter() - started
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


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
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    profile = cached_profile(args.memories)
    warm_page_cache(profile)
    stages: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "samples.jsonl"
        for _ in tqdm(range(args.repeat), desc="timed passes", leave=False):
            gc.collect()
            stats = _one_pass(profile, output, stages)
        wall, rss = _command(profile, output)
    totals = [sum(parts) for parts in zip(*(stages[s] for s in ("load", "curate", "metrics", "write")),
                                          strict=True)]
    load_curate = [a + b for a, b in zip(stages["load"], stages["curate"], strict=True)]
    print(f"profile: {stats['memories']:,} memories -> {stats['kept']:,} samples "
          f"({stats['duplicates_exact']:,} exact and {stats['duplicates_near']:,} near duplicates, "
          f"{stats['scrubbed_total']:,} items scrubbed)")
    for name in ("load", "curate", "metrics", "write"):
        print(f"  {name:<8} best {min(stages[name]):.2f} s, median {statistics.median(stages[name]):.2f} s "
              f"(CPU time best {min(stages[name + '_cpu']):.2f} s)")
    print(f"load + curate (warm cache, {args.repeat} runs): best {min(load_curate):.2f} s, "
          f"median {statistics.median(load_curate):.2f} s; all four stages best {min(totals):.2f} s "
          f"(CPU time best {min(stages['cpu']):.2f} s)")
    print(f"whole command `metahuman curate` (subprocess, incl. interpreter start): {wall:.2f} s, "
          f"peak memory (max RSS) {rss:.0f} MiB")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other processes); "
          f"10M-step Python loop: {_python_speed():.2f} s CPU (about 0.4 s on an idle core)")
    verdict = "met" if min(load_curate) < TARGET_S else "NOT met"
    print(f"target: load + curate under {TARGET_S:.0f} s -> {verdict}; TypeScript curator: {TYPESCRIPT_S} s")


if __name__ == "__main__":
    main()
