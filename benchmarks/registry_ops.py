"""Benchmark: registry operations on a long lineage.

Imports a synthetic MetaHuman OS registry of ``--versions`` entries (default 300: 25 years of
monthly runs) into a temporary root, then times register, promote, rollback, history and a load,
each with its lock, backup and atomic write, and prints the registry's size.

Run: ``python benchmarks/registry_ops.py [--versions 300] [--repeat 5]``.
Target (issue 7): every operation under 0.5 s on a 2-core machine with 300 versions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _helpers_registry import make_run, write_json

from metahuman_lib import registry
from metahuman_lib.profile import Profile

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _history(versions: int) -> dict:
    entries = []
    for v in range(1, versions + 1):
        label = f"{(datetime(2001, 1, 1, tzinfo=UTC) + timedelta(days=30 * v)):%Y-%m-%d-%H%M%S}-{v:06x}"
        entries.append({"version": v, "run_id": f"{v:016x}", "run_label": label,
                        "timestamp": "2001-01-01T00:00:00.000Z", "base_model_used": "Qwen/Qwen3-14B",
                        "output_model_path": f"profiles/bench/out/fine-tuned-models/x/{label}/model",
                        "samples_trained": 4000, "mode_filter": None, "training_success": True})
    return {"original_base_model": "Qwen/Qwen3-14B", "current_base_model": entries[-1]["output_model_path"],
            "model_type": "local", "training_history": entries,
            "versioning": {"enabled": True, "auto_update_base": True, "keep_all_versions": True}}


def _time(label: str, action: Callable[[], object], repeat: int) -> None:
    times = []
    for _ in tqdm(range(repeat), desc=label, leave=False):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    print(f"{label:<28} best {min(times) * 1000:7.1f} ms   median {statistics.median(times) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        profile = Profile(Path(tmp), "bench")
        write_json(profile.registry_path, _history(args.versions))
        registry.import_metahuman_os(profile, now=NOW)
        runs = iter([make_run(profile, 10_000 + i, parent_version=args.versions,
                              evaluation={"passed": True, "reasons": []}) for i in range(args.repeat)])
        registered: list[int] = []
        _time("register (verify + write)", lambda: registered.append(
            registry.register(profile, next(runs), now=NOW)["version"]), args.repeat)
        to_promote = iter(registered)
        _time("promote", lambda: registry.promote(profile, next(to_promote), now=NOW), args.repeat)
        targets = iter(registered * 2)
        _time("rollback", lambda: registry.rollback(profile, next(targets), now=NOW), args.repeat)
        _time("history (DataFrame)", lambda: registry.history(profile), args.repeat)
        _time("load", lambda: registry.load_registry(profile.registry_path), args.repeat)
        size = profile.registry_path.stat().st_size
        print(f"{args.versions + args.repeat} versions: registry {size / 1024:.0f} KiB, "
              f"{len(registry.list_backups(profile.registry_path))} backups")


if __name__ == "__main__":
    main()
