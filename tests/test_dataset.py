"""``write_curated_dataset``, the path of ``metahuman curate``, writes byte for byte what the
table path writes (``curate_profile``, then the samples table as JSONL and the drops as CSV) and
measures the same, in one process or several, for every option; and it never imports pandas."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from _helpers_curation import write_mixed_profile

from metahuman_lib import _dedup, _shards, dataset, memory
from metahuman_lib.curation import CurationOptions
from metahuman_lib.dataset import write_curated_dataset
from metahuman_lib.profile import Profile
from metahuman_lib.quality import curate_profile
from metahuman_lib.samples import write_samples_jsonl

NOW = datetime(2025, 12, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def unique_profile(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Profile:
    """The mixed profile without a repeated id, plus a dropped memory whose path needs quoting
    in CSV and two memories at the same moment (their ids order them)."""
    profile = write_mixed_profile(tmp_path_factory.mktemp("unique"), demo_root, repeated_id=False)
    folder = profile.episodic_dir / "2025" / "11" / "30"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'evt-202511301200000-a,"quoted".json').write_bytes(orjson.dumps({
        "id": "evt-202511301200000", "timestamp": "2025-11-30T12:00:00.000Z", "type": "summary",
        "content": "A summary, with a comma, that curation drops."}))
    for name in ("b", "a"):
        (folder / f"evt-20251130130000{name}.json").write_bytes(orjson.dumps({
            "id": f"evt-20251130130000{name}", "timestamp": "2025-11-30T13:00:00.000Z",
            "type": "reflection", "content": f"Two thoughts at one moment; this one is {name}, and long enough."}))
    return profile


@pytest.fixture(scope="module")
def repeated_profile(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Profile:
    return write_mixed_profile(tmp_path_factory.mktemp("repeated"), demo_root, repeated_id=True)


def _table_path(profile: Profile, options: CurationOptions, tmp: Path, **review: Any) -> dict[str, Any]:
    """What the table path writes and measures (in one process)."""
    result = curate_profile(profile, options, keep_memories=False, **review)
    output = tmp / "expected.jsonl"
    write_samples_jsonl(result.curation.samples, output)
    dropped = io.BytesIO()
    result.curation.dropped.to_csv(dropped, index=False, encoding="utf-8")
    return {"jsonl": output.read_bytes(), "dropped": dropped.getvalue(), "report": result.load_report,
            "metrics": result.metrics, "gates": result.gates, "new": result.new_samples,
            "samples": len(result.curation.samples)}


def _dataset_path(profile: Profile, options: CurationOptions, tmp: Path, **review: Any) -> dict[str, Any]:
    output, dropped = tmp / "got.jsonl", tmp / "got.csv"
    result = write_curated_dataset(profile, options, output, dropped=dropped, **review)
    return {"jsonl": output.read_bytes(), "dropped": dropped.read_bytes(), "report": result.load_report,
            "metrics": result.metrics, "gates": result.gates, "new": result.new_samples,
            "samples": result.samples}


OPTIONS = [
    CurationOptions(username="Greg"),
    CurationOptions(username="Greg", mode="agent"),
    CurationOptions(username="Greg", dedup=False, scrub=False, strip_filler=False),
    CurationOptions(username="Greg", near_dup_threshold=0.6, min_words=6,
                    include=frozenset({"summary", "rejected_by_person"})),
]
REVIEWS = [{}, {"now": NOW}, {"now": NOW, "kind": "monthly", "recent_days": 45}]


@pytest.mark.parametrize("workers", ["1", "3"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"mode={o.mode},dedup={o.dedup}")
@pytest.mark.parametrize("review", REVIEWS, ids=["all", "now", "monthly"])
def test_the_dataset_path_writes_what_the_table_path_writes(
        unique_profile: Profile, options: CurationOptions, review: dict[str, Any], workers: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setenv(_shards.WORKERS_ENV, "1")
        expected = _table_path(unique_profile, options, tmp_path, **review)
    monkeypatch.setenv(_shards.WORKERS_ENV, workers)
    if workers != "1":  # forked at once, month folders in small batches, pairs and tool calls in shards
        monkeypatch.setattr(memory, "_FORK_FILES", 1)
        monkeypatch.setattr(memory, "_BATCH_FILES", 37)
        monkeypatch.setattr(_dedup, "_MIN_PAIR_SHARD", 3)
        monkeypatch.setattr(_shards, "MIN_SHARD", 2)
    calls = []
    monkeypatch.setattr(dataset, "_write_from_tables", lambda *args: calls.append(args))
    got = _dataset_path(unique_profile, options, tmp_path, **review)
    assert calls == []  # the path without tables
    assert got == expected


def test_the_fixture_has_what_the_test_is_about(unique_profile: Profile, tmp_path: Path) -> None:
    got = _dataset_path(unique_profile, CurationOptions(username="Greg"), tmp_path, now=NOW)
    lines = [orjson.loads(line) for line in got["jsonl"].splitlines()]
    instructions = {line["messages"][1]["content"] for line in lines if line["metadata"]["type"] == "tool_invocation"}
    assert {"Use web_search.", "Book the dentist"} < instructions and len(instructions) >= 4  # parents read again
    assert b'"2025/11/30/evt-202511301200000-a,""quoted"".json"' in got["dropped"]
    tied = [line["metadata"]["memory_id"] for line in lines if line["metadata"]["timestamp"] == "2025-11-30T13:00:00Z"]
    assert tied == ["evt-20251130130000a", "evt-20251130130000b"]
    assert got["metrics"].duplicates_exact and got["metrics"].duplicates_near
    assert got["report"].skipped and not got["report"].repaired


@pytest.mark.parametrize("options", [CurationOptions(username="Greg"), CurationOptions()],
                         ids=["repeated id", "no username"])
def test_what_needs_the_tables_takes_the_table_path(repeated_profile: Profile, options: CurationOptions,
                                                    tmp_path: Path) -> None:
    expected = _table_path(repeated_profile, options, tmp_path, now=NOW)
    got = _dataset_path(repeated_profile, options, tmp_path, now=NOW)
    assert got == expected
    if options.username:
        assert got["report"].counts_repaired() == {"id_collision": 1}


def test_an_empty_profile_writes_an_empty_dataset(empty_profile: Profile, tmp_path: Path) -> None:
    got = _dataset_path(empty_profile, CurationOptions(username="Greg"), tmp_path)
    assert got["jsonl"] == b"" and got["samples"] == 0
    assert got["dropped"] == b"memory_id,path,type,reason,detail\n"
    assert [gate.status for gate in got["gates"]] == ["fail"]


def test_memories_are_put_in_time_order_then_id_order() -> None:
    stamps = np.array([5, 3, 5, 3, 9, 5], dtype=np.int64)
    ids = ["e", "d", "c", "b", "a", "f"]
    order = dataset._time_order(np.array([0, 1, 2, 3, 5]), stamps, ids)
    assert order.tolist() == [3, 1, 2, 0, 5]


def test_the_curate_command_never_imports_pandas(demo_root: Path, tmp_path: Path) -> None:
    script = ("import sys\nfrom metahuman_lib.cli import main\n"
              f"code = main(['curate', '--username', 'demo', '--root', {str(demo_root)!r}, "
              f"'--output', {str(tmp_path / 'out.jsonl')!r}])\n"
              "heavy = sorted(name for name in ('pandas', 'pyarrow') if name in sys.modules)\n"
              "print('heavy:', heavy)\nsys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          env=dict(os.environ), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "heavy: []" in proc.stdout
