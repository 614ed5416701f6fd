"""What both JSON-lines sources share: the open, fingerprinted file and the line checks."""

from __future__ import annotations

import json
import os
import re
from typing import IO, Any

from agora.errors import SourceRecordError
from agora.records import MalformedRecord
from agora.sources._builtin import (
    BuiltinSource,
    OnMalformed,
    file_source_name,
    missing_file_error,
    parse_on_malformed,
)
from agora.sources._text import (
    UTF8_BOM,
    deeper_than,
    malformed,
    max_depth_setting,
    record_bytes_setting,
)
from agora.sources.identity import (
    PrefixHash,
    TextIdentity,
    parse_text_identity,
    split_identity,
    verify_text_prefix,
)

__all__ = ["JsonFileSource", "line_problem", "parse_json_object"]


def parse_json_object(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """``(object, None)`` if ``line`` is one UTF-8 JSON object, else ``(None, reason)``."""
    try:
        value = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8: {exc.reason} at byte {exc.start}"
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:  # only below max_depth if the caller's stack is already deep
        return None, "JSON nested too deeply for the parser"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got a JSON {type(value).__name__}"
    if b"\\u" in line and _SURROGATE_ESCAPE.search(line):
        # json accepts an unpaired surrogate escape; no sink can store the result as text.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return None, "a \\u escape stands for an unpaired surrogate (not valid Unicode)"
    return value, None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def line_problem(line: bytes, total: int, max_record_bytes: int, max_depth: int) -> str | None:
    """Why ``line`` (``total`` bytes long in the file) must not reach a parser, or None."""
    if total > max_record_bytes:
        return f"line is {total} bytes, longer than max_record_bytes={max_record_bytes}"
    if deeper_than(line, max_depth):
        return f"JSON nested deeper than max_depth={max_depth}"
    return None


class JsonFileSource(BuiltinSource):
    """An open binary JSON-lines file, fingerprinted as it is read.

    ``self._hash`` runs over every byte consumed from offset 0; checkpoints carry its
    ``identity()`` under ``"input"``, and a resume first verifies that the file still starts
    with those bytes (``verify_text_prefix``). Subclasses set ``_byte``/``_line`` (where
    reading resumes) and ``_identity`` in ``_apply_checkpoint``.
    """

    kind = "jsonl"

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_malformed: Any,
        name: str | None,
        max_record_bytes: int,
        max_depth: int,
    ) -> None:
        super().__init__(file_source_name(self.kind, path, name))
        self.path = os.fspath(path)
        self.on_malformed = parse_on_malformed(self.source_name, on_malformed)
        self.max_record_bytes = record_bytes_setting(self.source_name, max_record_bytes)
        self.max_depth = max_depth_setting(self.source_name, max_depth)

    def _reset(self) -> None:
        self._fh: IO[bytes] | None = None
        self._line = 0  # lines before the read position
        self._byte = 0  # the read position
        self._hash = PrefixHash()
        self._identity: TextIdentity | None = None

    def _split_checkpoint(self, value: Any, expected: str) -> tuple[dict[str, Any], Any]:
        fields, raw = split_identity(self.source_name, self.path, value, expected)
        self._identity = parse_text_identity(self.source_name, value, raw)
        return fields, raw

    def _open(self) -> None:
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 — closed in _close()
        except FileNotFoundError:
            raise missing_file_error(self.source_name, self.path) from None
        try:
            if self._identity is not None:
                self._hash = verify_text_prefix(
                    self.source_name, self.path, self._fh, self._identity, self._byte
                )
            self._after_verify()
        except BaseException:
            self._close()
            raise

    def _after_verify(self) -> None:
        """Hook: the file is verified and positioned at ``_byte``."""

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _bad_line(self, line_no: int, line: bytes, total: int, reason: str) -> MalformedRecord:
        """The malformed-record marker for a line, or ``SourceRecordError`` under "fail"."""
        location = f"{self.path}:{line_no}"
        if self.on_malformed is OnMalformed.FAIL:
            raise SourceRecordError(self.source_name, location, reason)
        return malformed(line, total, reason, location)

    def _strip_bom(self, line: bytes, at_byte: int) -> bytes:
        return line[len(UTF8_BOM):] if at_byte == 0 and line.startswith(UTF8_BOM) else line
