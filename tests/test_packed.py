"""Packed splits: exact round trip to the tables, identical batches, lazy maps, bad input."""

from __future__ import annotations

import os
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from genesis_rna.data import (
    BucketBatchSampler,
    LazyPermutation,
    RNADataset,
    load_split,
    make_loader,
)
from genesis_rna.errors import InputFileError
from genesis_rna.packed import PackedSplit, PackWriter, pack_table, prepare_split, read_meta
from genesis_rna.tables import SPLITS, write_table
from tests.train_fixtures import make_rows, make_splits


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tables")
    make_splits(d, n_train=45, n_val=11, min_len=5, max_len=90)
    # the sharp edges: a row with no pairs, lower-case DNA letters (normalized on reading),
    # a non-ASCII id
    rows = pq.read_table(d / "train.parquet").to_pylist()
    rows[3].update(pair_i=[], pair_j=[], elements="E" * rows[3]["length"],
                   structure="." * rows[3]["length"])
    rows[4]["sequence"] = rows[4]["sequence"].lower().replace("u", "t")
    rows[5]["id"] = "séq/5 ü"
    write_table(d / "train.parquet", pa.Table.from_pylist(rows, schema=SPLITS))
    return d


def test_packed_split_round_trips_exactly_to_the_table(tables, tmp_path):
    table = load_split(tables / "train.parquet")
    meta = pack_table(tables / "train.parquet", tmp_path / "train", block_rows=7)  # 7 blocks
    packed = PackedSplit(tmp_path / "train")
    assert len(packed) == len(table) == meta["n"] == 45
    assert [packed.ids[k] for k in range(len(packed))] == table.ids
    for k in range(len(table)):
        for got, want in ((packed.tokens[k], table.tokens[k]),
                          (packed.elements[k], table.elements[k]),
                          (packed.pairs[k], table.pairs[k])):
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got, want), k
    assert np.array_equal(packed.lengths, table.lengths)
    assert packed.pairs[3].shape == (0, 2)
    # the same fingerprint either way: a checkpoint made on tables resumes on the pack
    assert packed.fingerprint() == table.fingerprint()
    assert meta["n_tokens"] == int(table.lengths.sum())


def _reference_epoch_batches(lengths, bs, seed, epoch, shuffle, chunk_batches):
    """The sampler's order built eagerly, with per-sample lists: the whole permutation at
    once, every chunk sorted, the batches in their shuffled order."""
    n = len(lengths)
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[k : k + bs].tolist() for k in range(0, n, bs)]
    perm = LazyPermutation(n, [seed, epoch, 11])(np.arange(n))
    batches = []
    for c in range(0, n, bs * chunk_batches):
        part = perm[c : c + bs * chunk_batches]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[k : k + bs].tolist() for k in range(0, len(part), bs))
    rng = np.random.default_rng([seed, epoch, 7])
    return [batches[k] for k in rng.permutation(len(batches))]


@pytest.mark.parametrize("n", [1, 97, 1000, 4096])
def test_lazy_sampler_gives_the_eagerly_built_batch_order(n):
    lengths = np.random.default_rng(n).integers(3, 900, size=n)
    for shuffle in (True, False):
        for epoch in (0, 3):
            s = BucketBatchSampler(lengths.astype(np.int32), 16, seed=11, shuffle=shuffle,
                                   chunk_batches=4)
            assert s.epoch_batches(epoch) == _reference_epoch_batches(
                lengths, 16, 11, epoch, shuffle, 4)


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 65_537])
def test_lazy_permutation_is_a_shuffle(n):
    p = LazyPermutation(n, [4, 0, 11])
    order = p(np.arange(n))
    assert sorted(order.tolist()) == list(range(n))
    assert np.array_equal(p(np.arange(n)[::-1]), order[::-1])  # any positions, any order
    if n >= 1000:
        assert abs(np.corrcoef(np.arange(n), order)[0, 1]) < 0.1
        assert not np.array_equal(order, LazyPermutation(n, [4, 1, 11])(np.arange(n)))


def test_sampler_memory_does_not_grow_per_sequence(tmp_path):
    """2 B per sequence (uint16 sort keys) and 4 B per batch after a whole epoch, read from a
    memory map without holding its pages."""
    n, bs = 200_000, 32
    path = tmp_path / "lengths.bin"
    np.random.default_rng(0).integers(20, 500, size=n).astype("<i4").tofile(path)
    lengths = np.memmap(path, dtype="<i4", mode="r")
    s = BucketBatchSampler(lengths, bs, seed=0, shuffle=True)
    seen = np.zeros(n, dtype=bool)
    for batch in s:
        seen[[i for _, i in batch]] = True
    assert seen.all()
    held = sum(v.nbytes for v in vars(s).values() if isinstance(v, np.ndarray))
    held += sum(v.nbytes for v in s._chunks.values())
    held += sum(v.nbytes for v in s._epoch_state if isinstance(v, np.ndarray))
    assert s.lengths.dtype == np.uint16 and not isinstance(s.lengths, np.memmap)
    assert held <= 2 * n + 4 * s.num_batches() + s.CACHED_CHUNKS * 4 * bs * s.chunk_batches


def _all_batches(data, train: bool, workers: int) -> list[dict]:
    ds = RNADataset(data, max_len=48, mask_prob=0.15, seed=5, train=train)
    sampler = BucketBatchSampler(data.lengths, 6, seed=5, shuffle=train, chunk_batches=2)
    out = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch, 1 if epoch else 0)  # resumed mid-epoch on the second
        out.extend(make_loader(ds, sampler, 48, 16, workers, seed=5))
    return out


def test_packed_path_produces_the_batches_of_the_table_path(tables, tmp_path):
    for split, train in (("train", True), ("val", False)):
        old = _all_batches(load_split(tables / f"{split}.parquet"), train, workers=0)
        pack_table(tables / f"{split}.parquet", tmp_path / split)
        new = _all_batches(PackedSplit(tmp_path / split), train, workers=2)
        assert len(old) == len(new) > 2
        for a, b in zip(old, new, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key]), (split, key)


def test_workers_receive_the_folder_not_the_arrays(tmp_path):
    sizes = []
    for n in (10, 20_000):
        d = tmp_path / f"n{n}"
        with PackWriter(d) as w:
            lengths = np.full(n, 50)
            w.add_block([f"s{k}" for k in range(n)], np.ones(50 * n, np.uint8),
                        np.zeros(50 * n, np.uint8), lengths, np.tile([[0, 9]], (n, 1)),
                        np.ones(n, np.int64))
        ds = RNADataset(PackedSplit(d), max_len=64, mask_prob=0.15, seed=0, train=True)
        ds[(0, n - 1)]  # maps opened in this process
        sizes.append(len(ForkingPickler.dumps(ds)))  # what a spawned DataLoader worker gets
    assert sizes[1] - sizes[0] < 100, sizes  # the meta's counts grow by a few digits, no more


def test_damaged_or_incomplete_packs_are_named(tables, tmp_path):
    d = tmp_path / "val"
    pack_table(tables / "val.parquet", d)
    with open(d / "tokens.bin", "r+b") as fh:
        fh.truncate(10)
    with pytest.raises(InputFileError, match=r"tokens\.bin: 10 bytes, meta\.json says"):
        PackedSplit(d)
    (d / "meta.json").unlink()
    with pytest.raises(InputFileError, match="not a packed split"):
        PackedSplit(d)


def test_a_bad_row_names_the_table_row_and_leaves_no_pack(tmp_path):
    rows = make_rows(30, seed=3)
    rows[25]["elements"] = rows[25]["elements"][:-1] + "X"
    write_table(tmp_path / "train.parquet", pa.Table.from_pylist(rows, schema=SPLITS))
    with pytest.raises(InputFileError, match=r"train\.parquet: row 25 .*element 'X'"):
        pack_table(tmp_path / "train.parquet", tmp_path / "packed" / "train", block_rows=8)
    assert os.listdir(tmp_path / "packed") == []  # neither the folder nor its temporary


def test_prepare_split_packs_tables_once_and_again_when_they_change(tmp_path):
    data = make_splits(tmp_path / "d", n_train=12, n_val=4)
    cache = tmp_path / "out" / "packed_data"
    lines: list[str] = []
    p = prepare_split(data, "train", cache, log=lines.append)
    assert p == cache / "train" and "packing" in lines[-2] and read_meta(p)["n"] == 12
    assert prepare_split(data, "train", cache, log=lines.append) == p
    assert "reading" in lines[-1]
    rows = make_rows(7, seed=9)
    write_table(data / "train.parquet", pa.Table.from_pylist(rows, schema=SPLITS))
    prepare_split(data, "train", cache, log=lines.append)
    assert "packing" in lines[-2] and len(PackedSplit(p)) == 7
    # a packed folder in data_dir itself is read as it is (the workflow's layout) ...
    pack_table(data / "val.parquet", data / "val")
    assert prepare_split(data, "val", cache, log=lines.append) == data / "val"
    # ... but not when the table beside it has changed since
    write_table(data / "val.parquet", pa.Table.from_pylist(rows, schema=SPLITS))
    with pytest.raises(InputFileError, match="another version"):
        prepare_split(data, "val", cache, log=lines.append)
    with pytest.raises(InputFileError, match="split table not found"):
        prepare_split(data, "test2", cache, log=lines.append)


def test_tiled_split_repeats_the_source_rows_up_to_any_size(tables, tmp_path):
    from genesis_rna.loader_memory import tiled_split

    pack_table(tables / "train.parquet", tmp_path / "src")
    src = PackedSplit(tmp_path / "src")
    meta = tiled_split(tmp_path / "src", tmp_path / "big", 2 * len(src) + 7)  # cut last copy
    big = PackedSplit(tmp_path / "big")
    assert len(big) == meta["n"] == 2 * len(src) + 7
    for k in range(len(big)):
        s = k % len(src)
        assert big.ids[k] == f"{src.ids[s]}#{k // len(src)}"
        for got, want in ((big.tokens[k], src.tokens[s]), (big.elements[k], src.elements[s]),
                          (big.pairs[k], src.pairs[s])):
            assert np.array_equal(got, want), k
    assert np.array_equal(big.lengths, np.resize(src.lengths, len(big)))
