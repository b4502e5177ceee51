"""Packed splits: a split table as flat arrays on disk that training reads by offset.

A packed split is a folder of raw little-endian arrays plus ``meta.json`` (written last, so a
folder without it is incomplete), the layout of nanoGPT's ``train.bin`` extended by offsets:

    tokens.bin    uint8 [T]       nucleotide ids of all sequences, back to back (no CLS/SEP)
    elements.bin  uint8 [T]       structure class ids, aligned with tokens
    offsets.bin   int64 [N + 1]   sequence k is tokens[offsets[k] : offsets[k + 1]]
    pairs.bin     int32 [P, 2]    0-based (i, j), i < j, per sequence in table order
    pair_offsets.bin int64 [N + 1]
    lengths.bin   int32 [N]       the sampler's sort key
    ids.bin       uint8 [I]       UTF-8 ids back to back (validation masks are seeded by id)
    id_offsets.bin int64 [N + 1]

and, packed with the thermo stage's features (``meta.json`` "thermo": true; for a fine-tune
whose model reads them):

    bpp.bin       int32 [Q, 2]    0-based (i, j), i < j, ViennaRNA pair probabilities >= floor
    bpp_p.bin     float32 [Q]
    bpp_x.bin     float32 [Q, S - 1] the same cells under further parameter sets ("thermo_sets": S
                                  of ``folding.PARAMETER_SETS``; only when S > 1)
    bpp_offsets.bin int64 [N + 1]
    mfe.bin       int32 [M, 2]    the MFE structure's pairs
    mfe_offsets.bin int64 [N + 1]

Why plain numpy files read by offset: the arrays are a handful of flat buffers, and a
sequence is two small reads (``os.pread`` of its offsets, then of its values) with no
dependency beyond numpy; every DDP rank and DataLoader worker reads the same files, so the
kernel's page cache holds them once. Not ``np.memmap`` for the per-sequence reads: the
kernel maps 64 kB of cached file around every page fault (fault-around), so random reads made
a worker's RSS grow with the split (3.6 GB per worker after 200 batches of a 10 M-sequence
split); with reads only the bytes asked for pass through the process. Arrow IPC would work
too but adds list-column indirection on every read; litdata and mosaicml-streaming solve
sharded remote storage and their own sampling, while exact resume here needs this project's
sampler order, so they would be dead weight.

``meta.json`` carries the counts, the data fingerprint (the same sha1 that
``data.SplitData.fingerprint`` computes from the table, so checkpoints resume across the two)
and the source table's path, size and mtime (``prepare_split`` repacks when it changed).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from genesis_rna.atomic import AtomicWriter, atomic_directory
from genesis_rna.data import SPLIT_COLUMNS, encode_row, fingerprint_row
from genesis_rna.errors import InputFileError
from genesis_rna.folding import ThermoFeatures
from genesis_rna.thermo import ThermoStore

FORMAT = 1
META = "meta.json"
# name: (dtype, row shape); the leading dimension comes from meta.json's counts
ARRAYS: dict[str, tuple[str, tuple[int, ...]]] = {
    "tokens": ("uint8", ()), "elements": ("uint8", ()), "offsets": ("<i8", ()),
    "pairs": ("<i4", (2,)), "pair_offsets": ("<i8", ()), "lengths": ("<i4", ()),
    "ids": ("uint8", ()), "id_offsets": ("<i8", ()),
}
THERMO_ARRAYS: dict[str, tuple[str, tuple[int, ...]]] = {
    "bpp": ("<i4", (2,)), "bpp_p": ("<f4", ()), "bpp_offsets": ("<i8", ()),
    "mfe": ("<i4", (2,)), "mfe_offsets": ("<i8", ()),
}


def _arrays(meta: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    if not meta.get("thermo"):
        return dict(ARRAYS)
    extra = meta.get("thermo_sets", 1) - 1
    return {**ARRAYS, **THERMO_ARRAYS, **({"bpp_x": ("<f4", (extra,))} if extra > 0 else {})}


def _count(name: str, meta: dict) -> int:
    n = meta["n"]
    return {"tokens": meta["n_tokens"], "elements": meta["n_tokens"], "pairs": meta["n_pairs"],
            "ids": meta["n_id_bytes"], "lengths": n, "bpp": meta.get("n_bpp"),
            "bpp_p": meta.get("n_bpp"), "bpp_x": meta.get("n_bpp"),
            "mfe": meta.get("n_mfe")}.get(name, n + 1)


class PackWriter(AtomicWriter):
    """Append blocks of sequences; the folder appears at ``directory`` only on ``close()``.

    Memory is one block: rows are streamed to the files and the fingerprint is updated per
    row, so packing tens of millions of sequences needs no more than packing a thousand.
    """

    def __init__(self, directory: str | Path, source: dict | None = None, thermo: bool = False,
                 thermo_sets: int = 1):
        self.directory = Path(directory)
        self.source = source
        self.thermo = thermo
        self.thermo_sets = thermo_sets
        self._ctx = atomic_directory(self.directory)
        self._tmp = self._ctx.__enter__()
        self._files = {name: open(self._tmp / f"{name}.bin", "wb")
                       for name in _arrays(self._meta_keys())}
        self._sha = hashlib.sha1()
        self.n = self.n_tokens = self.n_pairs = self.n_id_bytes = self.n_bpp = self.n_mfe = 0
        for name in ("offsets", "pair_offsets", "id_offsets",
                     *(("bpp_offsets", "mfe_offsets") if thermo else ())):
            self._files[name].write(np.zeros(1, "<i8").tobytes())

    def add_block(self, ids: Sequence[str], tokens: np.ndarray, elements: np.ndarray,
                  lengths: np.ndarray, pairs: np.ndarray, pair_counts: np.ndarray,
                  thermo: Sequence[ThermoFeatures] | None = None) -> None:
        """Sequences back to back: ``tokens``/``elements`` [sum(lengths)], ``pairs``
        [sum(pair_counts), 2]; ``thermo``: one ThermoFeatures per sequence (thermo packs)."""
        if (thermo is not None) != self.thermo or (thermo is not None and len(thermo) != len(ids)):
            raise ValueError("thermodynamic features must come with every block of a thermo pack")
        lengths = np.asarray(lengths, np.int64)
        pair_counts = np.asarray(pair_counts, np.int64)
        tokens, elements = np.asarray(tokens, np.uint8), np.asarray(elements, np.uint8)
        pairs = np.ascontiguousarray(pairs, "<i4").reshape(-1, 2)
        assert len(ids) == len(lengths) == len(pair_counts), "one length and pair count per id"
        assert len(tokens) == len(elements) == lengths.sum() and len(pairs) == pair_counts.sum()
        id_bytes = [rid.encode() for rid in ids]
        off = np.concatenate([[0], np.cumsum(lengths)])
        poff = np.concatenate([[0], np.cumsum(pair_counts)])
        o, po = off.tolist(), poff.tolist()  # Python ints: fast slicing in the row loop
        for k, rid in enumerate(id_bytes):
            fingerprint_row(self._sha, rid, tokens[o[k] : o[k + 1]], elements[o[k] : o[k + 1]],
                            pairs[po[k] : po[k + 1]])
        # the thermodynamic features are a function of the sequence (and of the ViennaRNA
        # version, which the thermo stage records): the fingerprint stays the table's
        if thermo is not None:
            self._add_thermo(thermo)
        id_len = np.fromiter((len(b) for b in id_bytes), np.int64, len(id_bytes))
        f = self._files
        f["tokens"].write(tokens.tobytes())
        f["elements"].write(elements.tobytes())
        f["pairs"].write(pairs.tobytes())
        f["lengths"].write(lengths.astype("<i4").tobytes())
        f["ids"].write(b"".join(id_bytes))
        f["offsets"].write((self.n_tokens + off[1:]).astype("<i8").tobytes())
        f["pair_offsets"].write((self.n_pairs + poff[1:]).astype("<i8").tobytes())
        f["id_offsets"].write((self.n_id_bytes + np.cumsum(id_len)).astype("<i8").tobytes())
        self.n += len(id_bytes)
        self.n_tokens += int(off[-1])
        self.n_pairs += int(poff[-1])
        self.n_id_bytes += int(id_len.sum())

    def _meta_keys(self) -> dict:
        return {"thermo": True, "thermo_sets": self.thermo_sets} if self.thermo else {}

    def _add_thermo(self, thermo: Sequence[ThermoFeatures]) -> None:
        f = self._files
        if self.thermo_sets > 1:
            if min(t.parameter_sets for t in thermo) < self.thermo_sets:
                raise ValueError(f"features with fewer than {self.thermo_sets} parameter sets")
            f["bpp_x"].write(np.concatenate([t.bpp_x[:, : self.thermo_sets - 1] for t in thermo])
                             .astype("<f4").tobytes())
        bpp_n = np.fromiter((len(t.bpp_i) for t in thermo), np.int64, len(thermo))
        mfe_n = np.fromiter((len(t.mfe) for t in thermo), np.int64, len(thermo))
        f["bpp"].write(np.concatenate([np.stack([t.bpp_i, t.bpp_j], 1) for t in thermo])
                       .astype("<i4").tobytes())
        f["bpp_p"].write(np.concatenate([t.bpp_p for t in thermo]).astype("<f4").tobytes())
        f["mfe"].write(np.concatenate([t.mfe.reshape(-1, 2) for t in thermo])
                       .astype("<i4").tobytes())
        f["bpp_offsets"].write((self.n_bpp + np.cumsum(bpp_n)).astype("<i8").tobytes())
        f["mfe_offsets"].write((self.n_mfe + np.cumsum(mfe_n)).astype("<i8").tobytes())
        self.n_bpp += int(bpp_n.sum())
        self.n_mfe += int(mfe_n.sum())

    def close(self) -> dict:
        """Finish the files, write meta.json, move the folder into place; returns the meta."""
        try:
            for fh in self._files.values():
                fh.close()
            meta = {"format": FORMAT, "n": self.n, "n_tokens": self.n_tokens,
                    "n_pairs": self.n_pairs, "n_id_bytes": self.n_id_bytes,
                    "fingerprint": self._sha.hexdigest(), "source": self.source,
                    "arrays": {name: {"dtype": dt, "row_shape": list(shape)}
                               for name, (dt, shape) in _arrays(self._meta_keys()).items()}}
            if self.thermo:
                meta.update(thermo=True, thermo_sets=self.thermo_sets, n_bpp=self.n_bpp,
                            n_mfe=self.n_mfe)
            with open(self._tmp / META, "w", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=2, sort_keys=True)
                fh.write("\n")
        except BaseException as exc:
            self.abort(exc)
            raise
        self._ctx.__exit__(None, None, None)
        return meta

    def abort(self, exc: BaseException) -> None:
        for fh in self._files.values():
            fh.close()
        self._ctx.__exit__(type(exc), exc, exc.__traceback__)


def table_source(table: str | Path) -> dict:
    """What a pack records of its table (and compares to decide whether it is current)."""
    path = Path(table).resolve()
    st = path.stat()
    return {"table": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def pack_table(table: str | Path, directory: str | Path, block_rows: int = 8192,
               thermo: ThermoStore | None = None) -> dict:
    """Pack a split table (schema ``tables.SPLITS``) into ``directory``, streaming by
    ``block_rows``; rows are validated as ``data.load_split`` validates them. With ``thermo``
    (the thermo stage's features of this table) every row's features are packed beside it; a
    row without them is an error naming it. Returns meta."""
    table = Path(table)
    if not table.exists():
        raise InputFileError(table, "split table not found")
    reader = pq.ParquetFile(table)
    missing = [c for c in SPLIT_COLUMNS if c not in reader.schema_arrow.names]
    if missing:
        raise InputFileError(table, f"missing split-table column(s) {missing}")
    row = 0
    with PackWriter(directory, source=table_source(table), thermo=thermo is not None,
                    thermo_sets=thermo.parameter_sets if thermo is not None else 1) as writer:
        for batch in reader.iter_batches(batch_size=block_rows, columns=SPLIT_COLUMNS):
            cols = batch.to_pydict()
            toks, els, prs, feats = [], [], [], []
            for rid, seq, el, pi, pj in zip(*(cols[c] for c in SPLIT_COLUMNS), strict=True):
                t, e, p = encode_row(table, row, rid, seq, el, pi, pj)
                toks.append(t)
                els.append(e)
                prs.append(p)
                if thermo is not None:
                    f = thermo.get(seq)
                    if f is None:
                        raise InputFileError(table, f"row {row} (id {rid}): no thermodynamic "
                                             "features for this sequence (see the thermo "
                                             "stage's rejected table)")
                    feats.append(f)
                row += 1
            if not toks:
                continue
            writer.add_block(cols["id"], np.concatenate(toks), np.concatenate(els),
                             np.array([len(t) for t in toks]), np.concatenate(prs),
                             np.array([len(p) for p in prs]),
                             feats if thermo is not None else None)
    return read_meta(directory)


def read_meta(directory: str | Path) -> dict:
    """meta.json of a packed split, checked against the array files beside it."""
    directory = Path(directory)
    path = directory / META
    if not path.exists():
        raise InputFileError(directory, f"not a packed split (no {META}; packing incomplete?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(path, f"unreadable: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputFileError(path, f"packed-split format {got!r}, this code reads {FORMAT}")
    for name, (dtype, shape) in _arrays(meta).items():
        f = directory / f"{name}.bin"
        want = _count(name, meta) * np.dtype(dtype).itemsize * int(np.prod(shape, dtype=int))
        have = f.stat().st_size if f.exists() else None
        if have != want:
            raise InputFileError(f, f"{have} bytes, meta.json says {want} (damaged pack: repack)")
    return meta


def is_packed(directory: str | Path) -> bool:
    return (Path(directory) / META).is_file()


class _FileArray:
    """Rows of one array file, read with ``os.pread`` (no map: only the bytes asked for are
    read, and nothing of the file stays in the process; the page cache holds it once)."""

    def __init__(self, path: Path, dtype: str, shape: tuple[int, ...], count: int):
        self.dtype, self.shape, self.count = np.dtype(dtype), shape, count
        self.row_bytes = self.dtype.itemsize * int(np.prod(shape, dtype=int))
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - lives with the split

    def rows(self, a: int, b: int) -> np.ndarray:
        n = max(0, min(b, self.count) - a)
        raw = os.pread(self._file.fileno(), n * self.row_bytes, a * self.row_bytes)
        if len(raw) != n * self.row_bytes:
            raise InputFileError(self._file.name, f"short read at row {a} (damaged pack: repack)")
        return np.frombuffer(raw, self.dtype).reshape(n, *self.shape).copy()


class _Ragged:
    """Item k of a flat array file cut by an offsets file: two reads, a fresh array."""

    def __init__(self, values: _FileArray, offsets: _FileArray):
        self.values, self.offsets = values, offsets

    def __len__(self) -> int:
        return self.offsets.count - 1

    def __getitem__(self, k: int) -> np.ndarray:
        if not 0 <= k < len(self):
            raise IndexError(k)
        a, b = self.offsets.rows(k, k + 2)
        return self.values.rows(int(a), int(b))


class _RaggedText(_Ragged):
    def __getitem__(self, k: int) -> str:
        return super().__getitem__(k).tobytes().decode()


class PackedSplit:
    """A packed split, read-only, with ``data.SplitData``'s interface (``ids``, ``tokens``,
    ``elements``, ``pairs`` indexable per sequence; ``lengths``; ``fingerprint()``).

    Sequences are read by offset with ``os.pread``; ``lengths`` (read in bulk) is a memory
    map. The files open on first use in each process and are dropped when the object is
    pickled, so a DataLoader worker (fork or spawn) receives only the folder name.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.meta = read_meta(self.directory)
        self._files: dict[str, _FileArray] | None = None
        self._lengths: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {"directory": self.directory, "meta": self.meta, "_files": None,
                "_lengths": None}

    def _array(self, name: str) -> _FileArray:
        if self._files is None:
            self._files = {n: _FileArray(self.directory / f"{n}.bin", dtype, shape,
                                         _count(n, self.meta))
                           for n, (dtype, shape) in _arrays(self.meta).items() if n != "lengths"}
        return self._files[name]

    def __len__(self) -> int:
        return int(self.meta["n"])

    def fingerprint(self) -> str:
        return str(self.meta["fingerprint"])

    @property
    def lengths(self) -> np.ndarray:
        if self._lengths is None:
            n = _count("lengths", self.meta)
            dtype, _ = ARRAYS["lengths"]
            self._lengths = (np.memmap(self.directory / "lengths.bin", dtype=dtype, mode="r",
                                       shape=(n,)) if n  # an empty file cannot be mapped
                             else np.zeros(0, dtype))
        return self._lengths

    @property
    def tokens(self) -> _Ragged:
        return _Ragged(self._array("tokens"), self._array("offsets"))

    @property
    def elements(self) -> _Ragged:
        return _Ragged(self._array("elements"), self._array("offsets"))

    @property
    def pairs(self) -> _Ragged:
        return _Ragged(self._array("pairs"), self._array("pair_offsets"))

    @property
    def ids(self) -> _RaggedText:
        return _RaggedText(self._array("ids"), self._array("id_offsets"))

    @property
    def has_thermo(self) -> bool:
        return bool(self.meta.get("thermo"))

    def thermo_at(self, k: int) -> ThermoFeatures | None:
        """Sequence ``k``'s thermodynamic features (energies are not packed: NaN), or None."""
        if not self.has_thermo:
            return None
        bpp = _Ragged(self._array("bpp"), self._array("bpp_offsets"))[k]
        p = _Ragged(self._array("bpp_p"), self._array("bpp_offsets"))[k]
        mfe = _Ragged(self._array("mfe"), self._array("mfe_offsets"))[k]
        x = (_Ragged(self._array("bpp_x"), self._array("bpp_offsets"))[k]
             if self.meta.get("thermo_sets", 1) > 1 else None)
        return ThermoFeatures(bpp[:, 0].copy(), bpp[:, 1].copy(), p, mfe, math.nan, math.nan, x)


def prepare_split(data_dir: str | Path, split: str, cache_dir: str | Path, write: bool = True,
                  log: Callable[[str], None] = print) -> Path:
    """The packed folder that training reads for ``split`` of ``data_dir``.

    ``data_dir/<split>/`` when it is a packed split (what the workflow's pack_split writes);
    else the table ``data_dir/<split>.parquet`` packed into ``cache_dir/<split>/``, reused
    while the table's path, size and mtime are those it was packed from. With ``write`` false
    (DDP ranks other than 0) only the path is returned: rank 0 packs, the others wait.
    """
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    packed, table = data_dir / split, data_dir / f"{split}.parquet"
    if is_packed(packed):
        if write and table.exists():  # both there: the pack must be of this table
            src = read_meta(packed).get("source") or {}
            if src and {k: src.get(k) for k in ("bytes", "mtime_ns")} != {
                    k: v for k, v in table_source(table).items() if k != "table"}:
                raise InputFileError(packed, f"packed from another version of {table}; repack "
                                     "it (the workflow's pack_split rule) or remove it")
        return packed
    if not table.exists():
        raise InputFileError(table, f"split table not found (nor a packed split at {packed})")
    target = cache_dir / split
    if write:
        current = False
        if is_packed(target):
            try:
                current = read_meta(target).get("source") == table_source(table)
            except InputFileError:
                current = False
        if current:
            log(f"{split}: reading {target} (packed from {table})")
        else:
            log(f"{split}: packing {table} into flat arrays at {target}")
            meta = pack_table(table, target)
            log(f"{split}: packed {meta['n']} sequences, {meta['n_tokens']} nt")
    return target
