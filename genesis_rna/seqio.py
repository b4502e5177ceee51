"""Reading input files: the one opener of plain or gzip files, numbered lines, FASTA records.

Gzip is recognised by its magic bytes, never by the file name (downloads and users name
files freely). Read failures become ``InputFileError`` naming the file and, where known, the
line: a truncated or corrupt gzip stream, bytes that are not UTF-8, binary data in a FASTA.

FASTA parsing is Biopython's ``SimpleFastaParser``, fed through a line source that counts
lines (so every record carries its 1-based header line), decodes strictly (binary input is an
error, not garbage sequences) and requires the first non-blank line to be a ``>`` header.
It streams: memory holds one record at a time.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from genesis_rna.errors import InputFileError

GZIP_MAGIC = b"\x1f\x8b"
# What gzip/zlib raise on a truncated or corrupt stream (BadGzipFile is an OSError).
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _gzip_error(path: str | Path, exc: Exception, line: int | None = None) -> InputFileError:
    return InputFileError(path, f"truncated or corrupt gzip data: {exc}", line)


@contextlib.contextmanager
def open_input(path: str | Path, *, text: bool = False) -> Iterator[IO]:
    """A binary (or, with ``text``, UTF-8 text with universal newlines) handle on ``path``,
    decompressed when the file starts with the gzip magic bytes.

    A missing file is an ``InputFileError``; so is a gzip error raised while the block reads
    (use ``numbered_lines`` to also get the line where it happened).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    with open(path, "rb") as raw:
        compressed = raw.peek(2)[:2] == GZIP_MAGIC
        with gzip.GzipFile(fileobj=raw, mode="rb") if compressed else contextlib.nullcontext(raw) as fh:
            handle = io.TextIOWrapper(fh, encoding="utf-8", newline=None) if text else fh
            try:
                yield handle
            except _GZIP_ERRORS as exc:
                raise _gzip_error(path, exc) from exc
            finally:
                handle.close()


def numbered_lines(fh: Iterable, path: str | Path) -> Iterator[tuple[int, str | bytes]]:
    """(1-based line number, line) of an open handle; read errors name the file and line.

    On a text handle a decoding error is reported "near" its line: the text layer decodes in
    chunks, so the exact line is not known.
    """
    it = iter(fh)
    n = 0
    while True:
        try:
            line = next(it)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise InputFileError(path, f"not UTF-8 text near line {n + 1}: {exc}") from exc
        except _GZIP_ERRORS as exc:
            raise _gzip_error(path, exc, n + 1) from exc
        n += 1
        yield n, line


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line ending) of a plain or gzip text file."""
    with open_input(path, text=True) as fh:
        for n, line in numbered_lines(fh, path):
            yield n, line.rstrip("\r\n")


@dataclass(frozen=True)
class FastaRecord:
    title: str  # the header line without '>' (id and description; see fasta.parse_header)
    sequence: str  # the body lines joined, spaces and line endings removed (not normalized)
    line: int  # 1-based line of the header
    lines: tuple[str, ...] = ()  # the stripped non-blank body lines, with keep_lines only


class _LineSource:
    """Lines of a FASTA for SimpleFastaParser, counted, strictly decoded and checked.

    The parser reads one header ahead before yielding a record, so each header's line number
    (and, with ``keep_lines``, the body lines after it) is queued here and the consumer pops
    one entry per record.
    """

    def __init__(self, fh: IO[bytes], path: Path, comment: str | None, keep_lines: bool):
        self.fh = fh
        self.path = path
        self.comment = comment
        self.keep_lines = keep_lines
        self.records: deque[tuple[int, list[str]]] = deque()
        # SimpleFastaParser loops over its handle twice; both loops must share one iterator.
        self._lines = self._read()

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def _read(self) -> Iterator[str]:
        started = False
        body: list[str] = []
        for n, raw in numbered_lines(self.fh, self.path):
            if b"\x00" in raw:
                raise InputFileError(self.path, "binary data (NUL byte): not a FASTA file", n)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputFileError(
                    self.path, "undecodable bytes (not UTF-8 text): not a FASTA file", n
                ) from None
            if n == 1:
                text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark
            if self.comment is not None and text.lstrip().startswith(self.comment):
                continue
            if not started:
                if not text.strip():
                    continue
                if not text.startswith(">"):
                    raise InputFileError(
                        self.path,
                        f"not a FASTA file: expected a '>' header, line starts with {text[:20]!r}",
                        n,
                    )
                started = True
            if text.startswith(">"):
                body = []
                self.records.append((n, body))
            elif self.keep_lines and text.strip():
                body.append(text.strip())
            yield text


def read_fasta(path: str | Path, *, comment: str | None = None,
               keep_lines: bool = False) -> Iterator[FastaRecord]:
    """Stream the records of a plain or gzip FASTA file.

    ``comment``: lines starting with it (after leading blanks) are skipped, e.g. ``#`` in
    dot-bracket FASTA; plain FASTA has none. ``keep_lines``: also return the body lines (for
    formats whose line breaks mean something). A file without records is an error, as is
    anything before the first header but blank lines.
    """
    # Imported here: Bio.SeqIO pulls in all of Biopython's parsers (about 0.5 s), a cost that
    # modules needing only the opener (structures, split) should not pay at import.
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    path = Path(path)
    found = False
    with open_input(path) as fh:
        source = _LineSource(fh, path, comment, keep_lines)
        for title, sequence in SimpleFastaParser(source):
            line, body = source.records.popleft()
            found = True
            yield FastaRecord(title, sequence, line, tuple(body))
    if not found:
        raise InputFileError(path, "no FASTA records (empty file?)")
