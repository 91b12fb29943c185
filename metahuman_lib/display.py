"""Objects as tables a person reads: key/value rows instead of Python object dumps.

Notebooks show records (a train config, a job status, a registry summary, a parameter set) with
:func:`table`; the HTML reports build their parameter rows with :func:`rows`. Nested mappings
become dotted keys (``training.learning_rate``), lists are joined, paths are shown as text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePath
from typing import Any

import pandas as pd

_EMPTY = "—"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    for name in ("to_dict", "as_dict"):
        method = getattr(value, name, None)
        if callable(method) and not isinstance(value, Mapping):
            return method()
    return value


def _text(value: Any) -> Any:
    if value is None:
        return _EMPTY
    if isinstance(value, (PurePath, datetime)):
        return str(value)
    if isinstance(value, Mapping) and not value:
        return _EMPTY
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [str(_text(_plain(v))) for v in value]
        return ", ".join(items) if items else _EMPTY
    if isinstance(value, float):
        return round(value, 6)
    return value


def rows(record: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(key, value)`` rows of a record: a mapping, a dataclass, or an object with ``to_dict``."""
    record = _plain(record)
    if not isinstance(record, Mapping):
        return [(prefix or "value", _text(record))]
    out: list[tuple[str, Any]] = []
    for key, value in record.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        value = _plain(value)
        if isinstance(value, Mapping) and value:
            out.extend(rows(value, name))
        else:
            out.append((name, _text(value)))
    return out


def table(record: Any, *more: Any) -> pd.DataFrame:
    """A two-column table (``item``, ``value``) of one or more records, for a notebook cell."""
    found = [row for item in (record, *more) for row in rows(item)]
    return pd.DataFrame(found, columns=["item", "value"]).set_index("item")
