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
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from metahuman_lib._gc import paused_gc
from metahuman_lib._io import atomic_writer
from metahuman_lib.text_rules import count_words

if TYPE_CHECKING:
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
    import pandas as pd
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
    import pandas as pd

    stamps = pd.DatetimeIndex(timestamps).tz_convert("UTC")
    nanos = stamps.as_unit("ns").asi8
    out = iso_micros(nanos // 1000)
    for index in np.flatnonzero(nanos % 1000).tolist():
        out[index] = _iso_utc(stamps[index])
    return out


def iso_micros(micros: np.ndarray) -> list[str]:
    """UTC microseconds since the epoch as :func:`iso_timestamps` writes them."""
    micros = np.asarray(micros, dtype=np.int64)
    texts = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us").tolist()
    whole_second = (micros % 1_000_000 == 0).tolist()
    return [text[:-7] + "Z" if whole else text + "Z" for text, whole in zip(texts, whole_second, strict=True)]


def sample_record(messages: list[dict[str, str]], sample_id: str, memory_id: str, memory_type: str,
                  mode: str, mode_source: str, timestamp: str) -> dict[str, Any]:
    """One sample as its JSONL line holds it (``timestamp`` as :func:`iso_timestamps` writes it)."""
    return {"messages": messages,
            "metadata": {"sample_id": sample_id, "memory_id": memory_id, "type": memory_type,
                         "mode": mode, "mode_source": mode_source, "timestamp": timestamp}}


def iter_records(samples: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """JSONL records for every row of a samples table, in row order."""
    columns = [samples[key].tolist() for key in ("messages", *_METADATA_COLUMNS)]
    rows = zip(*columns, iso_timestamps(samples["timestamp"]), strict=True)
    for messages, *fields in rows:
        yield sample_record(list(messages), *fields)


def write_samples_jsonl(samples: pd.DataFrame, path: Path) -> int:
    """Write a samples table as JSONL (one sample per line, stable key order), atomically; return the count."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with paused_gc(), atomic_writer(Path(path)) as handle:  # a full disk never leaves a cut file
        handle.writelines(dumps(record, option=newline) for record in iter_records(samples))
    return len(samples)


def records_to_samples(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rebuild a samples table from JSONL records (the inverse of :func:`iter_records`)."""
    import pandas as pd
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
