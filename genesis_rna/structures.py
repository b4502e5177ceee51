"""Secondary-structure formats in one place: dot-bracket, bpseq, CT, dot-bracket FASTA, the
``id,sequence,structure,base_pairs`` CSV, provided-structure tables, and bpRNA element labels.

Conventions shared by every function here:
- pairs are 0-based ``(i, j)`` tuples with ``i < j``, sorted, each position in at most one pair;
- files may be gzip-compressed (detected by magic bytes, not by name);
- malformed input raises ``InputFileError`` naming the file and, where known, the line;
- record sequences are uppercased with T -> U (the RNA alphabet the rest of the project
  uses); other letters are kept as written so that nothing is changed silently beyond case.
"""

from __future__ import annotations

import csv
import gzip
import json
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from genesis_rna.errors import InputFileError
from genesis_rna.seqio import FastaRecord, numbered_lines, open_input, read_fasta, text_lines
from genesis_rna.sequences import STRUCTURE_RECORDS, normalize_sequence

Pair = tuple[int, int]

# Bracket pages in the order pairs_to_dot_bracket uses them; letters Aa..Zz follow.
_BRACKETS: list[tuple[str, str]] = [("(", ")"), ("[", "]"), ("{", "}"), ("<", ">")]
_BRACKETS += [(chr(c), chr(c).lower()) for c in range(ord("A"), ord("Z") + 1)]
_OPENERS = {o: c for o, c in _BRACKETS}
_CLOSERS = {c: o for o, c in _BRACKETS}
UNPAIRED_CHARS = frozenset(".,_-:~")
STRUCTURE_CHARS = frozenset(_OPENERS) | frozenset(_CLOSERS) | UNPAIRED_CHARS
ELEMENT_ALPHABET = "EHSBIM"


@dataclass(frozen=True)
class StructureRecord:
    """One sequence with its (curated or provided) secondary structure."""

    id: str
    sequence: str
    pairs: list[Pair]
    family: str | None = None

    @property
    def dot_bracket(self) -> str:
        return pairs_to_dot_bracket(self.pairs, len(self.sequence))


# --------------------------------------------------------------------------------------------
# Dot-bracket <-> pairs


def parse_dot_bracket(db: str, *, source: str = "<string>", line: int | None = None) -> list[Pair]:
    """0-based sorted pairs of a dot-bracket string.

    Brackets ``()[]{}<>`` and letter pairs ``Aa``..``Zz`` (uppercase opens) each form their own
    stack, so pseudoknots of any order parse. Unbalanced brackets and unknown characters raise
    ``InputFileError(source, ..., line)`` naming the 1-based position.
    """
    stacks: dict[str, list[int]] = {}
    pairs: list[Pair] = []
    for k, ch in enumerate(db):
        if ch in UNPAIRED_CHARS:
            continue
        if ch in _OPENERS:
            stacks.setdefault(ch, []).append(k)
        elif ch in _CLOSERS:
            stack = stacks.get(_CLOSERS[ch])
            if not stack:
                raise InputFileError(
                    source,
                    f"unbalanced structure: '{ch}' at position {k + 1} (1-based) has no "
                    f"opening '{_CLOSERS[ch]}'",
                    line,
                )
            pairs.append((stack.pop(), k))
        else:
            raise InputFileError(
                source,
                f"unknown character {ch!r} at position {k + 1} (1-based) in dot-bracket "
                "structure (allowed: ()[]{}<>, letter pairs Aa..Zz, unpaired .,_-:~)",
                line,
            )
    open_left = [(k, ch) for ch, stack in stacks.items() for k in stack]
    if open_left:
        k, ch = min(open_left)
        raise InputFileError(
            source,
            f"unbalanced structure: '{ch}' at position {k + 1} (1-based) is never closed",
            line,
        )
    pairs.sort()
    return pairs


def _partners(pairs: Iterable[Pair], length: int) -> list[int]:
    """Partner array (-1 = unpaired); ValueError on out-of-range or conflicting pairs."""
    partner = [-1] * length
    for i, j in pairs:
        if not (0 <= i < length and 0 <= j < length) or i == j:
            raise ValueError(f"invalid pair ({i}, {j}) for length {length}")
        if partner[i] not in (-1, j) or partner[j] not in (-1, i):
            raise ValueError(f"pair ({i}, {j}) conflicts with another pair of position {i} or {j}")
        partner[i], partner[j] = j, i
    return partner


def _normalized(pairs: Iterable[Pair]) -> list[Pair]:
    return sorted({(min(i, j), max(i, j)) for i, j in pairs})


def assign_pages(pairs: Iterable[Pair]) -> dict[Pair, int]:
    """Greedy page of each pair: page 0 is nested, each later page nested within itself.

    Pairs are taken by 5' position and put on the first page where they cross nothing. Each
    page keeps a stack of the closing positions of its open pairs (innermost on top), so a
    pair fits when it closes before the innermost open pair: O(L * pages).
    """
    stacks: list[list[int]] = []
    pages: dict[Pair, int] = {}
    for i, j in _normalized(pairs):
        for p, stack in enumerate(stacks):
            while stack and stack[-1] < i:
                stack.pop()
            if not stack or j < stack[-1]:
                stack.append(j)
                pages[(i, j)] = p
                break
        else:
            stacks.append([j])
            pages[(i, j)] = len(stacks) - 1
    return pages


def split_pseudoknots(pairs: Iterable[Pair]) -> tuple[list[Pair], list[Pair]]:
    """(nested pairs, pseudoknotted pairs): page 0 of the greedy assignment, and the rest."""
    pages = assign_pages(pairs)
    nested = sorted(p for p, page in pages.items() if page == 0)
    knotted = sorted(p for p, page in pages.items() if page > 0)
    return nested, knotted


def pairs_to_dot_bracket(pairs: Iterable[Pair], length: int) -> str:
    """Dot-bracket of ``pairs``: nested pairs as ``()``, crossing ones ``[]``, ``{}``, ``<>``,
    then letter pairs ``Aa``.. (greedy page assignment, see ``assign_pages``)."""
    pairs = _normalized(pairs)
    _partners(pairs, length)  # validates range and one partner per base
    chars = ["."] * length
    for (i, j), page in assign_pages(pairs).items():
        if page >= len(_BRACKETS):
            raise ValueError(f"structure needs {page + 1} bracket pages; at most {len(_BRACKETS)}")
        chars[i], chars[j] = _BRACKETS[page]
    return "".join(chars)


# --------------------------------------------------------------------------------------------
# Writers (what ``predict`` writes; each reads back with the reader of its format below)


def _energy_text(energy: float | None) -> str:
    return "" if energy is None else f"{energy:.2f}"


def format_dot_bracket(rec_id: str, sequence: str, pairs: Iterable[Pair],
                       energy: float | None = None) -> str:
    """One dot-bracket FASTA record, the free energy after the structure as RNAfold prints it
    (``(((...))) ( -1.20)``; ``read_dot_bracket_fasta`` ignores it)."""
    db = pairs_to_dot_bracket(pairs, len(sequence))
    tail = "" if energy is None else f" ({energy:6.2f})"
    return f">{rec_id}\n{sequence}\n{db}{tail}\n"


def format_ct(rec_id: str, sequence: str, pairs: Iterable[Pair],
              energy: float | None = None) -> str:
    """One CT structure (RNAstructure's layout: ``N  ENERGY = E  title``, then per base
    index, base, previous, next, partner, natural index; 0 = none). CT files may hold several
    such blocks one after the other (``read_ct`` reads them all)."""
    n = len(sequence)
    partner = _partners(_normalized(pairs), n)
    head = f"{n:5d}  ENERGY = {_energy_text(energy)}  {rec_id}" if energy is not None \
        else f"{n:5d}  {rec_id}"
    rows = [f"{k + 1:5d} {base} {k:5d} {(k + 2) % (n + 1):5d} {partner[k] + 1:5d} {k + 1:5d}"
            for k, base in enumerate(sequence)]
    return "\n".join([head, *rows]) + "\n"


def format_bpseq(rec_id: str, sequence: str, pairs: Iterable[Pair],
                 energy: float | None = None) -> str:
    """One bpseq structure (``index base partner``, 1-based, 0 = unpaired), with bpRNA-style
    ``#Name:`` / ``#Length:`` (and ``#Energy:``) comment lines first. One structure per file."""
    n = len(sequence)
    partner = _partners(_normalized(pairs), n)
    head = [f"#Name: {rec_id}", f"#Length: {n}"]
    if energy is not None:
        head.append(f"#Energy: {_energy_text(energy)} kcal/mol (ViennaRNA)")
    rows = [f"{k + 1} {base} {partner[k] + 1}" for k, base in enumerate(sequence)]
    return "\n".join([*head, *rows]) + "\n"


# --------------------------------------------------------------------------------------------
# bpRNA element labels


def element_labels(pairs: Iterable[Pair], length: int) -> str:
    """bpRNA per-position labels (Danaee et al. 2018) over ``EHSBIM``.

    S: paired (pseudoknotted pairs included). Loops are classified on the nested subset
    (page 0): an unpaired base takes the type of the loop closed by its innermost enclosing
    pair (i, j), by the number of branches (pairs directly inside it): 0 -> H; 1 -> B when the
    unpaired bases lie on one side of the branch only, I when on both; >= 2 -> M; no enclosing
    pair -> E (exterior loop and dangling ends). Bases of pseudoknotted pairs count as unpaired
    for this classification (they sit in the nested structure's loops) but are labelled S.
    Each base is visited once by the loop that contains it, so the cost is O(L log L) (sort).
    """
    pairs = _normalized(pairs)
    _partners(pairs, length)
    nested, knotted = split_pseudoknots(pairs)
    partner = _partners(nested, length)
    labels = ["E"] * length
    for i, j in pairs:
        labels[i] = labels[j] = "S"
    for i, j in nested:
        unpaired: list[int] = []
        branches: list[Pair] = []
        k = i + 1
        while k < j:
            if partner[k] > k:
                branches.append((k, partner[k]))
                k = partner[k] + 1
            else:
                unpaired.append(k)
                k += 1
        if not unpaired:
            continue
        if not branches:
            kind = "H"
        elif len(branches) == 1:
            bi, bj = branches[0]
            kind = "B" if (bi - i - 1 == 0 or j - bj - 1 == 0) else "I"
        else:
            kind = "M"
        for k in unpaired:
            if labels[k] != "S":
                labels[k] = kind
    return "".join(labels)


# --------------------------------------------------------------------------------------------
# Low-level file access


def _guarded(fh: IO[str], source: str) -> Iterator[str]:
    """The lines of an ``open_input`` text handle, read errors naming the file (for csv)."""
    return (line for _, line in numbered_lines(fh, source))


def _rna(seq: str) -> str:
    return normalize_sequence(seq, STRUCTURE_RECORDS).sequence


def family_from_filename(name: str) -> str | None:
    """ArchiveII convention: the family is the file-name prefix before the first '_'."""
    stem = Path(name).name
    return stem.split("_", 1)[0] if "_" in stem else None


def _strip_suffix(name: str, suffix: str) -> str:
    base = Path(name).name
    return base[: -len(suffix)] if base.lower().endswith(suffix) else Path(base).stem


def _int(token: str, what: str, source: str, line: int) -> int:
    try:
        return int(token)
    except ValueError:
        raise InputFileError(source, f"{what} {token!r} is not an integer", line) from None


def _check_partners(partner: list[int], lines: list[int], source: str) -> list[Pair]:
    """Validate a 1-based partner table (0 = unpaired); return 0-based pairs."""
    n = len(partner)
    pairs: list[Pair] = []
    for k, p in enumerate(partner, start=1):
        if p == 0:
            continue
        if not 1 <= p <= n:
            raise InputFileError(source, f"partner {p} of base {k} is outside 1..{n}", lines[k - 1])
        if p == k:
            raise InputFileError(source, f"base {k} pairs with itself", lines[k - 1])
        if partner[p - 1] != k:
            raise InputFileError(
                source,
                f"asymmetric pairing: base {k} pairs with {p} but base {p} pairs with "
                f"{partner[p - 1]}",
                lines[k - 1],
            )
        if k < p:
            pairs.append((k - 1, p - 1))
    return pairs


# --------------------------------------------------------------------------------------------
# bpseq


def _parse_bpseq(
    lines: Iterable[tuple[int, str]], source: str, rec_id: str, family: str | None
) -> StructureRecord:
    bases: list[str] = []
    partner: list[int] = []
    line_of: list[int] = []
    for n, raw in lines:
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        if not bases and not fields[0].lstrip("-").isdigit() and ":" in text:
            continue  # header lines of CRW-style files ("Filename: ...", "Organism: ...")
        if len(fields) != 3:
            raise InputFileError(
                source, f"expected 3 columns 'index base partner', got {len(fields)}: {text!r}", n
            )
        index = _int(fields[0], "index", source, n)
        p = _int(fields[2], "partner", source, n)
        if index != len(bases) + 1:
            raise InputFileError(
                source, f"index {index} where {len(bases) + 1} was expected (indices run 1, 2, ...)", n
            )
        bases.append(fields[1])
        partner.append(p)
        line_of.append(n)
    if not bases:
        raise InputFileError(source, "no 'index base partner' lines")
    pairs = _check_partners(partner, line_of, source)
    return StructureRecord(rec_id, _rna("".join(bases)), pairs, family)


def read_bpseq(
    path_or_text: str | Path, *, id: str | None = None, family: str | None = None
) -> list[StructureRecord]:
    """One bpseq structure (``index base partner``, 1-based, 0 = unpaired) as a 1-item list.

    A ``str`` containing a newline is parsed as bpseq text; anything else is a path (the record
    id defaults to the file name without ``.bpseq``). Checks consecutive indices, partners in
    range and symmetric pairing.
    """
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        lines = enumerate(path_or_text.splitlines(), start=1)
        return [_parse_bpseq(lines, "<string>", id or "<string>", family)]
    path = Path(path_or_text)
    rec_id = id or _strip_suffix(path.name, ".bpseq")
    return [_parse_bpseq(text_lines(path), str(path), rec_id, family)]


def iter_bpseq_archive(path: str | Path) -> Iterator[StructureRecord]:
    """Every ``.bpseq`` file of a folder (sorted) or tarball (archive order, streamed).

    The family is the file-name prefix before the first ``_`` (ArchiveII convention).
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "bpseq folder or archive not found")
    found = 0
    if path.is_dir():
        for f in sorted(path.rglob("*.bpseq")):
            found += 1
            yield from read_bpseq(f, family=family_from_filename(f.name))
    else:
        try:
            with tarfile.open(path, mode="r|*") as tar:
                for member in tar:
                    if not (member.isfile() and member.name.lower().endswith(".bpseq")):
                        continue
                    found += 1
                    source = f"{path}[{member.name}]"
                    fh = tar.extractfile(member)
                    assert fh is not None  # regular files always have data
                    # One member at a time is read whole (bpseq files are small); stream-mode
                    # members cannot be wrapped in a text reader.
                    try:
                        text = fh.read().decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise InputFileError(source, f"not UTF-8 text: {exc}") from None
                    lines = enumerate(text.splitlines(), start=1)
                    name = Path(member.name).name
                    yield _parse_bpseq(
                        lines, source, _strip_suffix(name, ".bpseq"), family_from_filename(name)
                    )
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise InputFileError(path, f"unreadable or truncated archive: {exc}") from exc
    if not found:
        raise InputFileError(path, "holds no .bpseq files")


# --------------------------------------------------------------------------------------------
# CT


def read_ct(path: str | Path, *, family: str | None = None) -> list[StructureRecord]:
    """Structures of a CT file: a header ``N title`` then N lines of 6 columns
    (index, base, previous, next, partner, natural index); several may follow each other.

    The id is the file name without ``.ct``, suffixed ``_1``, ``_2``.. when the file holds more
    than one structure.
    """
    path = Path(path)
    source = str(path)
    stem = _strip_suffix(path.name, ".ct")
    records: list[tuple[str, list[Pair]]] = []
    lines = text_lines(path)
    for n, raw in lines:
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        head = text.split()
        count = _int(head[0], "CT header length", source, n)
        if count <= 0:
            raise InputFileError(source, f"CT header length {count} must be positive", n)
        bases: list[str] = []
        partner: list[int] = []
        line_of: list[int] = []
        for m, row in lines:
            fields = row.split()
            if not fields:
                continue
            if len(fields) < 6:
                raise InputFileError(
                    source, f"expected 6 CT columns (index base prev next partner natural), "
                    f"got {len(fields)}: {row.strip()!r}", m,
                )
            index = _int(fields[0], "index", source, m)
            if index != len(bases) + 1:
                raise InputFileError(
                    source, f"index {index} where {len(bases) + 1} was expected", m
                )
            bases.append(fields[1])
            partner.append(_int(fields[4], "partner", source, m))
            line_of.append(m)
            if len(bases) == count:
                break
        if len(bases) < count:
            raise InputFileError(
                source, f"header at line {n} announces {count} bases; file ends after {len(bases)}"
            )
        records.append(("".join(bases), _check_partners(partner, line_of, source)))
    if not records:
        raise InputFileError(source, "no CT structure found (empty file?)")
    if len(records) == 1:
        return [StructureRecord(stem, _rna(records[0][0]), records[0][1], family)]
    return [
        StructureRecord(f"{stem}_{k}", _rna(seq), pairs, family)
        for k, (seq, pairs) in enumerate(records, start=1)
    ]


# --------------------------------------------------------------------------------------------
# dot-bracket FASTA


def read_dot_bracket_fasta(path: str | Path) -> Iterator[StructureRecord]:
    """Records of a dot-bracket FASTA: ``>id``, sequence line(s), structure line(s).

    Blank and ``#`` lines are skipped; a trailing token after whitespace on a structure line
    (ViennaRNA's ``(-12.30)`` energy) is ignored. When sequence and structure span several
    lines, the split is where the two halves have equal length.
    """
    source = str(path)
    for rec in read_fasta(path, comment="#", keep_lines=True):
        yield dot_bracket_record(rec, source)


def dot_bracket_record(rec: FastaRecord, source: str) -> StructureRecord:
    """The structure record of one dot-bracket FASTA record (``seqio.read_fasta`` with
    ``keep_lines``); ``InputFileError`` naming the file and header line when it is malformed."""
    n = rec.line
    words = rec.title.split()
    if not words:
        raise InputFileError(source, "empty header (no id)", n)
    body = [text.split()[0] for text in rec.lines]
    if len(body) < 2:
        raise InputFileError(source, f"record {words[0]!r} needs a sequence and a structure line", n)
    total = sum(len(b) for b in body)
    prefix = 0
    for k in range(1, len(body)):
        prefix += len(body[k - 1])
        if 2 * prefix == total:
            break
    else:
        if len(body) == 2:
            raise InputFileError(
                source,
                f"record {words[0]!r}: structure length {len(body[1])} != sequence length "
                f"{len(body[0])}",
                n,
            )
        raise InputFileError(
            source, f"record {words[0]!r}: cannot split lines into sequence and structure "
            "of equal length", n,
        )
    seq = "".join(body[:k])
    db = "".join(body[k:])
    pairs = parse_dot_bracket(db, source=source, line=n)
    return StructureRecord(words[0], _rna(seq), pairs, None)


# --------------------------------------------------------------------------------------------
# CSV forms


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a delimited file; csv errors become InputFileError."""
    source = str(path)
    with open_input(path, text=True) as fh:
        reader = csv.DictReader(_guarded(fh, source), delimiter=delimiter)
        try:
            for row in reader:
                if None in row:
                    raise InputFileError(source, "row has more fields than the header", reader.line_num)
                yield reader.line_num, row
        except csv.Error as exc:
            raise InputFileError(source, f"malformed CSV: {exc}", reader.line_num) from exc


def _header(path: Path, delimiter: str) -> list[str]:
    with open_input(path, text=True) as fh:
        first = next(_guarded(fh, str(path)), "")
    return next(csv.reader([first], delimiter=delimiter), [])


def _pairs_from_json(text: str, length: int, source: str, line: int) -> list[Pair]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(source, f"base_pairs is not valid JSON: {exc}", line) from None
    if not isinstance(raw, list):
        raise InputFileError(source, "base_pairs must be a JSON list of [i, j] pairs", line)
    pairs: set[Pair] = set()
    for item in raw:
        if not (
            isinstance(item, list) and len(item) == 2 and all(type(v) is int for v in item)
        ):
            raise InputFileError(source, f"base_pairs entry {item!r} is not an [i, j] pair", line)
        i, j = item
        if not (1 <= i <= length and 1 <= j <= length) or i == j:
            raise InputFileError(
                source, f"base pair {item} is outside 1..{length} or pairs a base with itself", line
            )
        pairs.add((min(i, j) - 1, max(i, j) - 1))  # exact repeats in the list carry no information
    result = sorted(pairs)
    try:
        _partners(result, length)
    except ValueError:
        seen: dict[int, Pair] = {}
        for p in result:
            for k in p:
                if k in seen:
                    raise InputFileError(
                        source,
                        f"base {k + 1} is in two pairs: {[x + 1 for x in seen[k]]} and "
                        f"{[x + 1 for x in p]}",
                        line,
                    ) from None
                seen[k] = p
        raise
    return result


def read_structure_csv(path: str | Path) -> Iterator[StructureRecord]:
    """Records of the CSV form ``id,sequence,structure,base_pairs[,len]`` (gzip ok).

    ``base_pairs`` (a JSON list of 1-based ``[i, j]``) is preferred when present since it may
    hold pairs dot-bracket cannot; otherwise ``structure`` is parsed. A ``structure`` or
    ``len`` that disagrees with the sequence length is an error naming the line.
    """
    path = Path(path)
    source = str(path)
    columns = _header(path, ",")
    for col in ("id", "sequence"):
        if col not in columns:
            raise InputFileError(source, f"missing column {col!r}; found {columns}", 1)
    if "structure" not in columns and "base_pairs" not in columns:
        raise InputFileError(source, f"needs a 'structure' or 'base_pairs' column; found {columns}", 1)
    for n, row in _csv_rows(path, ","):
        seq = (row.get("sequence") or "").strip()
        rec_id = (row.get("id") or "").strip()
        if not rec_id or not seq:
            raise InputFileError(source, "empty id or sequence", n)
        structure = (row.get("structure") or "").strip()
        if structure and len(structure) != len(seq):
            raise InputFileError(
                source, f"{rec_id}: structure length {len(structure)} != sequence length {len(seq)}", n
            )
        declared = (row.get("len") or "").strip()
        if declared and _int(declared, "len", source, n) != len(seq):
            raise InputFileError(source, f"{rec_id}: len {declared} != sequence length {len(seq)}", n)
        bp_text = (row.get("base_pairs") or "").strip()
        if bp_text:
            pairs = _pairs_from_json(bp_text, len(seq), source, n)
        elif structure:
            pairs = parse_dot_bracket(structure, source=source, line=n)
        else:
            raise InputFileError(source, f"{rec_id}: neither base_pairs nor structure given", n)
        yield StructureRecord(rec_id, _rna(seq), pairs, None)


def _delimiter(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return ","
    if name.endswith((".tsv", ".tab")):
        return "\t"
    with open_input(path, text=True) as fh:
        first = next(_guarded(fh, str(path)), "")
    return "\t" if "\t" in first else ","


def read_provided_structures(path: str | Path) -> Iterator[tuple[str, str]]:
    """(id, dot-bracket) pairs of a TSV/CSV (gzip ok) with columns ``id`` and ``structure``
    (or ``dot_bracket``); other columns are ignored. Structures are returned as written (the
    caller parses them, so one bad row can be rejected without failing the file).
    An id may occur more than once (e.g. Rfam seeds shared by two families).
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise InputFileError(path, "provided structure file not found")
    delimiter = _delimiter(path)
    columns = _header(path, delimiter)
    struct_col = next((c for c in ("structure", "dot_bracket") if c in columns), None)
    if "id" not in columns or struct_col is None:
        raise InputFileError(
            source, f"needs columns 'id' and 'structure' (or 'dot_bracket'); found {columns}", 1
        )
    for n, row in _csv_rows(path, delimiter):
        rec_id, db = row.get("id"), row.get(struct_col)
        if rec_id is None or db is None:
            raise InputFileError(source, "row has fewer fields than the header", n)
        if not rec_id.strip():
            raise InputFileError(source, "empty id", n)
        yield rec_id.strip(), db.strip()


__all__ = [
    "ELEMENT_ALPHABET",
    "STRUCTURE_CHARS",
    "UNPAIRED_CHARS",
    "StructureRecord",
    "assign_pages",
    "dot_bracket_record",
    "element_labels",
    "family_from_filename",
    "format_bpseq",
    "format_ct",
    "format_dot_bracket",
    "iter_bpseq_archive",
    "pairs_to_dot_bracket",
    "parse_dot_bracket",
    "read_bpseq",
    "read_ct",
    "read_dot_bracket_fasta",
    "read_provided_structures",
    "read_structure_csv",
    "split_pseudoknots",
]
