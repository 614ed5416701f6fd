"""The line screen between a CSV file and pyarrow's CSV reader (``CsvScreen``).

A little over 400 lines: the screen also logs where its reads end (for a resume's seek),
which needs the same per-chunk state as the screening itself."""

from __future__ import annotations

import io
import re
import secrets
from collections import Counter, deque
from dataclasses import dataclass
from typing import IO

import pyarrow.csv as pa_csv

from agora.errors import SourceRecordError
from agora.sources._text import RAW_CAP, UTF8_BOM, read_line
from agora.sources.identity import PrefixHash

__all__ = ["CsvScreen", "ReadEnd", "ScreenedLine", "check_header_names", "screen_for"]

#: Bytes screened at a time (then extended to a whole line). Independent of pyarrow's
#: block size: small enough that the Python side holds little, big enough that the
#: per-chunk overhead vanishes next to parsing.
SCREEN_CHUNK = 64 << 10


@dataclass(frozen=True)
class ScreenedLine:
    """A line kept from pyarrow: where it was, its (capped) bytes, length, and why."""

    line: int
    raw: bytes
    total: int
    reason: str


@dataclass(frozen=True)
class ReadEnd:
    """The end of one read pyarrow made, at a line end: ``records`` data records (non-blank
    lines after the header) handed over before it, and the file ``byte`` offset and ``line``
    count just after it — where a later run may seek to read on from there."""

    records: int
    byte: int
    line: int


_BLANK = re.compile(rb"\n\r?\n")


def blank_lines(data: bytes, start: int, end: int) -> int:
    """How many complete lines of ``data[start:end]`` (``start`` is a line start) are blank
    — empty, or a lone ``\\r`` before the ``\\n`` — the lines pyarrow skips."""
    if _BLANK.search(data, start, end) is None and not data.startswith((b"\n", b"\r\n"), start, end):
        return 0  # the common case: one pass at C speed (a regex beats two finds here)
    lines = data[start:end].split(b"\n")
    return sum(1 for line in lines[:-1] if line in (b"", b"\r"))


def has_odd_quote_line(data: bytes, quote: bytes) -> bool:
    """Whether any line of ``data`` holds an odd number of ``quote`` bytes (one byte).

    Everything but quotes and line ends is deleted, leaving each line as a run of quotes;
    removing quote pairs then leaves a quote exactly where a run was odd. Two passes at
    C speed over the chunk instead of a Python loop over its lines."""
    runs = data.translate(None, _deleting_all_but(quote))
    return quote in runs.replace(quote + quote, b"")


_DELETE_TABLES: dict[bytes, bytes] = {}


def _deleting_all_but(quote: bytes) -> bytes:
    table = _DELETE_TABLES.get(quote)
    if table is None:
        keep = {quote[0], ord("\n")}
        table = _DELETE_TABLES[quote] = bytes(b for b in range(256) if b not in keep)
    return table


def ends_in_quotes(line: bytes, delimiter: bytes, quote: bytes) -> bool:
    """Whether ``line`` ends inside a quoted field, lexed as pyarrow (and ``csv``) do: a
    quote opens a field only at its start, a doubled quote inside one is a literal quote,
    and a quote in the middle of an unquoted field is just a character."""
    i, n = 0, len(line)
    while i < n:
        if line.startswith(quote, i):  # a quoted field: find its closing quote
            i += 1
            while True:
                j = line.find(quote, i)
                if j < 0:
                    return True
                if line.startswith(quote, j + 1):
                    i = j + 2  # a doubled quote stands for one
                    continue
                i = j + 1
                break
        k = line.find(delimiter, i)
        if k < 0:
            return False
        i = k + 1
    return False


class CsvScreen(io.RawIOBase):
    """A read-only stream over ``fh`` for ``pyarrow.csv.open_csv``.

    Lines are screened before pyarrow reads them: longer than ``max_record_bytes``, not
    UTF-8 (pyarrow would turn the whole column into ``binary``), or — when quoted fields
    may not span lines — holding an odd number of quote characters (an unterminated quote
    would swallow the rest of the file). Each such line is replaced by a *marker row*: the
    delimiter repeated more times than the table has columns plus a per-stream token and
    the screened line's index. pyarrow reports it to the invalid-row handler like any row
    with the wrong column count, in file order with every other malformed row, and
    ``lookup`` turns it back into the screened line. Line numbers are unchanged.

    Problems with the header line itself are not screened but recorded in ``fatal``; the
    stream then ends, and the source raises it after pyarrow returns.

    Every read ends at a line end when one fits in it, so pyarrow's blocks (one per read)
    end on whole lines. When ``lines_are_records`` (no quoted value may span lines, nothing
    skipped but the header on line 1), each read that ends at a line end is logged in
    ``ends`` with the records handed over before it: the source matches those counts
    against the rows pyarrow returned to find batch ends that are record starts. A bare
    carriage return (which pyarrow reads as a line end) turns the log off for good.

    ``seek``: ``(byte, line)`` of a line start to read on from — the header (line 1, when
    there is one) is still read from the top, unhashed, and then the file from ``byte``,
    numbered from ``line + 1``; ``hasher`` must hold the hash of the bytes before ``byte``.
    """

    def __init__(
        self,
        fh: IO[bytes],
        *,
        max_record_bytes: int,
        delimiter: bytes,
        quote: bytes | None,
        header_line: int | None,
        min_fields: int,
        hasher: PrefixHash,
        check_utf8: bool = True,
        lines_are_records: bool = False,
        seek: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self._fh = fh
        self._max = max_record_bytes
        self._delimiter = delimiter
        self._quote = quote
        self._header_line = header_line  # 1-based line holding the header, or None
        self._min_fields = min_fields
        # pyarrow reads the screen from an I/O thread of its own while the source takes
        # checkpoint fingerprints of this hash on another: it must be a shared one.
        self.hasher = hasher.shared()
        self._check_utf8 = check_utf8  # off when pyarrow transcodes another encoding
        self._token = b"agora-screened-" + secrets.token_hex(8).encode() + b"-"
        self._marker_width: int | None = None
        self._buffer = b""  # screened bytes not yet handed to pyarrow: _buffer[_offset:]
        self._offset = 0
        self._line = 0  # lines passed on so far
        self._at_start = True
        self.screened: dict[int, ScreenedLine] = {}  # until pyarrow reports their markers
        self._count = 0
        self.fatal: str | None = None
        # Read ends that are record starts, for the source (see the class docstring).
        self.exact = lines_are_records and header_line in (None, 1)
        self.ends: deque[ReadEnd] = deque()
        self._records = 0  # data records handed to pyarrow so far
        self._header_left = header_line == 1  # the header line is not a record
        self._partial = b""  # the start (two bytes at most) of a line handed over in part
        self._seek = seek
        # Where the chunk in _buffer came from: its file offset and line count at its
        # start and at its end.
        self._chunk: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._original: bytes | None = None  # the file's bytes of the chunk in _buffer

    def readable(self) -> bool:
        return True

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        filled = 0
        while filled < len(target) and self.fatal is None:
            if self._offset == len(self._buffer):
                self._buffer, self._offset = self._next_chunk(), 0
                if not self._buffer:
                    break
            start, room = self._offset, len(target) - filled
            n = len(self._buffer) - start
            if n > room:
                # Stop at the last line end that fits, so the block ends on a whole line;
                # only a line longer than the whole read is split.
                cut = self._buffer.rfind(b"\n", start, start + room)
                if cut < 0 and filled:
                    break
                n = cut + 1 - start if cut >= 0 else room
            target[filled:filled + n] = memoryview(self._buffer)[start:start + n]
            self._offset += n
            filled += n
            if self.exact:
                self._count_records(self._buffer, start, start + n)
            if self._offset < len(self._buffer):
                break  # the rest of the chunk starts the next read
        if self.exact and filled and not self._partial and target[filled - 1] == 10:
            self._log_end()
        return filled

    def _count_records(self, data: bytes, start: int, end: int) -> None:
        """Add the records among ``data[start:end]`` (handed to pyarrow) to the count."""
        if data.find(b"\r", start, end) >= 0 and (  # a memchr first: most files have no CR
            data.count(b"\r", start, end) != data.count(b"\r\n", start, end)
        ):
            self.exact = False  # pyarrow ends a line at a bare CR too: lines are not rows
            return
        first = data.find(b"\n", start, end)
        if first < 0:
            self._partial = (self._partial + data[start:start + 2])[:2]
            return
        head = self._partial + data[start:min(first, start + 2)]
        blank_head = head in (b"", b"\r")
        records = data.count(b"\n", start, end) - blank_head - blank_lines(data, first + 1, end)
        if self._header_left:
            self._header_left = False
            if blank_head:
                self.exact = False  # pyarrow would take a later line as the header
                return
            records -= 1
        self._records += records
        last = data.rfind(b"\n", start, end) + 1
        self._partial = data[last:min(end, last + 2)]

    def _log_end(self) -> None:
        file_start, line_start, file_end, line_end = self._chunk
        if self._offset == len(self._buffer):
            self.ends.append(ReadEnd(self._records, file_end, line_end))
            return
        original = self._original
        if original is None:
            return
        lines = self._buffer.count(b"\n", 0, self._offset)
        if original is self._buffer:
            byte = self._offset  # nothing screened: the bytes are the file's
        else:  # screened lines changed length: find the same line end in the file's bytes
            byte = 0
            for _ in range(lines):
                byte = original.index(b"\n", byte) + 1
        self.ends.append(ReadEnd(self._records, file_start + byte, line_start + lines))

    def lookup(self, text: str, *, forget: bool = False) -> ScreenedLine | None:
        """The screened line a marker row stands for (None for an ordinary row);
        ``forget`` drops it once its malformed record is made."""
        token = self._token.decode()
        at = text.find(token)
        if at < 0:
            return None
        index = int(text[at + len(token):].strip())
        return self.screened.pop(index) if forget else self.screened[index]

    # -- screening --------------------------------------------------------------------
    def _next_chunk(self) -> bytes:
        if self._seek is not None:
            return self._header_then_seek(*self._seek)
        file_start, line_start = self._fh.tell(), self._line
        data = self._fh.read(SCREEN_CHUNK)
        if not data:
            return b""
        self.hasher.update(data)
        cut_line: tuple[int, int] | None = None
        if not data.endswith(b"\n"):
            head, total, ended = read_line(self._fh, self._max, self.hasher.update)
            if len(head) < total:
                cut_line = (data.count(b"\n"), len(data) - (data.rfind(b"\n") + 1) + total)
            data += head
            if len(head) < total and ended:
                data += b"\n"  # the skipped tail held the line end
        out = self._screen(data, cut_line)
        # The file's own bytes, to map a line end inside a screened chunk to its offset
        # (not kept when a line was cut short: its skipped tail is not in ``data``).
        self._original = data if cut_line is None else None
        self._chunk = (file_start, line_start, self._fh.tell(), self._line)
        return out

    def _header_then_seek(self, byte: int, line: int) -> bytes:
        """The first chunk of a resumed read: the header line (not hashed: the hasher is
        already past it), after which the file is read from ``byte`` as line ``line + 1``."""
        self._seek = None
        header = b""
        if self._header_line is not None:
            self._fh.seek(0)
            head, total, ended = read_line(self._fh, self._max)
            cut = (0, total) if len(head) < total else None
            header = self._screen(head + (b"\n" if cut and ended else b""), cut)
        self._fh.seek(byte)
        self._line = line
        self._chunk, self._original = (byte, line, byte, line), None
        if self._header_line is None or self.fatal is not None:
            return self._next_chunk() if self.fatal is None else b""
        return header if header.endswith(b"\n") else header + b"\n"

    def _screen(self, data: bytes, cut_line: tuple[int, int] | None) -> bytes:
        first = self._line + 1
        self._line += data.count(b"\n") + (not data.endswith(b"\n"))
        header_here = self._header_line is not None and first <= self._header_line <= self._line
        need_utf8 = self._check_utf8 and not data.isascii()
        if need_utf8:
            try:
                data.decode("utf-8")
                need_utf8 = False
            except UnicodeDecodeError:
                pass
        quotes = self._quote is not None and self._quote in data
        long_lines = len(data) > self._max or cut_line is not None
        unsized = self._marker_width is None and self._header_line is None
        quote = self._quote
        if quotes and quote is not None and len(quote) == 1 and not has_odd_quote_line(data, quote):
            # Every line holds an even number of quotes, so none can leave a quoted field
            # open: the line loop below has nothing to find (the common case — quoted
            # text fields). A multi-byte quote takes the loop.
            quotes = False
        if not (need_utf8 or quotes or long_lines or header_here or unsized):
            return data
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            number = first + i
            if i == len(lines) - 1 and not line:
                break  # after the final line end
            total = cut_line[1] if cut_line is not None and cut_line[0] == i else len(line)
            problem = self._problem(line, total, need_utf8, number)
            if number == self._header_line:
                self._check_header(line, problem)
                if self.fatal is not None:
                    return b""
                continue
            if problem is not None:
                # Only what the DLQ record will carry is kept (see RAW_CAP).
                self.screened[self._count] = ScreenedLine(number, line[:RAW_CAP], total, problem)
                lines[i] = self._marker(self._count)
                self._count += 1
            elif self._marker_width is None and line.strip():
                self._marker_width = line.count(self._delimiter) + 2
        return b"\n".join(lines)

    def _problem(self, line: bytes, total: int, need_utf8: bool, number: int) -> str | None:
        if total > self._max:
            return f"line is {total} bytes, longer than max_record_bytes={self._max}"
        if need_utf8:
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"not UTF-8: {exc.reason} at byte {exc.start}"
        quote = self._quote
        # An odd count is cheap to spot; only then is the line lexed to be sure.
        if quote and line.count(quote) % 2 and ends_in_quotes(line, self._delimiter, quote):
            return "unterminated quoted field (a quote opens but does not close on its line)"
        return None

    def _check_header(self, line: bytes, problem: str | None) -> None:
        body = line.rstrip(b"\r")
        if b"\r" in body:
            problem = (
                "the header line holds a bare carriage return — the file seems to use "
                "CR-only line endings, which are not supported; convert them to LF (or CRLF)"
            )
        if problem is not None:
            self.fatal = f"cannot read the header: {problem}"
            return
        if self._marker_width is None:
            self._marker_width = body.removeprefix(UTF8_BOM).count(self._delimiter) + 2

    def _marker(self, index: int) -> bytes:
        # More fields than the table has columns, so pyarrow rejects the row as a
        # wrong-column-count row and hands it to the invalid-row handler in order.
        width = max(self._marker_width or 0, self._min_fields)
        return self._delimiter * width + self._token + str(index).encode()


def screen_for(
    fh: IO[bytes],
    ro: pa_csv.ReadOptions,
    po: pa_csv.ParseOptions,
    *,
    header: int | None,
    max_record_bytes: int,
    hasher: PrefixHash,
    seek: tuple[int, int] | None = None,
) -> CsvScreen:
    """The screen for a file read with pyarrow's read options ``ro`` and parse options ``po``."""
    return CsvScreen(
        fh,
        max_record_bytes=max_record_bytes,
        delimiter=po.delimiter.encode(),
        quote=(
            po.quote_char.encode()
            if po.quote_char and not po.newlines_in_values and not po.escape_char
            else None
        ),
        header_line=header,
        min_fields=len(ro.column_names) + 1,
        hasher=hasher,
        check_utf8=ro.encoding.lower().replace("-", "") == "utf8",
        # A line end ends a record only when no value may hold one and nothing but the
        # header is skipped; otherwise no record start is logged (a resume re-scans).
        lines_are_records=not (po.newlines_in_values or po.escape_char or ro.skip_rows
                               or ro.skip_rows_after_names),
        seek=seek,
    )


def check_header_names(source_name: str, path: str, names: list[str], header: int | None) -> None:
    """Refuse a header that repeats a column name: no row could be read faithfully."""
    dups = [name for name, n in Counter(names).items() if n > 1]
    if dups:
        raise SourceRecordError(
            source_name,
            f"{path}:{header}" if header else path,
            f"cannot read the header: it repeats the column name(s) {dups}; each column "
            f"needs its own name — rename the columns in the file (or in read_options)",
            hint=False,
        )
