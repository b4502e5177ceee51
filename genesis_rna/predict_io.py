"""What ``predict`` reads and writes around the model.

In: any sequence or structure file ``benchmarks.sniff_format`` recognises (FASTA, dot-bracket
FASTA, bpseq, ct, the bpRNA CSV; structures are ignored), one record at a time. A record that
cannot be folded (no id, no sequence, a gap or an illegal character) is set aside with its reason
(``Rejected``) instead of stopping the run; faults of the whole file still raise.

Out (``FORMATS``): dot-bracket FASTA (one file, or stdout), CT (a folder of one file per
sequence, or one file holding them all when the name ends in ``.ct``) or bpseq (a folder: the
format holds one structure per file). Folders get file names safe for any id
(``safe_file_names``) and an ``index.tsv`` (id, file, length, energy) that maps them back. Each
structure carries its free energy under ViennaRNA (``folding.structure_energy``), where RNAfold
prints it. ``--draw``: per sequence ViennaRNA's SVG drawing and a dot plot PNG (``drawing``).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from genesis_rna.atomic import atomic_open
from genesis_rna.benchmarks import iter_input_sequences
from genesis_rna.errors import ConfigError, InputFileError
from genesis_rna.sequences import FASTA_RECORDS, InvalidSequence, normalize_sequence
from genesis_rna.structures import Pair, format_bpseq, format_ct, format_dot_bracket

FORMATS = ("dbn", "ct", "bpseq")
_WRITERS = {"dbn": format_dot_bracket, "ct": format_ct, "bpseq": format_bpseq}
MAX_NAME = 100  # characters of an id kept in a file name
SHOWN_REJECTED = 20  # rejected records listed on stderr (all of them go to --rejected)


@dataclass
class InputSequence:
    id: str
    sequence: str  # normalized
    line: int | None  # 1-based header line (FASTA kinds)


@dataclass(frozen=True)
class Rejected:
    id: str
    line: int | None
    reason: str


def read_inputs(path: str | Path) -> tuple[list[InputSequence], list[Rejected]]:
    """The usable records of ``path`` (sequences normalized with ``sequences.FASTA_RECORDS``:
    T -> U, ambiguity codes -> N) and the rejected ones with their reasons."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "input file not found")
    records: list[InputSequence] = []
    rejected: list[Rejected] = []
    for rec in iter_input_sequences(path):
        reason = rec.error or ("header without an id" if not rec.id else None)
        if reason is None:
            try:
                seq = normalize_sequence(rec.sequence, FASTA_RECORDS).sequence
            except InvalidSequence as exc:
                reason = str(exc)
        if reason is not None:
            rejected.append(Rejected(rec.id, rec.line, reason))
        else:
            records.append(InputSequence(rec.id, seq, rec.line))
    return records, rejected


def duplicate_id_warnings(records: Sequence[InputSequence]) -> list[str]:
    """One warning per id given more than once (each is folded; file names are made unique)."""
    counts = Counter(r.id for r in records)
    out = []
    for rid, n in counts.items():
        if n > 1:
            lines = [str(r.line) for r in records if r.id == rid and r.line is not None]
            where = f" (header lines {', '.join(lines)})" if lines else ""
            out.append(f"warning: id {rid!r} occurs {n} times{where}; each is folded and "
                       "written")
    return out


def rejected_summary(path: str | Path, rejected: Sequence[Rejected], folded: int) -> str:
    """The end-of-run lines about the records that were not folded."""
    head = (f"{len(rejected)} record(s) of {path} not folded ({folded} folded):")
    lines = [head] + [
        f"  {r.id or '<no id>'}" + (f" (line {r.line})" if r.line is not None else "")
        + f": {r.reason}" for r in rejected[:SHOWN_REJECTED]]
    if len(rejected) > SHOWN_REJECTED:
        lines.append(f"  ... and {len(rejected) - SHOWN_REJECTED} more (--rejected FILE lists "
                     "them all)")
    return "\n".join(lines)


def write_rejected(path: str | Path, rejected: Sequence[Rejected]) -> None:
    """TSV id, line, reason (written even when empty, so a pipeline can rely on it)."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write("id\tline\treason\n")
        for r in rejected:
            reason = r.reason.replace("\t", " ").replace("\n", " ")
            fh.write(f"{r.id}\t{'' if r.line is None else r.line}\t{reason}\n")


def safe_file_names(ids: Sequence[str]) -> list[str]:
    """A file-name stem per id, distinct (also ignoring case) and safe on any file system:
    letters, digits, ``.``, ``_``, ``-`` kept, anything else ``_``, at most ``MAX_NAME``
    characters, no leading dot; a repeat gets ``_2``, ``_3``..."""
    used: set[str] = set()
    out = []
    for rid in ids:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", rid)[:MAX_NAME].lstrip(".") or "record"
        name, k = stem, 1
        while name.lower() in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name.lower())
        out.append(name)
    return out


def output_layout(fmt: str, output: str | Path | None) -> str:
    """'stdout', 'file' or 'folder': where ``fmt`` goes for ``--output``; ConfigError when the
    two do not fit (checked before any folding)."""
    if fmt not in FORMATS:
        raise ConfigError("format", f"{fmt!r} not in {FORMATS}")
    if fmt == "dbn":
        return "stdout" if output is None else "file"
    if output is None:
        raise ConfigError("output", f"--format {fmt} writes a folder (one file per sequence"
                          + (", or one .ct file" if fmt == "ct" else "") + "); give --output")
    name = str(output).lower()
    if fmt == "ct" and name.endswith(".ct"):
        return "file"
    if fmt == "bpseq" and name.endswith(".bpseq"):
        raise ConfigError("output", f"{output}: bpseq holds one structure per file; give a "
                          "folder name")
    if Path(output).is_file():
        raise ConfigError("output", f"{output} is a file; --format {fmt} writes a folder")
    return "folder"


def write_structures(fmt: str, output: str | Path | None, records: Sequence[InputSequence],
                     pairs: Sequence[list[Pair]], energies: Sequence[float]) -> str:
    """Write every structure in ``fmt`` (see ``output_layout``); returns where it went."""
    writer = _WRITERS[fmt]
    blocks = [writer(r.id, r.sequence, p, e)
              for r, p, e in zip(records, pairs, energies, strict=True)]
    layout = output_layout(fmt, output)
    if layout == "stdout":
        sys.stdout.write("".join(blocks))
        return "stdout"
    out = Path(output)
    if layout == "file":
        with atomic_open(out, "w", encoding="utf-8") as fh:
            fh.write("".join(blocks))
        return str(out)
    # Files are replaced one by one, never the folder: it may hold the user's other files.
    out.mkdir(parents=True, exist_ok=True)
    names = safe_file_names([r.id for r in records])
    for name, block in zip(names, blocks, strict=True):
        with atomic_open(out / f"{name}.{fmt}", "w", encoding="utf-8") as fh:
            fh.write(block)
    with atomic_open(out / "index.tsv", "w", encoding="utf-8") as fh:
        fh.write("id\tfile\tlength\tenergy\n")
        for r, name, e in zip(records, names, energies, strict=True):
            fh.write(f"{r.id}\t{name}.{fmt}\t{len(r.sequence)}\t{e:.2f}\n")
    return f"{out}/ ({len(blocks)} .{fmt} files, index.tsv)"


def draw_predictions(folder: str | Path, records: Sequence[InputSequence], predictions: Sequence,
                     energies: Sequence[float]) -> Path:
    """``<name>.svg`` (ViennaRNA's drawing) and ``<name>_dotplot.png`` per sequence, and an
    ``index.tsv`` (id, svg, dotplot) mapping ids to the safe names."""
    from genesis_rna.drawing import draw_dot_plot, draw_structure_svg

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = safe_file_names([r.id for r in records])
    for r, p, e, name in zip(records, predictions, energies, names, strict=True):
        draw_structure_svg(folder / f"{name}.svg", r.sequence, p.pairs)
        draw_dot_plot(folder / f"{name}_dotplot.png", r.sequence, p.pair_probs, p.pairs,
                      f"{r.id} ({len(r.sequence)} nt, {e:.2f} kcal/mol)")
    with atomic_open(folder / "index.tsv", "w", encoding="utf-8") as fh:
        fh.write("id\tsvg\tdotplot\n")
        for r, name in zip(records, names, strict=True):
            fh.write(f"{r.id}\t{name}.svg\t{name}_dotplot.png\n")
    return folder
