"""Out-of-core duplicate detection for the parse stage: first occurrence wins, memory flat.

The parse stage finds two kinds of duplicates: a record whose id was seen before (rejected,
citing the header line of the first), and an exact copy of an earlier kept sequence (rejected,
citing the first one's id; the first counts its copies). Python dicts of every id and sequence
digest cost ~310 B per record (measured: 1.7 GB at 4.5 M records, ~9 GB for 30 M). Here each record becomes one
fixed-width numpy entry that is spilled to disk, and only one partition is in memory at a time.

Keys are 128-bit BLAKE2b digests of the id (UTF-8) and of the normalized sequence. Two
different strings share a key with probability about n^2 / 2^129 over n records (~1e-21 for a
billion records), far below the rate of undetected disk errors; a collision would merge two
records as duplicates.

How:

1. ``add`` (in input order) buffers (id key, row, header line, sequence key) and the id text;
   every ``spill_rows`` entries the buffer is spilled to ``partitions`` files chosen by the id
   key's first byte (ids go to a text file beside it, one per line: ids hold no whitespace).
2. ``resolve`` loads one id partition at a time and sorts it by (key, row): the first row of a
   key is the first occurrence, every later row is a duplicate id. The first occurrences that
   carry a candidate sequence are spilled again, into partitions by sequence key, and each of
   those is sorted the same way: later rows are exact duplicates of the first row's id, and the
   first row counts them. A record with a duplicate id never takes part in the sequence step,
   as in a single pass that rejects it before looking at its sequence.
3. Results are spilled by blocks of ``block_rows`` rows, so ``block(start, stop)`` reads only
   what a stretch of rows needs: the parse stage's second pass walks its table in row order.

Memory: the buffer (``spill_rows`` entries of ~50 B plus the id strings), one partition
(n / ``partitions`` entries) and one result block; disk: ~2 x (70 B + id length) per record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KEY_BYTES = 16
_NO_KEY = bytes(KEY_BYTES)

# k0/k1: the 16 key bytes as two little-endian words (k0's low byte is the key's first byte)
ID_ENTRY = np.dtype([("k0", "<u8"), ("k1", "<u8"), ("row", "<i8"), ("line", "<i8"),
                     ("s0", "<u8"), ("s1", "<u8"), ("has_seq", "u1")])
SEQ_ENTRY = np.dtype([("k0", "<u8"), ("k1", "<u8"), ("row", "<i8")])
DUP_ID = np.dtype([("row", "<i8"), ("line", "<i8")])
DUP_SEQ = np.dtype([("row", "<i8")])
COPIES = np.dtype([("row", "<i8"), ("copies", "<i8")])


def key(text: str) -> bytes:
    """The 128-bit BLAKE2b key of a string."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


class _Spill:
    """Structured entries (plus, with ``texts``, one string each) appended to partition files.

    ``part_of`` maps entries to partition numbers. Entries keep their order within a partition.
    """

    def __init__(self, folder: Path, name: str, dtype: np.dtype, part_of: Callable,
                 capacity: int, texts: bool = False):
        self.folder, self.name, self.dtype = folder, name, dtype
        self.part_of, self.capacity, self.texts = part_of, capacity, texts
        self._parts: set[int] = set()
        self._chunks: list[np.ndarray] = []
        self._strings: list[str] = []
        self._n = 0

    def _path(self, part: int, suffix: str) -> Path:
        return self.folder / f"{self.name}_{part:05d}.{suffix}"

    def add(self, entries: np.ndarray, strings: list[str] | None = None) -> None:
        assert entries.dtype == self.dtype and (strings is not None) == self.texts
        if not len(entries):
            return
        self._chunks.append(entries)
        if strings is not None:
            assert len(strings) == len(entries)
            self._strings.extend(strings)
        self._n += len(entries)
        if self._n >= self.capacity:
            self.flush()

    def flush(self) -> None:
        if not self._n:
            return
        entries = np.concatenate(self._chunks)
        parts = np.asarray(self.part_of(entries), np.int64)
        order = np.argsort(parts, kind="stable")
        entries, parts = entries[order], parts[order]
        strings = [self._strings[i] for i in order] if self.texts else None
        cuts = np.flatnonzero(np.diff(parts)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(parts)], strict=True):
            part = int(parts[lo])
            with open(self._path(part, "bin"), "ab") as fh:
                fh.write(entries[lo:hi].tobytes())
            if strings is not None:
                with open(self._path(part, "txt"), "ab") as fh:
                    fh.write(("\n".join(strings[lo:hi]) + "\n").encode("utf-8"))
            self._parts.add(part)
        self._chunks, self._strings, self._n = [], [], 0

    def parts(self) -> list[int]:
        self.flush()
        return sorted(self._parts)

    def load(self, part: int) -> tuple[np.ndarray, list[str] | None]:
        """The entries (and strings) of one partition, in the order they were added."""
        self.flush()
        if part not in self._parts:
            return np.zeros(0, self.dtype), [] if self.texts else None
        entries = np.fromfile(self._path(part, "bin"), dtype=self.dtype)
        strings = None
        if self.texts:
            strings = self._path(part, "txt").read_bytes().decode("utf-8").split("\n")[:-1]
            assert len(strings) == len(entries), (self.name, part)
        return entries, strings

    def remove(self) -> None:
        for part in self._parts:
            for suffix in ("bin", "txt"):
                self._path(part, suffix).unlink(missing_ok=True)
        self._parts.clear()


def _key_groups(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by (key, row): (order, new, first). ``new[i]``: sorted entry i is the first of its
    key; ``first[i]``: the sorted position of that first entry."""
    order = np.lexsort((entries["row"], entries["k1"], entries["k0"]))
    k0, k1 = entries["k0"][order], entries["k1"][order]
    new = np.ones(len(order), bool)
    new[1:] = (k0[1:] != k0[:-1]) | (k1[1:] != k1[:-1])
    first = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
    return order, new, first


def _words(raw: bytes | bytearray, n: int) -> np.ndarray:
    """n concatenated 16-byte keys as an [n, 2] array of little-endian words."""
    return np.frombuffer(bytes(raw), dtype="<u8").reshape(n, 2)


@dataclass
class BlockDuplicates:
    """The duplicates among rows ``start`` .. ``start + n - 1``, keyed by offset from start."""

    start: int
    dup_id: dict[int, int] = field(default_factory=dict)  # offset -> header line of the first
    dup_of: dict[int, str] = field(default_factory=dict)  # offset -> id of the first copy
    copies: dict[int, int] = field(default_factory=dict)  # offset -> copies merged into it


class DuplicateFinder:
    """Duplicate ids and exact-duplicate sequences over any number of records, on disk.

    Call ``add`` once per record with an id, rows increasing; then ``resolve``; then ``block``
    for the outcome of each stretch of rows. ``folder`` must be private to this finder.
    """

    def __init__(self, folder: str | Path, *, block_rows: int = 50_000,
                 spill_rows: int = 1 << 16, partitions: int = 256):
        if block_rows < 1 or spill_rows < 1 or not 1 <= partitions <= 1 << 16:
            raise ValueError(f"bad sizes: block_rows {block_rows}, spill_rows {spill_rows}, "
                             f"partitions {partitions}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.block_rows, self.spill_rows, self.partitions = block_rows, spill_rows, partitions

        def by_key(e: np.ndarray) -> np.ndarray:
            return e["k0"] % np.uint64(partitions)

        def by_block(e: np.ndarray) -> np.ndarray:
            return e["row"] // block_rows

        self._ids = _Spill(self.folder, "id", ID_ENTRY, by_key, spill_rows, texts=True)
        self._seqs = _Spill(self.folder, "seq", SEQ_ENTRY, by_key, spill_rows, texts=True)
        self._dup_id = _Spill(self.folder, "dupid", DUP_ID, by_block, spill_rows)
        self._dup_seq = _Spill(self.folder, "dupseq", DUP_SEQ, by_block, spill_rows, texts=True)
        self._copies = _Spill(self.folder, "copies", COPIES, by_block, spill_rows)
        self._id_keys, self._seq_keys = bytearray(), bytearray()
        self._rows: list[int] = []
        self._lines: list[int] = []
        self._has_seq: list[int] = []
        self._names: list[str] = []
        self._last_row = -1
        self.resolved = False
        self.records = 0

    def add(self, row: int, rec_id: str, line: int, sequence: str | None) -> None:
        """Record ``row`` (its header at ``line``) with id ``rec_id``; ``sequence`` is its
        normalized sequence if it passed every other filter, else None (its id still counts:
        a later record with the same id is a duplicate id)."""
        if self.resolved:
            raise RuntimeError("add after resolve")
        if row <= self._last_row:
            raise ValueError(f"rows must increase: {row} after {self._last_row}")
        if not rec_id or "\n" in rec_id:
            raise ValueError(f"row {row}: an id must be non-empty and hold no line break")
        self._last_row = row
        self._id_keys += key(rec_id)
        self._seq_keys += key(sequence) if sequence is not None else _NO_KEY
        self._rows.append(row)
        self._lines.append(line)
        self._has_seq.append(sequence is not None)
        self._names.append(rec_id)
        self.records += 1
        if len(self._rows) >= self.spill_rows:
            self._spill_added()

    def _spill_added(self) -> None:
        n = len(self._rows)
        if not n:
            return
        entries = np.empty(n, ID_ENTRY)
        ids, seqs = _words(self._id_keys, n), _words(self._seq_keys, n)
        entries["k0"], entries["k1"] = ids[:, 0], ids[:, 1]
        entries["s0"], entries["s1"] = seqs[:, 0], seqs[:, 1]
        entries["row"], entries["line"] = self._rows, self._lines
        entries["has_seq"] = self._has_seq
        self._ids.add(entries, self._names)
        self._ids.flush()
        self._id_keys, self._seq_keys = bytearray(), bytearray()
        self._rows, self._lines, self._has_seq, self._names = [], [], [], []

    def resolve(self) -> None:
        """Find every duplicate (after the last ``add``); the key partitions are removed."""
        if self.resolved:
            return
        self._spill_added()
        for part in self._ids.parts():
            entries, names = self._ids.load(part)
            order, new, first = _key_groups(entries)
            ranked = entries[order]
            dups = np.flatnonzero(~new)
            found = np.empty(len(dups), DUP_ID)
            found["row"] = ranked["row"][dups]
            found["line"] = ranked["line"][first[dups]]
            self._dup_id.add(found)
            # first occurrences of their id with a candidate sequence go on to the sequence step
            go_on = np.flatnonzero(new & (ranked["has_seq"] == 1))
            seqs = np.empty(len(go_on), SEQ_ENTRY)
            seqs["k0"], seqs["k1"] = ranked["s0"][go_on], ranked["s1"][go_on]
            seqs["row"] = ranked["row"][go_on]
            self._seqs.add(seqs, [names[order[i]] for i in go_on])
        self._ids.remove()
        for part in self._seqs.parts():
            entries, names = self._seqs.load(part)
            order, new, first = _key_groups(entries)
            rows = entries["row"][order]
            dups = np.flatnonzero(~new)
            found = np.empty(len(dups), DUP_SEQ)
            found["row"] = rows[dups]
            self._dup_seq.add(found, [names[order[first[i]]] for i in dups])
            starts = np.flatnonzero(new)
            sizes = np.diff(np.r_[starts, len(rows)])
            merged = sizes > 1
            counts = np.empty(int(merged.sum()), COPIES)
            counts["row"], counts["copies"] = rows[starts[merged]], sizes[merged] - 1
            self._copies.add(counts)
        self._seqs.remove()
        for spill in (self._dup_id, self._dup_seq, self._copies):
            spill.flush()
        self.resolved = True

    def block(self, start: int, stop: int) -> BlockDuplicates:
        """The duplicates among rows [start, stop)."""
        if not self.resolved:
            raise RuntimeError("block before resolve")
        out = BlockDuplicates(start)
        if stop <= start:
            return out
        for b in range(start // self.block_rows, (stop - 1) // self.block_rows + 1):
            found, _ = self._dup_id.load(b)
            for row, line in found[(found["row"] >= start) & (found["row"] < stop)].tolist():
                out.dup_id[row - start] = line
            found, names = self._dup_seq.load(b)
            for k in np.flatnonzero((found["row"] >= start) & (found["row"] < stop)):
                out.dup_of[int(found["row"][k]) - start] = names[k]
            found, _ = self._copies.load(b)
            for row, copies in found[(found["row"] >= start) & (found["row"] < stop)].tolist():
                out.copies[row - start] = copies
        return out
