"""Find the right reader for a structure or sequence file by its content.

Formats (``FORMATS``): a folder or tarball of ``.bpseq`` files, a folder of ``.ct`` files, one
``ct`` or ``bpseq`` file, a dot-bracket FASTA (``>id``, sequence, structure), the CSV form
``id,sequence,structure,base_pairs`` (bpRNA's) and, for sequences only, plain FASTA. A file's
format is sniffed from its first lines (gzip or not, whatever its name: ``.fas``, ``.fna``,
``.dbn``, ``.dot``, ``.db`` all work); the extension is only a hint, used when the content
does not decide (an empty file, say) so that the named format's reader reports what is wrong.

Used for decontaminating training data, for the held-out evaluation (so both read benchmarks the
same way) and for ``predict``'s input (``iter_input_sequences``: any of these formats).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from genesis_rna import structures
from genesis_rna.errors import InputFileError
from genesis_rna.seqio import read_fasta, text_lines

FORMATS = ("bpseq_archive", "ct_folder", "bpseq", "ct", "csv", "dot_bracket_fasta", "fasta")
STRUCTURE_FORMATS = FORMATS[:-1]
# Extensions, as hints only (``sniff_format``). FASTA-like names may hold either FASTA kind.
_HINTS = {
    ".bpseq": "bpseq", ".ct": "ct", ".csv": "csv", ".dbn": "dot_bracket_fasta",
    ".db": "dot_bracket_fasta", ".dot": "dot_bracket_fasta", ".fa": "fasta", ".fasta": "fasta",
    ".fas": "fasta", ".fna": "fasta", ".ffn": "fasta", ".frn": "fasta",
}
UNKNOWN_FORMAT = (
    "unknown structure format; use a folder/tarball of .bpseq files, .ct files, one .bpseq or "
    ".ct file, a dot-bracket FASTA (>id, sequence line, structure line) or a CSV with "
    "id,sequence,structure,base_pairs"
)
_SNIFF_LINES = 200  # content lines looked at; a FASTA record's body may span many lines
_BRACKET_CHARS = frozenset("()[]{}<>.")


def _hint(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    return _HINTS.get(Path(name).suffix)


def _is_structure_line(text: str) -> bool:
    """A dot-bracket line (an RNAfold energy after it allowed): structure characters only, at
    least one of ``()[]{}<>.`` (a line of letters alone is a sequence)."""
    token = text.split()[0] if text.split() else ""
    return bool(token) and set(token) <= structures.STRUCTURE_CHARS and bool(
        set(token) & _BRACKET_CHARS)


def _is_int(token: str) -> bool:
    return token.lstrip("-").isdigit()


def _sniff_text(lines: list[str], hint: str | None) -> str | None:
    content = [t.strip() for t in lines if t.strip() and not t.lstrip().startswith("#")]
    if not content:
        return None
    first = content[0]
    if first.startswith(">"):
        body: list[str] = []
        for text in content[1:]:
            if text.startswith(">"):
                break
            body.append(text)
        else:
            if len(lines) == _SNIFF_LINES and hint in ("fasta", "dot_bracket_fasta"):
                return hint  # the first record runs past the lines read: the name decides
        return "dot_bracket_fasta" if len(body) >= 2 and _is_structure_line(body[-1]) else "fasta"
    header = [h.strip().lower() for h in first.split(",")]
    if "id" in header and "sequence" in header:
        return "csv"
    rows = [t.split() for t in content if _is_int(t.split()[0])]
    if not rows:
        return None
    if len(rows[0]) == 3 and _is_int(rows[0][2]):
        return "bpseq"
    if len(rows) >= 2 and len(rows[1]) >= 6 and all(_is_int(rows[1][k]) for k in (0, 2, 3, 4)):
        return "ct"
    return None


def sniff_format(path: str | Path) -> str:
    """The format (one of ``FORMATS``) of a file or folder, from its content.

    Raises ``InputFileError`` naming the file when neither its content nor its name says.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "file or folder not found")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        if any(p.suffix.lower() == ".bpseq" for p in files):
            return "bpseq_archive"
        if any(p.suffix.lower() == ".ct" for p in files):
            return "ct_folder"
        raise InputFileError(path, "folder holds no .bpseq or .ct files")
    try:
        is_tar = tarfile.is_tarfile(path)
    except OSError:  # a corrupt gzip stream: not a tarball; the text readers say what it is
        is_tar = False
    if is_tar:
        return "bpseq_archive"
    try:
        lines = [text for _, text in islice(text_lines(path), _SNIFF_LINES)]
    except InputFileError:
        lines = []  # binary or undecodable: the hinted reader (if any) names the fault
    found = _sniff_text(lines, _hint(path)) or _hint(path)
    if found is None:
        raise InputFileError(path, UNKNOWN_FORMAT)
    return found


def iter_benchmark_records(path: str | Path) -> Iterator[structures.StructureRecord]:
    """Structure records of a file or folder in any of ``STRUCTURE_FORMATS`` (sniffed)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "benchmark file or folder not found")
    kind = sniff_format(path)
    if kind == "bpseq_archive":
        yield from structures.iter_bpseq_archive(path)
    elif kind == "ct_folder":
        for ct in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".ct"):
            yield from structures.read_ct(ct, family=structures.family_from_filename(ct.name))
    elif kind == "csv":
        yield from structures.read_structure_csv(path)
    elif kind == "ct":
        yield from structures.read_ct(path)
    elif kind == "bpseq":
        yield from structures.read_bpseq(path)
    elif kind == "dot_bracket_fasta":
        yield from structures.read_dot_bracket_fasta(path)
    else:
        raise InputFileError(path, "a FASTA without structure lines; " + UNKNOWN_FORMAT)


@dataclass(frozen=True)
class InputRecord:
    """One record of a sequence input, before normalization (``predict`` normalizes)."""

    id: str
    sequence: str  # as written (joined lines)
    line: int | None  # 1-based header line (FASTA kinds), else None
    error: str | None = None  # why the record cannot be used (its id may be empty)


def iter_input_sequences(path: str | Path) -> Iterator[InputRecord]:
    """The sequences of a FASTA or of any structure file (structures are ignored), one record at
    a time. A FASTA-kind record that is malformed (no id, a structure line that does not fit)
    comes back with its ``error`` so a caller can skip it; file-level faults raise."""
    path = Path(path)
    kind = sniff_format(path)
    source = str(path)
    if kind == "fasta":
        for rec in read_fasta(path):
            words = rec.title.split()
            yield InputRecord(words[0] if words else "", rec.sequence, rec.line,
                              None if words else "header without an id")
    elif kind == "dot_bracket_fasta":
        for rec in read_fasta(path, comment="#", keep_lines=True):
            try:
                r = structures.dot_bracket_record(rec, source)
            except InputFileError as exc:
                words = rec.title.split()
                yield InputRecord(words[0] if words else "", rec.sequence, rec.line,
                                  str(exc).removeprefix(f"{source}:{rec.line}: "))
            else:
                yield InputRecord(r.id, r.sequence, rec.line)
    else:
        for r in iter_benchmark_records(path):
            yield InputRecord(r.id, r.sequence, None)
