"""Checking a parameter block's values against the types of its dataclass, when it is loaded.

A wrong type used to pass and fail later, as a traceback or as Python's error text inside a step
(``learning_rate: "fast"`` gave "'<=' not supported between 'str' and 'int'"). Now each key is
checked against its field's annotation, and a mismatch is one line naming the block, the key, the
value and the type expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from metahuman_lib.errors import ConfigError


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (tuple, list) or annotation in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if isinstance(value, str) and args and args[0] is str:
            return True  # a single name where a list is expected (the parsers accept it)
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value) if args else \
            isinstance(value, (list, tuple))
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return isinstance(value, Mapping)
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, (Mapping, annotation))
    return True  # an annotation this checker does not know: the block's own parser decides


def _readable(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_readable(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin in (tuple, list):
        inner = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        plural = {str: "strings", int: "whole numbers", float: "numbers"}
        return f"a list of {plural.get(inner[0], _readable(inner[0]))}" if inner else "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    names = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}
    return names.get(annotation, "a mapping" if dataclasses.is_dataclass(annotation) else str(annotation))


def _numeric_text(value: Any, annotation: Any) -> float | None:
    """``"1e-4"`` for a number field: YAML 1.1 reads exponents without a dot as strings."""
    wants_float = annotation is float or float in typing.get_args(annotation)
    if not (wants_float and isinstance(value, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def check_types(block: str, cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against the fields of ``cls`` (numbers written as ``1e-4`` read as numbers).

    Raises:
        ConfigError: one line for the first key whose value does not fit its field.
    """
    out = dict(values)
    if not dataclasses.is_dataclass(cls):
        return out
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key not in hints or _matches(value, hints[key]):
            continue
        number = _numeric_text(value, hints[key])
        if number is not None:
            out[key] = number
            continue
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ConfigError(f"{block}.{key} = {shown} is {type(value).__name__}; expected {_readable(hints[key])}.")
    return out
