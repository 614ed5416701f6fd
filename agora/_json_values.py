"""JSON-safe forms of arbitrary values: how dead-letter records store what they carry."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import math
from typing import Any

__all__ = [
    "DEFAULT_MAX_VALUE_SIZE",
    "BYTES_B64", "FLOAT", "MAX_DEPTH", "TRUNCATED", "UNSERIALISABLE",
    "dumps_json", "json_restore", "json_safe", "safe_repr", "safe_text",
]


# Cap on one string (characters) or bytes value (bytes) inside a DLQ record, and on its
# error message. Large enough for any real field; small enough that a pathological value
# (a 200 MB blob) is not copied whole into every DLQ write. DLQ sinks take it as a setting.
DEFAULT_MAX_VALUE_SIZE = 1_000_000

#: Flag keys of the stored forms, also recognised by :func:`json_restore`.
UNSERIALISABLE = "__agora_unserialisable__"
TRUNCATED = "__agora_truncated__"
BYTES_B64 = "__agora_bytes_b64__"
FLOAT = "__agora_float__"

# Containers nested deeper than this are stored as a flagged repr: bounds the recursion
# (a self-referencing list would otherwise never end) at a depth no real row reaches.
MAX_DEPTH = 100

# Python refuses to convert ints beyond ~4300 decimal digits to text; stay below that.
_MAX_INT_BITS = 14_000


def dumps_json(value: Any) -> str:
    """``json.dumps`` whose result always encodes as UTF-8.

    Readable non-ASCII text is kept as is; only when the text holds a lone surrogate
    (``"\\ud800"``, which ``json.loads`` happily produces) is everything written as ASCII
    escapes — lossless: reading it back yields the same string.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, allow_nan=False)
    return text


def safe_text(value: Any) -> str:
    """``str(value)`` that never raises (a failing ``__str__`` is described instead).
    Always a plain ``str`` (a ``StrEnum`` member becomes its value)."""
    if type(value) is str:
        return value
    try:
        text = str(value)
    except Exception as exc:  # noqa: BLE001 - describing the value must not fail
        return f"<{_type_name(value)}: str() raised {_type_name(exc)}>"
    return text if isinstance(text, str) else _type_name(value)


def safe_repr(value: Any, limit: int = 1000) -> str:
    """``repr(value)``, cut to ``limit`` characters, that never raises."""
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - describing the value must not fail
        return f"<{_type_name(value)} object: repr() raised {_type_name(exc)}>"
    if not isinstance(text, str):
        return f"<{_type_name(value)} object>"
    return text if len(text) <= limit else f"{text[:limit]}…"


def _type_name(value: Any) -> str:
    try:
        return str(type(value).__qualname__)
    except Exception:  # noqa: BLE001 - a metaclass may do anything
        return "object"


def json_safe(
    value: Any,
    flags: dict[str, bool] | None = None,
    *,
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
) -> Any:
    """Return a JSON-encodable version of ``value``; never raises.

    Lossless for JSON types (strings with lone surrogates included). Dates, times and
    decimals become strings; bytes become ``{"__agora_bytes_b64__": …}`` (restored by
    :func:`json_restore`). Everything else is stored in a flagged form and sets
    ``flags["ok"] = False``: non-finite floats ``{"__agora_float__": "nan"}``; other values
    (sets, objects, ints too long for text, containers nested deeper than ``MAX_DEPTH``)
    ``{"__agora_unserialisable__": true, "type": …, "repr": …}``. A string longer than
    ``max_value_size`` characters (bytes: bytes) becomes ``{"__agora_truncated__": true,
    "type": …, "size": …, "head": …}`` and also sets ``flags["truncated"] = True``.
    """
    return _safe(value, flags if flags is not None else {}, max_value_size, 0)


#: Characters of a flagged value's ``repr`` kept in the DLQ: enough to recognise the value,
#: bounded so one odd object cannot bloat the DLQ (a longer repr is cut and flagged).
MAX_REPR = 1000


def _flag(flags: dict[str, bool], value: Any, note: str | None = None) -> dict[str, Any]:
    flags["ok"] = False
    text = note or safe_repr(value, MAX_REPR + 1)
    fallback: dict[str, Any] = {UNSERIALISABLE: True, "type": _type_name(value), "repr": text}
    if len(text) > MAX_REPR:
        fallback["repr"] = text[:MAX_REPR]
        fallback["truncated"] = True
        flags["truncated"] = True
    return fallback


def _safe(value: Any, flags: dict[str, bool], cap: int, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            return _flag(flags, value, f"<int of {value.bit_length():,} bits>")
        return int(value)
    if isinstance(value, str):
        if len(value) > cap:
            flags["ok"] = False
            flags["truncated"] = True
            return {TRUNCATED: True, "type": "str", "size": len(value), "head": str(value[:cap])}
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        flags["ok"] = False
        return {FLOAT: repr(float(value))}
    if depth >= MAX_DEPTH:
        return _flag(flags, value, f"<{_type_name(value)} nested deeper than {MAX_DEPTH}>")
    try:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    flags["ok"] = False  # JSON keys are text: the key's type is lost
                out[safe_text(k)] = _safe(v, flags, cap, depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [_safe(v, flags, cap, depth + 1) for v in value]
        if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            return value.isoformat()
        if isinstance(value, decimal.Decimal):
            return str(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) > cap:
                flags["ok"] = False
                flags["truncated"] = True
                head = base64.b64encode(raw[:cap]).decode("ascii")
                return {TRUNCATED: True, "type": "bytes", "size": len(raw), "head_b64": head}
            return {BYTES_B64: base64.b64encode(raw).decode("ascii")}
    except Exception as exc:  # noqa: BLE001 - e.g. a mapping whose items() raises
        return _flag(flags, value, f"<{_type_name(value)}: reading it raised {_type_name(exc)}>")
    return _flag(flags, value)


def json_restore(value: Any) -> Any:
    """Undo the lossless encodings of :func:`json_safe` (bytes) in a value read back from
    a DLQ; flagged forms are left as they are (such records are not round-trippable)."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(BYTES_B64), str):
            return base64.b64decode(value[BYTES_B64])
        return {k: json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_restore(v) for v in value]
    return value
