"""The cached benchmark profile shared by load_profile.py and curate_profile.py."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from metahuman_lib.demo import GENERATOR_VERSION, MARKER_NAME, write_demo_profile
from metahuman_lib.profile import Profile

CACHE = Path(__file__).resolve().parent / ".cache"


def cached_profile(memories: int) -> Profile:
    """The demo-generated benchmark profile (seed 0), written once under ``benchmarks/.cache/``."""
    root = CACHE / f"load-{memories}"
    profile = Profile(root, "bench")
    marker = profile.profile_dir / MARKER_NAME
    if not marker.is_file() or orjson.loads(marker.read_bytes()).get("version") != GENERATOR_VERSION:
        print(f"building a {memories}-memory profile under {root} (once) ...", flush=True)
        started = time.perf_counter()
        months = max(6, memories // 2500)
        write_demo_profile(root, "bench", memories=memories, months=months, seed=0, overwrite=True)
        print(f"built in {time.perf_counter() - started:.1f} s", flush=True)
    return profile


def warm_page_cache(profile: Profile) -> int:
    """Read every memory file once so timed runs hit the page cache; return the byte count."""
    total = 0
    for folder, _dirs, files in os.walk(profile.episodic_dir):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                total += len(handle.read())
    return total
