"""parse_fasta stage: stream a FASTA(.gz) into a normalized sequences table, a rejected table
and a stats JSON. Nothing disappears without a reason: records_read == kept + rejected.

Records come from ``seqio.read_fasta`` (plain or gzip, strictly decoded, each with its 1-based
header line, which every rejection carries) and are normalized by
``sequences.normalize_sequence`` under ``FASTA_RECORDS`` with the configured ``iupac``.

Two passes. Pass 1 screens each record on its own (id, characters, N fraction, length) and
writes one row per record, in input order, to a hidden pending Parquet table in a scratch
folder beside the outputs; every record with an id goes to ``dedup.DuplicateFinder``. Once
all are read, the finder resolves duplicate ids and exact-duplicate sequences on disk. Pass 2
reads the pending table one row group at a time, fills in the duplicates (first occurrence
wins; a repeated id is rejected whatever its sequence; a kept row counts the exact copies
merged into it) and writes the final tables, rejections in input order.

Memory: one row group of rows, the finder's spill buffer and one of its partitions (see
``dedup``); only the partition grows with the corpus, ~0.5 MB per million records (n / 256
entries of ~110 B with their ids), and the per-length histogram behind the median is bounded
by the longest sequence. Measured (``python -m genesis_rna.fasta``, min_length 1, 2-core VM):
peak RSS 207 MB on the Rfam seed file (90,190 records), 253 MB at 10x and 261 MB at 50x
(4.5 M records, mutated copies), so ~2 B per extra record from 10x to 50x; the earlier
in-memory id and digest dicts took ~310 B per record (300 / 608 / 1,694 MB). Disk: the
pending table plus ~150 B per record in the scratch folder, removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from genesis_rna.allocator import arrow_returns_memory, trim_heap
from genesis_rna.atomic import write_json
from genesis_rna.dedup import BlockDuplicates, DuplicateFinder
from genesis_rna.errors import ConfigError, GenesisError, InputFileError
from genesis_rna.seqio import read_fasta
from genesis_rna.sequences import FASTA_RECORDS, InvalidSequence, normalize_sequence
from genesis_rna.tables import REJECTED, SEQUENCES, ParquetStreamWriter

_RNACENTRAL_ID = re.compile(r"^URS[0-9A-F]{10}(?:_(\d+))?$")


def parse_header(title: str) -> tuple[str, str, int | None]:
    """(id, description, taxid) of a FASTA title line (without '>').

    RNAcentral ids ``URS0000000001_9606`` carry the NCBI taxid after the underscore; a bare
    ``URS...`` id and any other FASTA get taxid None. The id is the first word.
    """
    parts = title.strip().split(None, 1)
    if not parts:
        return "", "", None
    rec_id = parts[0]
    description = parts[1].strip() if len(parts) > 1 else ""
    m = _RNACENTRAL_ID.match(rec_id)
    taxid = int(m.group(1)) if m and m.group(1) else None
    return rec_id, description, taxid


def _median(hist: Counter[int]) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    lo_rank, hi_rank = (total - 1) // 2, total // 2
    lo = hi = None
    seen = 0
    for length in sorted(hist):
        seen += hist[length]
        if lo is None and seen > lo_rank:
            lo = length
        if seen > hi_rank:
            hi = length
            break
    assert lo is not None and hi is not None
    return (lo + hi) / 2


def _check_params(min_length: int, max_length: int | None, max_ambiguous_fraction: float,
                  iupac: str, row_group_size: int) -> None:
    if min_length < 1:
        raise ConfigError("parse.min_length", f"must be >= 1, got {min_length}")
    if max_length is not None and max_length < min_length:
        raise ConfigError("parse.max_length", f"{max_length} is below min_length {min_length}")
    if not 0.0 <= max_ambiguous_fraction <= 1.0:
        raise ConfigError("parse.max_ambiguous_fraction", f"must be within [0, 1], got {max_ambiguous_fraction}")
    if iupac not in ("to_n", "reject"):
        raise ConfigError("parse.iupac", f"unknown value {iupac!r}; use 'to_n' or 'reject'")
    if row_group_size < 1:
        raise ConfigError("row_group_size", f"must be >= 1, got {row_group_size}")


# Rows per pending row group (pass 2's unit). Small on purpose: pass 1 holds that many rows as
# Python dicts (~1 KB each), and the heap keeps its high-water mark for the rest of the run.
# The final tables still get ``row_group_size`` row groups (ParquetStreamWriter gathers blocks).
PENDING_ROWS = 8192
_PENDING = pa.schema([
    ("id", pa.string()), ("line", pa.int64()),
    ("reason", pa.string()), ("category", pa.string()),  # null: a candidate for keeping
    ("description", pa.string()), ("taxid", pa.int64()), ("sequence", pa.string()),
    ("length", pa.int32()), ("n_ambiguous", pa.int32()), ("seq_hash", pa.string()),
    ("converted", pa.int32()),
])


def parse_fasta(
    fasta: str | Path,
    sequences_out: str | Path,
    rejected_out: str | Path,
    stats_out: str | Path,
    *,
    min_length: int = 20,
    max_length: int | None = 2000,
    max_ambiguous_fraction: float = 0.1,
    iupac: str = "to_n",
    row_group_size: int = 50_000,
    progress: bool = True,
) -> dict:
    """Normalize, filter and deduplicate the records of ``fasta``; return the stats written.

    Kept records go to ``sequences_out`` (schema SEQUENCES), the others to ``rejected_out``
    (REJECTED: id, header line, reason), in input order. Rejection order per record:
    missing/duplicate id, characters (gap, illegal, IUPAC under 'reject'), N fraction above
    ``max_ambiguous_fraction``, length outside [min_length, max_length], exact duplicate of an
    earlier kept sequence (merged into it: its ``duplicates`` count goes up).
    All outputs are written atomically; on any error none is left behind.

    Stats keys: input, params, records_read, kept, rejected, rejected_by_reason (category ->
    count), duplicates_merged, and over kept records total_nt, length_min/median/max,
    n_ambiguous_total (N bases) and iupac_converted_to_n (codes R..V rewritten as N).
    """
    _check_params(min_length, max_length, max_ambiguous_fraction, iupac, row_group_size)
    fasta, sequences_out, rejected_out = Path(fasta), Path(sequences_out), Path(rejected_out)
    if not fasta.is_file():
        raise InputFileError(fasta, "FASTA file not found")
    policy = replace(FASTA_RECORDS, ambiguity=iupac)
    # Arrow on jemalloc that purges at once (and glibc's heap trimmed after each block of the
    # second pass): with Arrow's default mimalloc the peak RSS crept up with the corpus.
    with arrow_returns_memory():
        return _parse_fasta(fasta, Path(sequences_out), Path(rejected_out), stats_out, policy,
                            min_length=min_length, max_length=max_length,
                            max_ambiguous_fraction=max_ambiguous_fraction, iupac=iupac,
                            row_group_size=row_group_size, progress=progress)


def _parse_fasta(fasta: Path, sequences_out: Path, rejected_out: Path, stats_out, policy, *,
                 min_length: int, max_length: int | None, max_ambiguous_fraction: float,
                 iupac: str, row_group_size: int, progress: bool) -> dict:
    sequences_out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{sequences_out.name}.", suffix=".parse",
                                 dir=sequences_out.parent))
    pending = work / "pending.parquet"
    read = 0
    placed: list[Path] = []
    try:
        block = min(row_group_size, PENDING_ROWS)
        finder = DuplicateFinder(work / "dedup", block_rows=block)
        # Pass 1: every record becomes one pending row, in input order: its rejection if a
        # filter of its own rejects it, else its normalized sequence. Whether its id or
        # sequence was seen before is known only once all records are read.
        with ParquetStreamWriter(pending, _PENDING, block) as out:
            bar = tqdm(desc=f"parse {fasta.name}", unit="seq", disable=not progress,
                       mininterval=2)
            for record in read_fasta(fasta):
                rec_id, description, taxid = parse_header(record.title)
                row = {"id": rec_id, "line": record.line}
                if rec_id:
                    row |= _screen(record.sequence, policy, min_length, max_length,
                                   max_ambiguous_fraction)
                    row.update(description=description, taxid=taxid)
                    finder.add(read, rec_id, record.line, row.get("sequence"))
                else:
                    row.update(category="missing id", reason="empty header line (no id)")
                out.write(row)
                read += 1
                bar.update(1)
            bar.close()
        finder.resolve()
        # Pass 2: the pending rows one row group at a time, with the duplicates filled in.
        tally = _Tally()
        with ParquetStreamWriter(rejected_out, REJECTED, row_group_size) as rejected:
            with ParquetStreamWriter(sequences_out, SEQUENCES, row_group_size) as kept:
                source = pq.ParquetFile(pending)
                start = 0
                for group in range(source.num_row_groups):
                    table = source.read_row_group(group)
                    dups = finder.block(start, start + table.num_rows)
                    _write_group(table, dups, kept, rejected, tally)
                    trim_heap()
                    start += table.num_rows
                assert start == read, (start, read)
            placed.append(sequences_out)
        placed.append(rejected_out)
        n_rejected = sum(tally.by_reason.values())
        assert read == tally.kept + n_rejected, (read, tally.kept, n_rejected)
        stats = {
            "input": str(fasta),
            "records_read": read,
            "kept": tally.kept,
            "rejected": n_rejected,
            "rejected_by_reason": dict(sorted(tally.by_reason.items())),
            "duplicates_merged": tally.by_reason.get("exact duplicate", 0),
            "total_nt": tally.total_nt,
            "length_min": min(tally.lengths) if tally.lengths else None,
            "length_median": _median(tally.lengths),
            "length_max": max(tally.lengths) if tally.lengths else None,
            "n_ambiguous_total": tally.n_ambiguous,
            "iupac_converted_to_n": tally.converted,
            "params": {
                "min_length": min_length,
                "max_length": max_length,
                "max_ambiguous_fraction": max_ambiguous_fraction,
                "iupac": iupac,
            },
        }
        write_json(stats_out, stats)
    except BaseException:
        # The outputs are renamed into place one by one; if a later one fails (disk full),
        # the earlier ones are removed too, so no partial output set looks complete.
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return stats


def _screen(raw: str, policy, min_length: int, max_length: int | None,
            max_ambiguous_fraction: float) -> dict:
    """A record's own filters: its rejection (category, reason) or its sequence columns."""
    try:
        normalized = normalize_sequence(raw, policy)
    except InvalidSequence as exc:
        return {"category": exc.category, "reason": exc.reason}
    seq = normalized.sequence
    n_amb = seq.count("N")
    if n_amb / len(seq) > max_ambiguous_fraction:
        return {"category": "ambiguous fraction",
                "reason": f"ambiguous (N) fraction {n_amb / len(seq):.3f} "
                          f"> max_ambiguous_fraction {max_ambiguous_fraction}"}
    if len(seq) < min_length:
        return {"category": "too short", "reason": f"length {len(seq)} < min_length {min_length}"}
    if max_length is not None and len(seq) > max_length:
        return {"category": "too long", "reason": f"length {len(seq)} > max_length {max_length}"}
    return {"sequence": seq, "length": len(seq), "n_ambiguous": n_amb,
            "seq_hash": hashlib.sha1(seq.encode("ascii")).hexdigest(),
            "converted": normalized.ambiguity_to_n}


@dataclass
class _Tally:
    kept: int = 0
    total_nt: int = 0
    n_ambiguous: int = 0
    converted: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    lengths: Counter[int] = field(default_factory=Counter)


def _write_group(table: pa.Table, dups: BlockDuplicates, kept: ParquetStreamWriter,
                 rejected: ParquetStreamWriter, tally: _Tally) -> None:
    """Write one row group of pending rows: rejections (own or duplicate) and kept rows."""
    reasons = table.column("reason").to_pylist()
    categories = table.column("category").to_pylist()
    for k, first_line in dups.dup_id.items():  # checked first, as for a single pass
        reasons[k] = f"duplicate id, first seen at line {first_line}"
        categories[k] = "duplicate id"
    for k, first in dups.dup_of.items():
        assert reasons[k] is None, (dups.start + k, reasons[k])
        reasons[k] = f"exact duplicate of {first}"
        categories[k] = "exact duplicate"
    tally.by_reason.update(c for c in categories if c is not None)
    is_rejected = np.array([r is not None for r in reasons], dtype=bool)
    mask = pa.array(is_rejected)
    if is_rejected.any():
        rejected.write_table(pa.table({
            "id": table.column("id").filter(mask), "line": table.column("line").filter(mask),
            "reason": pa.array(reasons, pa.string()).filter(mask)}, schema=REJECTED))
    keep = ~is_rejected
    if not keep.any():
        return
    rows = table.filter(pa.array(keep))
    copies = np.zeros(table.num_rows, np.int32)
    for k, n in dups.copies.items():
        copies[k] = n
    columns = {name: rows.column(name) for name in SEQUENCES.names if name != "duplicates"}
    kept.write_table(pa.table({**columns, "duplicates": copies[keep]}, schema=SEQUENCES))
    lengths = rows.column("length").to_numpy()
    values, counts = np.unique(lengths, return_counts=True)
    tally.lengths.update(dict(zip(values.tolist(), counts.tolist(), strict=True)))
    tally.kept += rows.num_rows
    tally.total_nt += int(lengths.sum())
    tally.n_ambiguous += int(pc.sum(rows.column("n_ambiguous")).as_py() or 0)
    tally.converted += int(pc.sum(rows.column("converted")).as_py() or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genesis_rna.fasta",
        description="Normalize, filter and deduplicate a FASTA(.gz) into Parquet tables.",
    )
    parser.add_argument("fasta", type=Path)
    parser.add_argument("--sequences", type=Path, required=True, help="kept records (Parquet)")
    parser.add_argument("--rejected", type=Path, required=True, help="rejected records (Parquet)")
    parser.add_argument("--stats", type=Path, required=True, help="counts (JSON)")
    parser.add_argument("--min_length", type=int, default=20)
    parser.add_argument("--max_length", type=int, default=2000,
                        help="longest length kept; 0 for no limit")
    parser.add_argument("--max_ambiguous_fraction", type=float, default=0.1)
    parser.add_argument("--iupac", choices=["to_n", "reject"], default="to_n")
    parser.add_argument("--row_group_size", type=int, default=50_000)
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        stats = parse_fasta(
            args.fasta, args.sequences, args.rejected, args.stats,
            min_length=args.min_length, max_length=args.max_length or None,
            max_ambiguous_fraction=args.max_ambiguous_fraction, iupac=args.iupac,
            row_group_size=args.row_group_size, progress=not args.no_progress,
        )
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, file-size limit, unwritable folder: no output is left
        print(f"error: cannot write the outputs: {exc}", file=sys.stderr)
        return 1
    print(
        f"{stats['records_read']} records: {stats['kept']} kept, {stats['rejected']} rejected "
        f"({stats['duplicates_merged']} exact duplicates merged)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
