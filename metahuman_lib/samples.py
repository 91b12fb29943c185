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

import numpy as np
import orjson
import pandas as pd

from metahuman_lib._gc import paused_gc
from metahuman_lib._io import atomic_writer
from metahuman_lib.text_rules import count_words

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


def _iso_utc(stamp: pd.Timestamp) -> str:
    return stamp.tz_convert("UTC").isoformat().replace("+00:00", "Z")


def iso_timestamps(timestamps: pd.Series) -> list[str]:
    """Each UTC timestamp as the record writes it: ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.

    The same text as ``pd.Timestamp.isoformat`` (microseconds only when there are any,
    nanoseconds only when there are any), formatted for the whole column at once.
    """
    stamps = pd.DatetimeIndex(timestamps).tz_convert("UTC")
    nanos = stamps.as_unit("ns").asi8
    texts = np.datetime_as_string(nanos.view("datetime64[ns]"), unit="us").tolist()
    whole_second = (nanos % 1_000_000_000 == 0).tolist()
    sub_micro = np.flatnonzero(nanos % 1000).tolist()
    out = [text[:-7] + "Z" if whole else text + "Z" for text, whole in zip(texts, whole_second, strict=True)]
    for index in sub_micro:
        out[index] = _iso_utc(stamps[index])
    return out


def iter_records(samples: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """JSONL records for every row of a samples table, in row order."""
    columns = [samples[key].tolist() for key in ("messages", *_METADATA_COLUMNS)]
    rows = zip(*columns, iso_timestamps(samples["timestamp"]), strict=True)
    for messages, sample_id, memory_id, memory_type, mode, mode_source, timestamp in rows:
        yield {"messages": list(messages),
               "metadata": {"sample_id": sample_id, "memory_id": memory_id, "type": memory_type,
                            "mode": mode, "mode_source": mode_source, "timestamp": timestamp}}


def write_samples_jsonl(samples: pd.DataFrame, path: Path) -> int:
    """Write a samples table as JSONL (one sample per line, stable key order), atomically; return the count."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with paused_gc(), atomic_writer(Path(path)) as handle:  # a full disk never leaves a cut file
        handle.writelines(dumps(record, option=newline) for record in iter_records(samples))
    return len(samples)


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
                "word_count": count_words(assistant_text),
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
