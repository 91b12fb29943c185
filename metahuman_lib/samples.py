"""The one record type that flows from curation to selection to training: a chat sample.

A samples table is a pandas DataFrame with these columns (see docs/architecture.md):

=================  ===========================  ==============================================
column             dtype                        meaning
=================  ===========================  ==============================================
``sample_id``      str                          unique; the memory id, plus ``#n`` when one
                                                memory yields several samples
``memory_id``      str                          the memory it came from (samples of one memory
                                                always travel together through selection)
``timestamp``      datetime64[ns, UTC]          the memory's ``timestamp`` field
``type``           str                          the memory's type
``mode``           str                          ``dual`` | ``emulation`` | ``agent``
``mode_source``    str                          ``metadata`` or ``type``
``messages``       list[dict]                   ``[{"role": ..., "content": ...}, ...]``
``assistant_text`` str                          all assistant contents joined by a blank line
``word_count``     int                          words in ``assistant_text``
=================  ===========================  ==============================================

On disk a sample is one JSONL line in the ``messages`` format used by TRL, Axolotl and
LLaMA-Factory: ``{"messages": [...], "metadata": {...}}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

SAMPLE_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "memory_id",
    "timestamp",
    "type",
    "mode",
    "mode_source",
    "messages",
    "assistant_text",
    "word_count",
)
_METADATA_COLUMNS = ("sample_id", "memory_id", "type", "mode", "mode_source")


def empty_samples() -> pd.DataFrame:
    """A samples table with the right columns and no rows."""
    frame = pd.DataFrame({column: pd.Series(dtype=object) for column in SAMPLE_COLUMNS})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["word_count"] = frame["word_count"].astype("int64")
    return frame


def sample_record(row: Any) -> dict[str, Any]:
    """The JSONL record of one samples-table row (a ``DataFrame.itertuples`` row or a mapping)."""
    get = row.get if isinstance(row, dict) else lambda key: getattr(row, key)
    timestamp = pd.Timestamp(get("timestamp")).tz_convert("UTC")
    metadata = {key: get(key) for key in _METADATA_COLUMNS}
    metadata["timestamp"] = timestamp.isoformat().replace("+00:00", "Z")
    return {"messages": list(get("messages")), "metadata": metadata}


def iter_records(samples: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """JSONL records for every row of a samples table, in row order."""
    for row in samples.itertuples(index=False):
        yield sample_record(row)


def write_samples_jsonl(samples: pd.DataFrame, path: Path) -> int:
    """Write a samples table as JSONL (one sample per line, stable key order); return the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "wb") as handle:
        for record in iter_records(samples):
            handle.write(orjson.dumps(record) + b"\n")
            count += 1
    return count


def records_to_samples(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rebuild a samples table from JSONL records (the inverse of :func:`iter_records`)."""
    rows = []
    for record in records:
        meta = record["metadata"]
        messages = record["messages"]
        assistant_text = "\n\n".join(m["content"] for m in messages if m["role"] == "assistant")
        rows.append(
            {
                "sample_id": meta["sample_id"],
                "memory_id": meta["memory_id"],
                "timestamp": meta["timestamp"],
                "type": meta["type"],
                "mode": meta["mode"],
                "mode_source": meta["mode_source"],
                "messages": messages,
                "assistant_text": assistant_text,
                "word_count": len(assistant_text.split()),
            }
        )
    if not rows:
        return empty_samples()
    frame = pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    return frame


def read_samples_jsonl(path: Path) -> pd.DataFrame:
    """Read a JSONL file written by :func:`write_samples_jsonl` back into a samples table."""
    with open(path, "rb") as handle:
        return records_to_samples(orjson.loads(line) for line in handle if line.strip())
