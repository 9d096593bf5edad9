"""The wire format: msgpack maps derived from :mod:`tormentor.engine.protocol`.

A message is defined once, as a dataclass in ``engine/protocol.py``; this module reads
its type annotations (``typing.get_type_hints(include_extras=True)``) once, at import,
and compiles an encoder and a strict decoder per message type.

Envelope and field encoding::

    {"v": 1, "t": "<TYPE>", <field>: <value>, ...}      a msgpack map, fields by name

    int                  msgpack int; int64 range (``nonce``: uint64, 0..2**64-1)
    float                msgpack float (an int is accepted on decode and converted;
                         exactly representable: |x| <= 2**53); must be finite
    bool                 msgpack bool (never an int)
    str                  msgpack str, at most MAX_STR_CHARS characters
    bytes                msgpack bin, at most MAX_BIN_BYTES bytes
    X | None             nil or X
    dict[str, int]       map str -> int, at most MAX_DICT_ENTRIES entries
    Vector               bin: raw little-endian float64, length a multiple of 8
    Matrix               map {"rows": int, "cols": int, "data": bin}, row-major
    nested dataclass     map of its fields, same rules (no "v"/"t")

Decoding is STRICT (msgspec's "strict" mode): no silent casts except int -> float; every
field is checked for type, range and finiteness, and every failure is a
:class:`WireError` with an :class:`~tormentor.engine.protocol.ErrorCode` and the field
path (``task.defences.max_bits: expected int, got str``). Order of checks and codes:

    len(data) > max_bytes, checked before unpacking           OVERSIZED
    not msgpack, trailing bytes, not a map, over msgpack limits MALFORMED
    "v" missing, not an int, or not PROTOCOL_VERSION          BAD_VERSION
    "t" missing/unknown, or known but not in ``accept``       UNKNOWN_TYPE
    field missing (and without default), extra, wrong type,
      out of range, too long, vector length % 8 != 0,
      matrix rows*cols != data length                          BAD_FIELD
    NaN or +-inf in any float, vector or matrix                NON_FINITE
    values a task's own validation refuses (TaskSpec,
      StoppingRule, Defences ``__post_init__``)                INVALID_TASK

No float field may be NaN or infinite, in requests or replies (the protocol has no
"unbounded" float). A missing field that has a default in the dataclass takes that
default: this is how "new fields at the end, with defaults" stays compatible with older
senders (msgspec's evolution rule); a missing field without a default is BAD_FIELD.

Decoded vectors and matrices are ``np.frombuffer`` views of the received bytes:
zero-copy and READ-ONLY (``flags.writeable`` is False); copy before modifying.

Local vs remote faults: decoding a peer's bytes raises only :class:`WireError` (a
remote fault: reply with ``err.reply()``); encoding a message whose fields have the
wrong type or value is OUR bug and raises ``TypeError``/``ValueError``.
Error messages name fields and types, never values of tokens, secrets or vectors.

``python -m tormentor.transport.codec --markdown`` prints the schema tables
(:func:`schema_markdown`).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import numpy as np

from tormentor.engine import protocol
from tormentor.engine.protocol import (
    PROTOCOL_VERSION,
    REPLY_TYPES,
    REQUEST_TYPES,
    ErrorCode,
    ProtocolError,
)

__all__ = [
    "INT_RANGES",
    "MAX_BIN_BYTES",
    "MAX_DICT_ENTRIES",
    "MAX_STR_CHARS",
    "WireError",
    "decode",
    "encode",
    "schema_markdown",
]

#: Longest str field (ids, reasons, messages), in characters.
MAX_STR_CHARS = 1024
#: Longest bytes field (tokens, puzzles, secrets, join ids), in bytes.
MAX_BIN_BYTES = 1024
#: Most entries in a dict field.
MAX_DICT_ENTRIES = 64

_INT64 = (-(2**63), 2**63 - 1)
#: Inclusive range of int fields by field name; every other int field is int64.
INT_RANGES: dict[str, tuple[int, int]] = {"nonce": (0, 2**64 - 1)}
_EXACT_FLOAT_INT = 2**53
_MISSING = object()

_WIRE_NAMES = {int: "int", float: "float", bool: "bool", str: "str", bytes: "bin",
               dict: "map", list: "array", tuple: "array", type(None): "nil"}

#: Nested dataclasses whose own validation failing means INVALID_TASK (else BAD_FIELD).
_SEMANTIC_CODES: dict[type, ErrorCode] = {
    protocol.TaskSpec: ErrorCode.INVALID_TASK,
    protocol.StoppingRule: ErrorCode.INVALID_TASK,
    protocol.Defences: ErrorCode.INVALID_TASK,
}


class WireError(ProtocolError):
    """A peer's bytes are not a valid message: a remote fault, never our bug.

    Parameters
    ----------
    code : ErrorCode
        One of MALFORMED, BAD_VERSION, UNKNOWN_TYPE, BAD_FIELD, OVERSIZED, NON_FINITE,
        INVALID_TASK.
    message : str
        What is wrong (types and names only, never values).
    path : str
        Dotted path of the offending field (``"task.defences.max_bits"``), or ``""``.
    """

    def __init__(self, code: ErrorCode, message: str, path: str = "") -> None:
        super().__init__(code, f"{path}: {message}" if path else message)
        self.path = path


def _got(value: object) -> str:
    return _WIRE_NAMES.get(type(value), type(value).__name__)


def _bad(path: str, message: str) -> WireError:
    return WireError(ErrorCode.BAD_FIELD, message, path)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe_key(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 32 else text[:29] + "..."


# --------------------------------------------------------------------------- field codecs
#
# Each compiled field has a decoder ``(wire_value, path) -> python value`` raising
# WireError, an encoder ``(python value, path) -> wire value`` raising TypeError or
# ValueError, and a wire-type description for the schema tables.


@dataclasses.dataclass(frozen=True)
class _Codec:
    decode: Callable[[Any, str], Any]
    encode: Callable[[Any, str], Any]
    wire: str


def _int_codec(low: int, high: int) -> _Codec:
    def dec(value: Any, path: str) -> int:
        if type(value) is not int:
            raise _bad(path, f"expected int, got {_got(value)}")
        if not low <= value <= high:
            raise _bad(path, f"int out of range {_range_text(low, high)}")
        return value

    def enc(value: Any, path: str) -> int:
        if type(value) is not int:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{path}: expected int, got {type(value).__name__}")
            value = int(value)
        if not low <= value <= high:
            raise ValueError(f"{path}: int out of range {_range_text(low, high)}")
        return value

    return _Codec(dec, enc, "uint64" if low == 0 and high == 2**64 - 1 else "int64")


def _range_text(low: int, high: int) -> str:
    named = {0: "0", -(2**63): "-2**63", 2**63 - 1: "2**63-1", 2**64 - 1: "2**64-1"}
    return f"{named.get(low, low)}..{named.get(high, high)}"


def _float_dec(value: Any, path: str) -> float:
    kind = type(value)
    if kind is float:
        if value - value != 0.0:  # NaN or +-inf (cheaper than math.isfinite + call)
            raise WireError(ErrorCode.NON_FINITE, "NaN or infinity", path)
        return value
    if kind is int:
        if not -_EXACT_FLOAT_INT <= value <= _EXACT_FLOAT_INT:
            raise _bad(path, "int for a float field must be within +-2**53")
        return float(value)
    raise _bad(path, f"expected float, got {_got(value)}")


def _float_enc(value: Any, path: str) -> float:
    if type(value) is not float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (float, int, np.floating, np.integer)):
            raise TypeError(f"{path}: expected float, got {type(value).__name__}")
        value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{path}: NaN or infinity in a float field")
    return value


_FLOAT = _Codec(_float_dec, _float_enc, "float64 (finite; int accepted)")


def _bool_dec(value: Any, path: str) -> bool:
    if type(value) is not bool:
        raise _bad(path, f"expected bool, got {_got(value)}")
    return value


def _bool_enc(value: Any, path: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{path}: expected bool, got {type(value).__name__}")
    return bool(value)


_BOOL = _Codec(_bool_dec, _bool_enc, "bool")


def _str_dec(value: Any, path: str) -> str:
    if type(value) is not str:
        raise _bad(path, f"expected str, got {_got(value)}")
    if len(value) > MAX_STR_CHARS:
        raise _bad(path, f"str longer than {MAX_STR_CHARS} characters")
    return value


def _str_enc(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{path}: expected str, got {type(value).__name__}")
    if len(value) > MAX_STR_CHARS:
        raise ValueError(f"{path}: str longer than {MAX_STR_CHARS} characters")
    return str(value)


_STR = _Codec(_str_dec, _str_enc, f"str (<= {MAX_STR_CHARS} chars)")


def _bytes_dec(value: Any, path: str) -> bytes:
    if type(value) is not bytes:
        raise _bad(path, f"expected bin, got {_got(value)}")
    if len(value) > MAX_BIN_BYTES:
        raise _bad(path, f"bin longer than {MAX_BIN_BYTES} bytes")
    return value


def _bytes_enc(value: Any, path: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{path}: expected bytes, got {type(value).__name__}")
    if len(value) > MAX_BIN_BYTES:
        raise ValueError(f"{path}: bytes longer than {MAX_BIN_BYTES} bytes")
    return bytes(value)


_BYTES = _Codec(_bytes_dec, _bytes_enc, f"bin (<= {MAX_BIN_BYTES} bytes)")


_F8 = np.dtype("<f8")


def _finite_bytes(data: bytes) -> bool:
    """Return True if the little-endian float64 ``data`` holds no NaN or infinity.

    Short vectors (the model's, d ~ 24): a plain Python sum over a memoryview is finite
    only if every entry is (NaN and inf propagate; a sum that overflows falls through
    to the exact check) and costs less than ``isfinite().all()``'s temporary array,
    without touching numpy's floating-point warning state. Longer arrays use the exact
    check.
    """
    if len(data) <= _SUM_MAX_BYTES and _LITTLE_ENDIAN:
        total = sum(memoryview(data).cast("d"))
        if total - total == 0.0:
            return True
    return bool(np.isfinite(np.frombuffer(data, dtype=_F8)).all())


#: Largest array (in bytes) checked with the Python-sum fast path.
_SUM_MAX_BYTES = 128 * 8
_LITTLE_ENDIAN = sys.byteorder == "little"


def _vector_dec(value: Any, path: str) -> np.ndarray:
    if type(value) is not bytes:
        raise _bad(path, f"expected bin (float64 vector), got {_got(value)}")
    if len(value) % 8:
        raise _bad(path, f"vector byte length {len(value)} is not a multiple of 8")
    if not _finite_bytes(value):
        raise WireError(ErrorCode.NON_FINITE, "NaN or infinity in the vector", path)
    return np.frombuffer(value, dtype=_F8)


def _array_bytes(value: Any, ndim: int, path: str) -> bytes:
    """Little-endian float64 C-order bytes of a finite ``ndim``-D float array (encode)."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{path}: expected numpy.ndarray, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{path}: expected a {ndim}-D array, got {value.ndim}-D")
    if value.dtype.kind != "f":
        raise TypeError(f"{path}: expected a float array, got dtype {value.dtype}")
    data = value.astype(_F8, copy=False).tobytes()
    if not _finite_bytes(data):
        raise ValueError(f"{path}: NaN or infinity in the array")
    return data


def _vector_enc(value: Any, path: str) -> bytes:
    return _array_bytes(value, 1, path)


_VECTOR = _Codec(_vector_dec, _vector_enc, "bin: n x float64, little-endian (finite)")


def _matrix_dec(value: Any, path: str) -> np.ndarray:
    if type(value) is not dict:
        raise _bad(path, f"expected map (matrix), got {_got(value)}")
    if value.keys() != {"rows", "cols", "data"}:
        raise _bad(path, "matrix map must have exactly the keys rows, cols, data")
    rows = _MATRIX_DIM.decode(value["rows"], _join(path, "rows"))
    cols = _MATRIX_DIM.decode(value["cols"], _join(path, "cols"))
    data = value["data"]
    if type(data) is not bytes:
        raise _bad(_join(path, "data"), f"expected bin, got {_got(data)}")
    if rows * cols * 8 != len(data):
        raise _bad(path, f"rows*cols*8 = {rows * cols * 8} but data has {len(data)} bytes")
    if not _finite_bytes(data):
        raise WireError(ErrorCode.NON_FINITE, "NaN or infinity in the matrix", path)
    return np.frombuffer(data, dtype=_F8).reshape(rows, cols)


def _matrix_enc(value: Any, path: str) -> dict[str, Any]:
    data = _array_bytes(value, 2, path)
    rows, cols = value.shape
    return {"rows": rows, "cols": cols, "data": data}


_MATRIX_DIM = _int_codec(0, 2**31 - 1)
_MATRIX = _Codec(_matrix_dec, _matrix_enc,
                 "map {rows: int, cols: int, data: bin rows x cols float64 LE, row-major}")


def _optional_codec(inner: _Codec) -> _Codec:
    def dec(value: Any, path: str) -> Any:
        return None if value is None else inner.decode(value, path)

    def enc(value: Any, path: str) -> Any:
        return None if value is None else inner.encode(value, path)

    return _Codec(dec, enc, f"{inner.wire} or nil")


def _str_int_dict_codec(value_codec: _Codec) -> _Codec:
    def dec(value: Any, path: str) -> dict[str, int]:
        if type(value) is not dict:
            raise _bad(path, f"expected map, got {_got(value)}")
        if len(value) > MAX_DICT_ENTRIES:
            raise _bad(path, f"map has more than {MAX_DICT_ENTRIES} entries")
        out = {}
        for key, item in value.items():
            if type(key) is not str or len(key) > MAX_STR_CHARS:
                raise _bad(path, f"map keys must be str (<= {MAX_STR_CHARS} chars)")
            out[key] = value_codec.decode(item, f"{path}[{_describe_key(key)}]")
        return out

    def enc(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise TypeError(f"{path}: expected dict, got {type(value).__name__}")
        if len(value) > MAX_DICT_ENTRIES:
            raise ValueError(f"{path}: dict has more than {MAX_DICT_ENTRIES} entries")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > MAX_STR_CHARS:
                raise TypeError(f"{path}: dict keys must be str (<= {MAX_STR_CHARS} chars)")
            out[key] = value_codec.encode(item, f"{path}[{_describe_key(key)}]")
        return out

    return _Codec(dec, enc, f"map str -> {value_codec.wire} (<= {MAX_DICT_ENTRIES} entries)")


# --------------------------------------------------------------------------- dataclasses


@dataclasses.dataclass(frozen=True)
class _FieldSpec:
    name: str
    codec: _Codec
    required: bool
    doc: str


class _Schema:
    """Compiled encoder/decoder of one dataclass at one position of the message tree.

    Field paths (``task.defences.max_bits``) are fixed at compile time, so decoding
    builds no strings unless it fails.
    """

    def __init__(self, cls: type, prefix: str = "") -> None:
        self.cls = cls
        self.prefix = prefix
        self.type_name: str | None = getattr(cls, "TYPE", None)
        hints = typing.get_type_hints(cls, include_extras=True)
        docs = _attribute_docs(cls)
        self.fields: tuple[_FieldSpec, ...] = tuple(
            _FieldSpec(
                name=f.name,
                codec=_compile(hints[f.name], _join(prefix, f.name)),
                required=(f.default is dataclasses.MISSING
                          and f.default_factory is dataclasses.MISSING),
                doc=docs.get(f.name, ""),
            )
            for f in dataclasses.fields(cls)
        )
        self._names = frozenset(f.name for f in self.fields)
        self._decoders = tuple((f.name, f.codec.decode, f.required, _join(prefix, f.name))
                               for f in self.fields)
        self._encoders = tuple((f.name, f.codec.encode, _join(prefix, f.name))
                               for f in self.fields)
        self._semantic_code = _SEMANTIC_CODES.get(cls, ErrorCode.BAD_FIELD)
        # A plain frozen dataclass (no __post_init__, no defaults, no slots) is built by
        # filling __dict__ directly: equal to cls(**kwargs), a third of the cost.
        self._fast = (
            not hasattr(cls, "__post_init__")
            and all(f.required for f in self.fields)
            and all(f.init for f in dataclasses.fields(cls))
            and "__slots__" not in cls.__dict__
        )

    def decode_fields(self, obj: dict[Any, Any], envelope: int) -> Any:
        """Build the dataclass from ``obj``; ``envelope`` = 2 if it also holds v and t."""
        kwargs = {}
        found = 0
        for name, decode_value, required, path in self._decoders:
            try:
                value = obj[name]
            except KeyError:
                if required:
                    raise _bad(path, "missing field") from None
                continue
            found += 1
            kwargs[name] = decode_value(value, path)
        if found + envelope != len(obj):
            allowed = self._names | {"v", "t"} if envelope else self._names
            extra = [key for key in obj if key not in allowed]
            shown = ", ".join(_describe_key(key) for key in extra[:3])
            raise _bad(self.prefix, f"unexpected field(s) {shown}")
        if self._fast:
            message = object.__new__(self.cls)
            message.__dict__.update(kwargs)
            return message
        try:
            return self.cls(**kwargs)
        except (ValueError, TypeError) as exc:
            # The dataclass's own validation (e.g. TaskSpec.__post_init__) refused it.
            raise WireError(self._semantic_code, str(exc), self.prefix) from None

    def encode_fields(self, message: Any, out: dict[str, Any]) -> dict[str, Any]:
        values = message.__dict__ if self._fast else {
            name: getattr(message, name) for name in self._names}
        for name, encode_value, path in self._encoders:
            out[name] = encode_value(values[name], path)
        return out

    def nested_codec(self) -> _Codec:
        cls = self.cls

        def dec(value: Any, path: str) -> Any:
            if type(value) is not dict:
                raise _bad(path, f"expected map ({cls.__name__}), got {_got(value)}")
            return self.decode_fields(value, 0)

        def enc(value: Any, path: str) -> dict[str, Any]:
            if type(value) is not cls:
                raise TypeError(f"{path}: expected {cls.__name__}, got {type(value).__name__}")
            return self.encode_fields(value, {})

        return _Codec(dec, enc, f"map ({cls.__name__})")


#: One compiled schema per nested dataclass (for the schema tables).
_NESTED: dict[type, _Schema] = {}


def _compile(annotation: Any, path: str) -> _Codec:
    """Compile one field annotation into a codec (at import, once per field)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        specs = [e for e in extras if isinstance(e, protocol.ArraySpec)]
        if base is not np.ndarray or len(specs) != 1:
            raise TypeError(f"{path}: unsupported annotation {annotation!r}")
        if specs[0].ndim == 1:
            return _VECTOR
        if specs[0].ndim == 2:
            return _MATRIX
        raise TypeError(f"{path}: unsupported array ndim {specs[0].ndim}")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(annotation)) != 2:
            raise TypeError(f"{path}: only X | None unions are supported")
        return _optional_codec(_compile(args[0], path))
    if origin is dict:
        key, value = typing.get_args(annotation)
        if key is not str:
            raise TypeError(f"{path}: dict keys must be str")
        return _str_int_dict_codec(_compile(value, path))
    if annotation is bool:
        return _BOOL
    if annotation is int:
        name = path.rsplit(".", 1)[-1]
        return _int_codec(*INT_RANGES.get(name, _INT64))
    if annotation is float:
        return _FLOAT
    if annotation is str:
        return _STR
    if annotation is bytes:
        return _BYTES
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        schema = _Schema(annotation, path)
        _NESTED.setdefault(annotation, schema)
        return schema.nested_codec()
    raise TypeError(f"{path}: no wire encoding for annotation {annotation!r}")


_ATTRIBUTE = re.compile(r"^(\w+) : ")


def _attribute_docs(cls: type) -> dict[str, str]:
    """Parse the numpy-style ``Attributes`` section of a dataclass docstring."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    if "\nAttributes\n---" not in doc:
        return {}
    section = doc.split("\nAttributes\n", 1)[1].split("\n", 1)[1]  # drop the underline
    docs: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in section.splitlines():
        match = _ATTRIBUTE.match(line)
        if match:
            current = docs.setdefault(match.group(1), [])
        elif line.startswith("    ") and current is not None:
            current.append(line.strip())
        elif line.strip():
            break  # the next section
    return {name: " ".join(text) for name, text in docs.items()}


_MESSAGE_TYPES: tuple[type, ...] = tuple(REQUEST_TYPES) + tuple(REPLY_TYPES)
_SCHEMAS: dict[type, _Schema] = {cls: _Schema(cls) for cls in _MESSAGE_TYPES}
_BY_NAME: dict[str, _Schema] = {s.type_name: s for s in _SCHEMAS.values() if s.type_name}
if len(_BY_NAME) != len(_SCHEMAS):  # pragma: no cover - a protocol.py bug
    raise RuntimeError("every protocol message needs a distinct TYPE")


# --------------------------------------------------------------------------- encode/decode


def encode(message: Any) -> bytes:
    """Encode a protocol message as a msgpack map.

    Parameters
    ----------
    message : dataclass instance
        One of :data:`~tormentor.engine.protocol.REQUEST_TYPES` or
        :data:`~tormentor.engine.protocol.REPLY_TYPES`.

    Returns
    -------
    bytes
        ``{"v": PROTOCOL_VERSION, "t": message.TYPE, <fields>}`` packed.

    Raises
    ------
    TypeError
        If ``message`` is not a protocol message or a field has the wrong type (our bug).
    ValueError
        If a field value is out of range, too long or not finite (our bug).
    """
    schema = _SCHEMAS.get(type(message))
    if schema is None:
        raise TypeError(f"not a protocol message: {type(message).__name__}")
    out: dict[str, Any] = {"v": PROTOCOL_VERSION, "t": schema.type_name}
    return msgpack.packb(schema.encode_fields(message, out), use_bin_type=True)


_ACCEPT_TABLES: dict[tuple[type, ...], dict[str, _Schema]] = {}


def _accept_table(accept: Sequence[type]) -> dict[str, _Schema]:
    key = accept if type(accept) is tuple else tuple(accept)
    table = _ACCEPT_TABLES.get(key)
    if table is None:
        unknown = [cls for cls in key if cls not in _SCHEMAS]
        if unknown or not key:
            raise TypeError(f"accept must list protocol message classes, got {key!r}")
        table = {_SCHEMAS[cls].type_name: _SCHEMAS[cls] for cls in key}
        _ACCEPT_TABLES[key] = table
    return table


def decode(
    data: bytes | bytearray | memoryview,
    *,
    accept: Sequence[type] = REQUEST_TYPES,
    max_bytes: int,
) -> Any:
    """Decode and validate one message from a peer.

    Parameters
    ----------
    data : bytes-like
        The received payload.
    accept : sequence of message classes
        The types acceptable here (:data:`REQUEST_TYPES` on the broker,
        :data:`REPLY_TYPES` on a client or curator, or a narrower set).
    max_bytes : int
        Largest payload accepted, in bytes; checked before unpacking.

    Returns
    -------
    dataclass instance
        A message of one of the ``accept`` types. Its vectors are read-only views.

    Raises
    ------
    WireError
        For anything wrong with ``data`` (see the module docstring for the codes).
        Nothing else escapes for any ``data``.
    TypeError, ValueError
        For a bad ``accept`` or ``max_bytes`` (the caller's bug).
    """
    if type(max_bytes) is not int or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    try:
        table = _ACCEPT_TABLES[accept]
    except (KeyError, TypeError):  # first use of this accept set, or a list
        table = _accept_table(accept)
    size = data.nbytes if type(data) is memoryview else len(data)
    if size > max_bytes:
        raise WireError(ErrorCode.OVERSIZED, f"message of {size} bytes exceeds {max_bytes}")
    try:
        obj = msgpack.unpackb(
            data, raw=False, strict_map_key=True,
            max_str_len=4 * MAX_STR_CHARS, max_array_len=64,
            max_map_len=2 * MAX_DICT_ENTRIES, max_ext_len=0,
        )
    except Exception:  # msgpack raises ValueError, TypeError, StackError, ExtraData, ...
        raise WireError(ErrorCode.MALFORMED, "not a single well-formed msgpack value") from None
    if type(obj) is not dict:
        raise WireError(ErrorCode.MALFORMED, f"message must be a msgpack map, got {_got(obj)}")
    version = obj.get("v", _MISSING)
    if version is _MISSING:
        raise WireError(ErrorCode.BAD_VERSION, "missing protocol version 'v'")
    if type(version) is not int or version != PROTOCOL_VERSION:
        shown = version if type(version) is int else _got(version)
        raise WireError(ErrorCode.BAD_VERSION,
                        f"protocol version {shown} not supported (this side speaks "
                        f"{PROTOCOL_VERSION})")
    type_name = obj.get("t")
    schema = table.get(type_name) if type(type_name) is str else None
    if schema is None:
        raise _unknown_type(type_name, table)
    return schema.decode_fields(obj, 2)


def _unknown_type(type_name: object, table: dict[str, _Schema]) -> WireError:
    if type_name is None:
        return WireError(ErrorCode.UNKNOWN_TYPE, "missing message type 't'")
    if type(type_name) is not str:
        return WireError(ErrorCode.UNKNOWN_TYPE, f"message type must be str, got {_got(type_name)}")
    known = _BY_NAME.get(type_name)
    if known is None:
        return WireError(ErrorCode.UNKNOWN_TYPE, "unknown message type")
    role = "reply" if known.cls in REPLY_TYPES else "request"
    expected = ", ".join(sorted(table))
    return WireError(ErrorCode.UNKNOWN_TYPE,
                     f"{role} type {type_name!r} not accepted here (expected one of {expected})")


# --------------------------------------------------------------------------- schema docs


def _summary(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def schema_markdown() -> str:
    """Return the wire schema as markdown: the envelope, then one table per type.

    Returns
    -------
    str
        Generated from the dataclasses in :mod:`tormentor.engine.protocol`.
    """
    out = [
        f"# Wire protocol v{PROTOCOL_VERSION} (msgpack)",
        "",
        "Every message is a msgpack map `{\"v\": "
        f"{PROTOCOL_VERSION}, \"t\": TYPE, field: value, ...}}`. Decoding is strict: "
        "no extra fields, no type coercion except int -> float, every float finite. "
        "A missing field takes its default if it has one.",
        "",
    ]

    def table(schema: _Schema, heading: str) -> None:
        out.extend([heading, "", _summary(schema.cls), "",
                    "| field | wire type | meaning |", "|---|---|---|"])
        for spec in schema.fields:
            meaning = spec.doc.replace("|", "\\|")
            if not meaning and spec.codec.wire.startswith("map (") and spec.codec.wire != \
                    "map (" + schema.cls.__name__ + ")":
                meaning = f"see the {spec.codec.wire[5:-1]} table"
            need = "" if spec.required else " (default if absent)"
            out.append(f"| `{spec.name}` | {spec.codec.wire}{need} | {meaning} |")
        out.append("")

    for title, kinds in (("Requests", REQUEST_TYPES), ("Replies", REPLY_TYPES)):
        out.extend([f"## {title}", ""])
        for cls in kinds:
            table(_SCHEMAS[cls], f"### `{_SCHEMAS[cls].type_name}` ({cls.__name__})")
    out.extend(["## Nested maps", ""])
    for cls, schema in _NESTED.items():
        if cls not in _SCHEMAS:
            table(schema, f"### {cls.__name__}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m tormentor.transport.codec --markdown``.

    Parameters
    ----------
    argv : sequence of str or None
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m tormentor.transport.codec",
                                     description="Print the wire schema.")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args(argv)
    if not args.markdown:
        parser.print_help()
        return 2
    sys.stdout.write(schema_markdown() + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
