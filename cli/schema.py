"""Validate plain data (parsed YAML) against frozen dataclasses, reporting every problem.

The run config (:mod:`.config`) and the experiments' settings
(:mod:`.experiments.settings`) are both dataclasses; this walks a mapping against one,
collecting every problem with its path before failing::

    clients.epsilon: expected a number or null, got 'five'
    defences.roni_treshold: unknown key; allowed: admission_bits, adaptive_pow, ...
    epsilons[2]: expected a number, got 'five'

Supported field types: ``int``, ``float`` (also ``inf``), ``bool``, ``str``,
``Literal[...]``, ``X | None``, ``tuple[X, ...]`` (from a non-empty list),
``dict[...]`` (copied as is) and nested dataclasses. A dataclass's own
``__post_init__`` checks run last; their ``ValueError`` becomes a problem too.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

__all__ = ["ConfigError", "describe", "from_mapping", "to_mapping"]


class ConfigError(ValueError):
    """A configuration that cannot run; ``problems`` lists each as ``"path: what is wrong"``."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def describe(annotation: Any) -> str:
    """Say in words what a field of type ``annotation`` accepts."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [describe(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(parts) + " or null"
    if origin is tuple:
        return f"a list of {describe(typing.get_args(annotation)[0])}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def _convert(annotation: Any, value: Any, path: str, problems: list[str]) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        inner = [a for a in options if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"schema has an unsupported union at {path}: {annotation!r}")
        found: list[str] = []
        converted = _convert(inner[0], value, path, found)
        wider = f"expected {describe(annotation)},"
        problems.extend(p.replace(f"expected {describe(inner[0])},", wider) for p in found)
        return converted
    if origin is Literal:
        allowed = typing.get_args(annotation)
        # YAML 1.1 reads a bare off/on as false/true: take them back as the words.
        if value is False and "off" in allowed:
            return "off"
        if value is True and "on" in allowed:
            return "on"
        if value not in allowed:
            problems.append(f"{path}: must be {describe(annotation)}, got {value!r}")
        return value
    if origin is tuple:
        inner = typing.get_args(annotation)[0]
        if not isinstance(value, (list, tuple)) or not value:
            problems.append(f"{path}: expected a non-empty list, got {value!r}")
            return None
        return tuple(_convert(inner, item, f"{path}[{i}]", problems) for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {type(value).__name__}")
        return copy.deepcopy(value)
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, path, problems)
    if annotation is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str) and value.strip().lower() in ("inf", ".inf", "infinity"):
            return math.inf
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{path}: expected {describe(annotation)}, got {value!r}")
            return value
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"schema has an unsupported type at {path}: {annotation!r}")


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _build(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    prefix = f"{path}." if path else ""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{path or 'config'}: expected a mapping, got {type(data).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            problems.append(f"{prefix}{key}: unknown key; allowed: {', '.join(sorted(fields))}")
    before = len(problems)
    kwargs = {
        name: _convert(hints[name], data[name], f"{prefix}{name}", problems)
        for name in fields
        if name in data
    }
    for name, field in fields.items():
        if name not in data and _required(field):
            problems.append(f"{prefix}{name}: required")
    if len(problems) > before:
        return None
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        message = str(error)
        # The engine's dataclasses name their field ("stopping.max_updates must ..."):
        # keep that path; otherwise say where the refused section is.
        problems.append(message if "." in message.split(" ", 1)[0] else f"{path or 'config'}: {message}")
        return None


def from_mapping(cls: type, data: Any, source: str = "config") -> Any:
    """Return ``cls`` built from ``data``, or raise :class:`ConfigError` listing every problem."""
    problems: list[str] = []
    value = _build(cls, data, "", problems)
    if problems or value is None:
        raise ConfigError(problems or [f"{source}: invalid"], source)
    return value


def to_mapping(value: Any, *, inf_as_text: bool = True) -> Any:
    """Return a dataclass as plain data: nested mappings, lists for tuples.

    With ``inf_as_text`` an infinite float becomes ``"inf"`` (valid JSON and YAML that
    :func:`from_mapping` reads back); otherwise it stays a float.
    """
    if dataclasses.is_dataclass(value):
        return {
            f.name: to_mapping(getattr(value, f.name), inf_as_text=inf_as_text)
            for f in dataclasses.fields(value)
        }
    if isinstance(value, (tuple, list)):
        return [to_mapping(v, inf_as_text=inf_as_text) for v in value]
    if isinstance(value, dict):
        return {k: to_mapping(v, inf_as_text=inf_as_text) for k, v in value.items()}
    if inf_as_text and isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value
