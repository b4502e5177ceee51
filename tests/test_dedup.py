"""DuplicateFinder (out-of-core duplicate detection) against a plain-Python reference."""

from __future__ import annotations

import random

import numpy as np
import pytest

from genesis_rna import dedup
from genesis_rna.dedup import DuplicateFinder


def reference(records):
    """What one in-memory pass finds: (dup_id, dup_of, copies) keyed by row."""
    first_line: dict[str, int] = {}
    first_of_seq: dict[str, tuple[int, str]] = {}
    dup_id, dup_of, copies = {}, {}, {}
    for row, rid, line, seq in records:
        if rid in first_line:  # rejected before its sequence is looked at
            dup_id[row] = first_line[rid]
            continue
        first_line[rid] = line
        if seq is None:
            continue
        if seq in first_of_seq:
            first_row, first_id = first_of_seq[seq]
            dup_of[row] = first_id
            copies[first_row] = copies.get(first_row, 0) + 1
        else:
            first_of_seq[seq] = (row, rid)
    return dup_id, dup_of, copies


def random_records(rng: random.Random, n: int, n_ids: int, n_seqs: int):
    """Records with many repeated ids and sequences, gaps in the rows (records without an id
    are never added) and some records without a candidate sequence."""
    ids = [f"r{k}|{'x' * rng.randint(0, 20)}" for k in range(n_ids)]
    seqs = ["".join(rng.choice("ACGUN") for _ in range(rng.randint(1, 8))) for _ in range(n_seqs)]
    records, row, line = [], 0, 1
    for _ in range(n):
        row += rng.choice((1, 1, 1, 2, 5))
        line += rng.randint(2, 4)
        seq = rng.choice(seqs) if rng.random() < 0.8 else None
        records.append((row, rng.choice(ids), line, seq))
    return records


def found(finder: DuplicateFinder, last_row: int, rng: random.Random):
    """The finder's answers, asked for in stretches of random length that cross blocks."""
    dup_id, dup_of, copies = {}, {}, {}
    start = 0
    while start <= last_row:
        stop = start + rng.randint(1, 3 * finder.block_rows)
        block = finder.block(start, stop)
        assert block.start == start
        for name, into in (("dup_id", dup_id), ("dup_of", dup_of), ("copies", copies)):
            got = getattr(block, name)
            assert all(0 <= k < stop - start for k in got)
            into.update({start + k: v for k, v in got.items()})
        start = stop
    return dup_id, dup_of, copies


@pytest.mark.parametrize(
    ("seed", "n", "n_ids", "n_seqs", "spill_rows", "partitions", "block_rows"),
    [
        (0, 2000, 1500, 300, 7, 256, 13),  # most ids unique, sequences repeat a lot
        (1, 2000, 50, 40, 1, 3, 1),  # ids repeat a lot; one entry per spill, 3 partitions
        (2, 3000, 2500, 2000, 64, 1, 1000),  # one partition holding everything
        (3, 500, 500, 5, 100_000, 16, 50),  # nothing spilled before resolve
    ],
)
def test_matches_the_in_memory_reference(tmp_path, seed, n, n_ids, n_seqs, spill_rows,
                                         partitions, block_rows):
    rng = random.Random(seed)
    records = random_records(rng, n, n_ids, n_seqs)
    finder = DuplicateFinder(tmp_path / "d", spill_rows=spill_rows, partitions=partitions,
                             block_rows=block_rows)
    for record in records:
        finder.add(*record)
    finder.resolve()
    want = reference(records)
    assert all(want), "the inputs must hold every kind of duplicate"
    assert found(finder, records[-1][0], rng) == want


def test_spills_to_disk_and_removes_key_partitions(tmp_path):
    finder = DuplicateFinder(tmp_path / "d", spill_rows=4, partitions=8, block_rows=10)
    for row in range(40):
        finder.add(row, f"id{row % 30}", row + 1, "ACGU" if row % 3 else None)
    on_disk = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert any(name.startswith("id_") and name.endswith(".bin") for name in on_disk)
    assert any(name.startswith("id_") and name.endswith(".txt") for name in on_disk)
    # only the buffer of the last < 4 records is in memory
    assert sum(p.stat().st_size for p in (tmp_path / "d").glob("id_*.bin")) == 40 * dedup.ID_ENTRY.itemsize
    finder.resolve()
    left = {p.name.split("_")[0] for p in (tmp_path / "d").iterdir()}
    assert left <= {"dupid", "dupseq", "copies"}, left
    block = finder.block(30, 40)
    assert block.dup_id == {k: k + 1 for k in range(10)}  # ids 0..9 again, first at line row+1
    first = finder.block(0, 30)
    assert first.dup_of[2] == "id1"  # rows 1, 2, 4, 5, ... share ACGU; row 1 is the first
    assert first.copies == {1: 19}  # rows 2..29 with a sequence (not multiples of 3)


def test_colliding_keys_are_merged_as_documented(tmp_path, monkeypatch):
    """The finder trusts its keys: with a deliberately weak key, different strings that share
    it are duplicates. (With 128-bit BLAKE2b keys that has probability ~n^2 / 2^129.)"""
    monkeypatch.setattr(dedup, "key", lambda text: dedup.hashlib.blake2b(
        text[:1].encode(), digest_size=dedup.KEY_BYTES).digest())
    finder = DuplicateFinder(tmp_path / "d", spill_rows=2)
    finder.add(0, "apple", 1, "ACGU")
    finder.add(1, "avocado", 3, "CCCC")
    finder.add(2, "banana", 5, "AGGG")
    finder.resolve()
    block = finder.block(0, 3)
    assert block.dup_id == {1: 1} and block.dup_of == {2: "apple"} and block.copies == {0: 1}


def test_real_keys_are_128_bit_blake2b():
    assert dedup.key("URS0000000001_9606") == dedup.hashlib.blake2b(
        b"URS0000000001_9606", digest_size=16).digest()
    assert dedup.ID_ENTRY.itemsize == 49 and np.dtype(dedup.SEQ_ENTRY).itemsize == 24


def test_misuse_is_refused(tmp_path):
    finder = DuplicateFinder(tmp_path / "d")
    finder.add(3, "a", 1, None)
    with pytest.raises(ValueError, match="rows must increase"):
        finder.add(3, "b", 2, None)
    with pytest.raises(ValueError, match="non-empty"):
        finder.add(4, "", 2, None)
    with pytest.raises(RuntimeError, match="before resolve"):
        finder.block(0, 1)
    finder.resolve()
    with pytest.raises(RuntimeError, match="after resolve"):
        finder.add(5, "c", 3, None)
    assert finder.block(0, 10).dup_id == {}
