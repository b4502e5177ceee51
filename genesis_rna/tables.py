"""Parquet schemas of the tables that stages exchange, and a streaming atomic writer.

Columns (see also config/README.md):

sequences   id, description, taxid (nullable), sequence (normalized A/C/G/U/N), length,
            n_ambiguous, seq_hash (sha1 of sequence), duplicates (exact copies merged into
            this record, not counting itself)
rejected    id, line (1-based header line in the FASTA, nullable), reason
annotations sequences' id/description/sequence/length plus structure (dot-bracket),
            pair_i / pair_j (0-based, i < j), elements (one bpRNA letter per base, EHSBIM),
            energy (kcal/mol; null for provided structures), label_source
splits      annotations' columns plus cluster (representative id) and split (train/val/test)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from genesis_rna.atomic import AtomicWriter, atomic_path

SEQUENCES = pa.schema(
    [
        ("id", pa.string()),
        ("description", pa.string()),
        ("taxid", pa.int64()),
        ("sequence", pa.string()),
        ("length", pa.int32()),
        ("n_ambiguous", pa.int32()),
        ("seq_hash", pa.string()),
        ("duplicates", pa.int32()),
    ]
)

REJECTED = pa.schema([("id", pa.string()), ("line", pa.int64()), ("reason", pa.string())])

ANNOTATIONS = pa.schema(
    [
        ("id", pa.string()),
        ("description", pa.string()),
        ("sequence", pa.string()),
        ("length", pa.int32()),
        ("structure", pa.string()),
        ("pair_i", pa.list_(pa.int32())),
        ("pair_j", pa.list_(pa.int32())),
        ("elements", pa.string()),
        ("energy", pa.float32()),
        ("label_source", pa.string()),
    ]
)

SPLITS = ANNOTATIONS.append(pa.field("cluster", pa.string())).append(pa.field("split", pa.string()))


class ParquetStreamWriter(AtomicWriter):
    """Append rows in bounded row groups; the file appears at ``path`` only on ``close()``.

    Memory stays flat in corpus size: at most ``row_group_size`` rows are buffered.
    Use as a context manager; an exception inside the block discards the partial file.
    """

    def __init__(self, path: str | Path, schema: pa.Schema, row_group_size: int = 50_000):
        self.path = Path(path)
        self.schema = schema
        self.row_group_size = row_group_size
        self.rows_written = 0
        self._buffer: list[Mapping] = []
        self._tables: list[pa.Table] = []  # blocks from write_table, not yet a row group
        self._table_rows = 0
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")

    def write(self, row: Mapping) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.row_group_size:
            self._flush()

    def write_many(self, rows: Iterable[Mapping]) -> None:
        for row in rows:
            self.write(row)

    def write_table(self, table: pa.Table) -> None:
        """Append a block of rows at once (after any rows written before it). Blocks are
        gathered into row groups of ``row_group_size`` rows, so small blocks do not make
        small row groups; the caller bounds each block's size."""
        if not table.num_rows:
            return
        if not table.schema.equals(self.schema):
            table = table.select(self.schema.names).cast(self.schema)
        self._rows_to_table()
        self._tables.append(table)
        self._table_rows += table.num_rows
        if self._table_rows >= self.row_group_size:
            # whole row groups now; the remainder waits for the next blocks
            whole = pa.concat_tables(self._tables)
            cut = self._table_rows - self._table_rows % self.row_group_size
            rest = whole.slice(cut)
            self._tables, self._table_rows = [whole.slice(0, cut)], cut
            self._flush()
            if rest.num_rows:
                self._tables, self._table_rows = [rest], rest.num_rows

    def _rows_to_table(self) -> None:
        if self._buffer:
            table = pa.Table.from_pylist(self._buffer, schema=self.schema)
            self._buffer = []
            self._tables.append(table)
            self._table_rows += table.num_rows

    def _flush(self) -> None:
        self._rows_to_table()
        if self._tables:
            table = pa.concat_tables(self._tables)
            self._tables, self._table_rows = [], 0
            self._writer.write_table(table, row_group_size=self.row_group_size)
            self.rows_written += table.num_rows

    def close(self) -> None:
        try:
            self._flush()
            self._writer.close()
        except BaseException as exc:  # e.g. disk full while writing the footer
            self.abort(exc)
            raise
        self._ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        """Discard the temporary file (even when closing the writer fails again)."""
        try:
            with contextlib.suppress(Exception):
                self._writer.close()
        finally:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)


def write_table(path: str | Path, table: pa.Table) -> None:
    """Write a whole (small) table atomically."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(path, columns=columns)
