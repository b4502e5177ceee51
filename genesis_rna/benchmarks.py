"""Find the right reader for a curated-structure benchmark by its path.

Supported: a folder or tarball of ``.bpseq`` files, ``.ct`` files (or a folder of them), a
dot-bracket FASTA (``>id``, sequence, structure) and the CSV form
``id,sequence,structure,base_pairs``. Used for decontaminating training data and for the
held-out evaluation, so both read benchmarks the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from genesis_rna import structures
from genesis_rna.errors import InputFileError


def _name(path: Path) -> str:
    return path.name.lower()


def iter_benchmark_records(path: str | Path) -> Iterator[structures.StructureRecord]:
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "benchmark file or folder not found")
    name = _name(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        if any(p.suffix.lower() == ".bpseq" for p in files):
            yield from structures.iter_bpseq_archive(path)
            return
        cts = [p for p in files if p.suffix.lower() == ".ct"]
        if cts:
            for ct in cts:
                yield from structures.read_ct(ct, family=structures.family_from_filename(ct.name))
            return
        raise InputFileError(path, "folder holds no .bpseq or .ct files")
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        yield from structures.iter_bpseq_archive(path)
    elif name.endswith((".csv", ".csv.gz")):
        yield from structures.read_structure_csv(path)
    elif name.endswith(".ct"):
        yield from structures.read_ct(path)
    elif name.endswith(".bpseq"):
        yield from structures.read_bpseq(path)
    elif name.endswith((".fa", ".fasta", ".db", ".dbn", ".fa.gz", ".fasta.gz")):
        yield from structures.read_dot_bracket_fasta(path)
    else:
        raise InputFileError(
            path,
            "unknown benchmark format; use a folder/tarball of .bpseq, .ct files, a dot-bracket "
            "FASTA (.fa/.fasta/.db) or a CSV with id,sequence,structure,base_pairs",
        )
