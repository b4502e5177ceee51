"""parse_fasta stage: stream a FASTA(.gz) into a normalized sequences table, a rejected table
and a stats JSON. Nothing disappears without a reason: records_read == kept + rejected.

Records come from ``seqio.read_fasta`` (plain or gzip, strictly decoded, each with its 1-based
header line, which every rejection carries) and are normalized by
``sequences.normalize_sequence`` under ``FASTA_RECORDS`` with the configured ``iupac``.

Memory: sequences stream out in row groups. What grows with the corpus is two dictionaries
needed to find duplicates: id -> header line, and sha1 digest (20 bytes) of each kept
sequence -> its id (the same string object, not a copy). That is roughly 200-250 bytes per
kept record (about 7 GB for 30 M records); the per-length histogram behind the median is
bounded by the longest sequence.

Duplicate counts: how many exact copies a kept record absorbed is known only at the end, so
kept rows first go to a hidden temporary Parquet file with ``duplicates = 0``, while a small
dict counts copies only for hashes seen more than once. If any were seen, a second pass reads
the temporary file one row group at a time and writes the final table with the counts filled
in; otherwise the temporary file is renamed into place. Both passes are memory-flat.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from genesis_rna.atomic import atomic_path, write_json
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
    (REJECTED: id, header line, reason). Rejection order per record: missing/duplicate id,
    characters (gap, illegal, IUPAC under 'reject'), N fraction above
    ``max_ambiguous_fraction``, length outside [min_length, max_length], exact duplicate of an
    earlier kept sequence (merged into it: its ``duplicates`` count goes up).
    All outputs are written atomically; on any error none is left behind.

    Stats keys: input, params, records_read, kept, rejected, rejected_by_reason (category ->
    count), duplicates_merged, and over kept records total_nt, length_min/median/max,
    n_ambiguous_total (N bases) and iupac_converted_to_n (codes R..V rewritten as N).
    """
    _check_params(min_length, max_length, max_ambiguous_fraction, iupac, row_group_size)
    fasta, sequences_out = Path(fasta), Path(sequences_out)
    if not fasta.is_file():
        raise InputFileError(fasta, "FASTA file not found")
    policy = replace(FASTA_RECORDS, ambiguity=iupac)
    pass1 = sequences_out.with_name(f".{sequences_out.name}.pass1.parquet")

    ids: dict[str, int] = {}
    first_of_hash: dict[bytes, str] = {}
    dup_counts: dict[bytes, int] = {}
    by_reason: Counter[str] = Counter()
    lengths: Counter[int] = Counter()
    read = kept = converted_total = total_nt = n_total = 0

    # The three outputs are renamed into place one by one; if a later one fails (disk full),
    # the earlier ones are removed too, so no partial output set looks complete.
    placed: list[Path] = []
    try:
        try:
            with ParquetStreamWriter(rejected_out, REJECTED, row_group_size) as rejected:
                with ParquetStreamWriter(pass1, SEQUENCES, row_group_size) as out:
                    bar = tqdm(desc=f"parse {fasta.name}", unit="seq", disable=not progress,
                               mininterval=2)

                    def reject(category: str, reason: str) -> None:
                        by_reason[category] += 1
                        rejected.write({"id": rec_id, "line": line, "reason": reason})

                    for record in read_fasta(fasta):
                        title, raw, line = record.title, record.sequence, record.line
                        read += 1
                        bar.update(1)
                        rec_id, description, taxid = parse_header(title)
                        if not rec_id:
                            reject("missing id", "empty header line (no id)")
                            continue
                        first_line = ids.setdefault(rec_id, line)
                        if first_line != line:
                            reject("duplicate id", f"duplicate id, first seen at line {first_line}")
                            continue
                        try:
                            normalized = normalize_sequence(raw, policy)
                        except InvalidSequence as exc:
                            reject(exc.category, exc.reason)
                            continue
                        seq, converted = normalized.sequence, normalized.ambiguity_to_n
                        n_amb = seq.count("N")
                        if n_amb / len(seq) > max_ambiguous_fraction:
                            reject("ambiguous fraction", f"ambiguous (N) fraction {n_amb / len(seq):.3f} "
                                   f"> max_ambiguous_fraction {max_ambiguous_fraction}")
                            continue
                        if len(seq) < min_length:
                            reject("too short", f"length {len(seq)} < min_length {min_length}")
                            continue
                        if max_length is not None and len(seq) > max_length:
                            reject("too long", f"length {len(seq)} > max_length {max_length}")
                            continue
                        digest = hashlib.sha1(seq.encode("ascii")).digest()
                        if digest in first_of_hash:
                            dup_counts[digest] = dup_counts.get(digest, 0) + 1
                            reject("exact duplicate", f"exact duplicate of {first_of_hash[digest]}")
                            continue
                        first_of_hash[digest] = rec_id
                        kept += 1
                        converted_total += converted
                        total_nt += len(seq)
                        n_total += n_amb
                        lengths[len(seq)] += 1
                        out.write({
                            "id": rec_id, "description": description, "taxid": taxid,
                            "sequence": seq, "length": len(seq), "n_ambiguous": n_amb,
                            "seq_hash": digest.hex(), "duplicates": 0,
                        })
                    bar.close()
                n_rejected = sum(by_reason.values())
                assert read == kept + n_rejected, (read, kept, n_rejected)
                _finalize_sequences(pass1, sequences_out, dup_counts, row_group_size)
                placed.append(sequences_out)
            placed.append(Path(rejected_out))
        finally:
            pass1.unlink(missing_ok=True)

        stats = {
            "input": str(fasta),
            "records_read": read,
            "kept": kept,
            "rejected": n_rejected,
            "rejected_by_reason": dict(sorted(by_reason.items())),
            "duplicates_merged": by_reason.get("exact duplicate", 0),
            "total_nt": total_nt,
            "length_min": min(lengths) if lengths else None,
            "length_median": _median(lengths),
            "length_max": max(lengths) if lengths else None,
            "n_ambiguous_total": n_total,
            "iupac_converted_to_n": converted_total,
            "params": {
                "min_length": min_length,
                "max_length": max_length,
                "max_ambiguous_fraction": max_ambiguous_fraction,
                "iupac": iupac,
            },
        }
        write_json(stats_out, stats)
    except BaseException:
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    return stats


def _finalize_sequences(pass1: Path, final: Path, dup_counts: dict[bytes, int],
                        row_group_size: int) -> None:
    """Move the first-pass table into place, filling ``duplicates`` where copies were merged."""
    if not dup_counts:
        os.replace(pass1, final)
        return
    counts = {digest.hex(): n for digest, n in dup_counts.items()}
    dup_index = SEQUENCES.get_field_index("duplicates")
    with atomic_path(final) as tmp, pq.ParquetWriter(tmp, SEQUENCES, compression="zstd") as writer:
        for batch in pq.ParquetFile(pass1).iter_batches(batch_size=row_group_size):
            hashes = batch.column("seq_hash").to_pylist()
            dups = pa.array([counts.get(h, 0) for h in hashes], pa.int32())
            table = pa.Table.from_batches([batch]).set_column(dup_index, "duplicates", dups)
            writer.write_table(table.cast(SEQUENCES))


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
