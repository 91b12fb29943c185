"""The samples table's JSONL form: timestamps written as ``pd.Timestamp.isoformat`` would write
them, column-wise, and a written file reads back unchanged."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd

from metahuman_lib.samples import iso_timestamps, read_samples_jsonl, write_samples_jsonl

STAMPS = ["2025-03-31T02:58:43Z", "2025-03-31T02:58:43.336Z", "2025-03-31T02:58:43.000001Z",
          "2025-03-31T02:58:43.000000001Z", "1999-12-31T23:59:59.999999999Z",
          "2025-06-01T12:00:00+02:00", "1969-07-20T20:17:40.5Z"]


def test_iso_timestamps_match_isoformat_for_every_precision() -> None:
    stamps = pd.Series(pd.to_datetime(STAMPS, utc=True, format="ISO8601"))
    expected = [pd.Timestamp(s).tz_convert("UTC").isoformat().replace("+00:00", "Z") for s in stamps]
    assert iso_timestamps(stamps) == expected
    assert expected[:3] == ["2025-03-31T02:58:43Z", "2025-03-31T02:58:43.336000Z",
                            "2025-03-31T02:58:43.000001Z"]
    assert iso_timestamps(pd.Series(pd.to_datetime([], utc=True))) == []


def test_written_samples_read_back_unchanged(tmp_path: Path) -> None:
    records = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                             {"role": "assistant", "content": f"answer number {i} ✓"}],
                "metadata": {"sample_id": f"evt-{i}", "memory_id": f"evt-{i}", "type": "reflection",
                             "mode": "dual", "mode_source": "type", "timestamp": stamp}}
               for i, stamp in enumerate(STAMPS)]
    path = tmp_path / "samples.jsonl"
    path.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))
    samples = read_samples_jsonl(path)
    assert write_samples_jsonl(samples, tmp_path / "again.jsonl") == len(STAMPS)
    again = read_samples_jsonl(tmp_path / "again.jsonl")
    pd.testing.assert_frame_equal(again, samples)
    lines = (tmp_path / "again.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith('"timestamp":"2025-03-31T02:58:43Z"}}')
    assert "✓" in lines[0]
