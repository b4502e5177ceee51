"""Training data: split tables -> length-bucketed, masked, cropped batches.

Every random choice (crop window, masked positions, replacement tokens) comes from a numpy
generator seeded by (seed, epoch, sample index) in training and by (seed, sample id) in
validation. A batch is therefore a pure function of (seed, epoch, batch position): it does not
depend on worker processes, on the global RNG, or on where a run was resumed, which is what
makes exact resume possible. Validation masks are the same every epoch, so epochs compare.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from genesis_rna.errors import ConfigError, InputFileError
from genesis_rna.folding import ThermoFeatures
from genesis_rna.tokenization import (
    A_ID,
    CLS_ID,
    MASK_ID,
    PAD_ID,
    SEP_ID,
    STRUCTURE_CLASSES,
    Tokenizer,
)

IGNORE_INDEX = -100  # torch cross_entropy's default ignore_index

_TOKENIZER = Tokenizer()
_ELEMENT_LUT = np.full(256, 255, dtype=np.uint8)
for _k, _c in enumerate(STRUCTURE_CLASSES):
    _ELEMENT_LUT[ord(_c)] = _k


def fingerprint_row(h, rid: bytes, toks: np.ndarray, els: np.ndarray, prs: np.ndarray) -> None:
    """Add one sequence to a data fingerprint (the same bytes for tables and packed splits)."""
    # arrays go in through the buffer protocol (C-contiguous: their bytes, with no copy)
    for part in (rid, b"\0", toks, b"\1", els, b"\2", prs, b"\3"):
        h.update(part)


@dataclass
class SplitData:
    """One split held as compact numpy arrays (uint8 tokens and labels, int32 pairs)."""

    ids: list[str]
    tokens: list[np.ndarray]  # per sequence [n] uint8 nucleotide ids, no special tokens
    elements: list[np.ndarray]  # per sequence [n] uint8 structure class ids
    pairs: list[np.ndarray]  # per sequence [k, 2] int32, 0-based, i < j
    lengths: np.ndarray  # [N] int64
    # per sequence, ViennaRNA's features (genesis_rna.thermo), for a model that reads them
    thermo: list[ThermoFeatures] | None = None

    def thermo_at(self, k: int) -> ThermoFeatures | None:
        return None if self.thermo is None else self.thermo[k]

    def __len__(self) -> int:
        return len(self.ids)

    def fingerprint(self) -> str:
        """sha1 over ids, tokens, labels and pairs: a checkpoint resumes only on the same data."""
        h = hashlib.sha1()
        for rid, toks, els, prs in zip(self.ids, self.tokens, self.elements, self.pairs, strict=True):
            fingerprint_row(h, rid.encode(), toks, els, prs)
        return h.hexdigest()

    @property
    def sequences(self) -> list[str]:
        return [_TOKENIZER.decode(toks) for toks in self.tokens]


def _encode_row(path: Path, row: int, rid: str, seq: str) -> np.ndarray:
    try:
        return _TOKENIZER.encode(seq, add_special_tokens=False)
    except ValueError as exc:
        raise InputFileError(path, f"row {row} (id {rid}): {exc}") from None


def encode_row(path: Path, row: int, rid: str, seq: str, el: str | None, pi, pj
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One split-table row as (tokens, element ids, pairs [k, 2] int32), validated."""
    toks = _encode_row(path, row, rid, seq)
    n = len(toks)
    if el is None or len(el) != n:
        got = "missing" if el is None else f"length {len(el)}"
        raise InputFileError(path, f"row {row} (id {rid}): elements {got}, sequence length {n}")
    lab = _ELEMENT_LUT[np.frombuffer(el.encode("ascii", "replace"), dtype=np.uint8)]
    if (lab == 255).any():
        pos = int(np.argmax(lab == 255))
        raise InputFileError(
            path, f"row {row} (id {rid}): element {el[pos]!r} at {pos} not in {STRUCTURE_CLASSES}"
        )
    p = np.stack([np.asarray(pi or [], np.int32), np.asarray(pj or [], np.int32)], axis=1)
    if len(p) and not ((p[:, 0] >= 0).all() and (p[:, 0] < p[:, 1]).all() and (p[:, 1] < n).all()):
        raise InputFileError(path, f"row {row} (id {rid}): pairs must satisfy 0 <= i < j < {n}")
    return toks, lab, p


SPLIT_COLUMNS = ["id", "sequence", "elements", "pair_i", "pair_j"]


def load_split(path: str | Path) -> SplitData:
    """Read a split table (schema ``tables.SPLITS``) into memory, labels validated.

    For evaluation and small tables; training reads packed splits (``genesis_rna.packed``),
    which hold nothing per sequence in Python objects.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "split table not found")
    table = pq.read_table(path, columns=SPLIT_COLUMNS)
    ids = table.column("id").to_pylist()
    cols = [table.column(c).to_pylist() for c in SPLIT_COLUMNS[1:]]
    tokens, elements, pairs = [], [], []
    for row, (rid, seq, el, pi, pj) in enumerate(zip(ids, *cols, strict=True)):
        toks, lab, p = encode_row(path, row, rid, seq, el, pi, pj)
        tokens.append(toks)
        elements.append(lab)
        pairs.append(p)
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    return SplitData(ids, tokens, elements, pairs, lengths)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def bucket_length(n_tokens: int, max_len: int, multiple: int) -> int:
    """Padded batch width: round up to a multiple so few distinct shapes reach the kernels."""
    return min(max_len, _round_up(n_tokens, multiple))


class RNADataset(Dataset):
    """Items are addressed as (epoch, index) so that the epoch reaches worker processes."""

    def __init__(self, data: SplitData, max_len: int, mask_prob: float, seed: int, train: bool):
        self.data = data
        self.window = max_len - 2  # room for CLS and SEP
        self.mask_prob = mask_prob
        self.seed = seed
        self.train = train

    def __len__(self) -> int:
        return len(self.data)

    def _rng(self, epoch: int, idx: int) -> np.random.Generator:
        if self.train:
            return np.random.default_rng([self.seed, epoch, idx])
        # Validation: fixed per sample id, identical every epoch.
        return np.random.default_rng([self.seed, zlib.crc32(self.data.ids[idx].encode())])

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, idx = key
        rng = self._rng(epoch, idx)
        toks = self.data.tokens[idx]
        labels = self.data.elements[idx]
        pairs = self.data.pairs[idx]
        thermo = self.data.thermo_at(idx)
        n = len(toks)
        start = 0
        if n > self.window:  # crop: random window in training, the first window in validation
            if self.train:
                start = int(rng.integers(0, n - self.window + 1))
            n = self.window
            toks = toks[start : start + n]
            labels = labels[start : start + n]
            keep = (pairs[:, 0] >= start) & (pairs[:, 1] < start + n)
            pairs = pairs[keep] - start
            if thermo is not None:
                thermo = thermo.crop(start, n)
        seq = toks.astype(np.int64)
        inp = seq.copy()
        masked = rng.random(n) < self.mask_prob
        if not masked.any():
            masked[int(rng.integers(0, n))] = True
        action = rng.random(n)
        random_nt = rng.integers(A_ID, A_ID + 4, size=n)  # A C G U
        inp[masked & (action < 0.8)] = MASK_ID
        swap = masked & (action >= 0.8) & (action < 0.9)
        inp[swap] = random_nt[swap]
        mlm = np.where(masked, seq, IGNORE_INDEX)
        return {
            "index": idx,
            "input": inp,
            "seq": seq,
            "mlm": mlm,
            "struct": labels.astype(np.int64),
            "pairs": pairs,
            **thermo_sample(thermo),
        }


def thermo_sample(thermo: ThermoFeatures | None) -> dict:
    """A sample's sparse thermodynamic features (none when the data has none)."""
    if thermo is None:
        return {}
    return {"bpp": np.stack([thermo.bpp_i, thermo.bpp_j], 1), "bpp_p": thermo.bpp_p,
            "bpp_x": thermo.bpp_x, "mfe": thermo.mfe}


def _sparse_rows(samples: Sequence[dict], key: str) -> torch.Tensor:
    """Rows (batch row, i, j) in token coordinates (i < j) of every sample's ``key`` pairs."""
    rows = [np.column_stack([np.full(len(s[key]), k, np.int64),
                             np.sort(np.asarray(s[key], np.int64).reshape(-1, 2), axis=1) + 1])
            for k, s in enumerate(samples) if len(s[key])]
    return torch.from_numpy(np.concatenate(rows) if rows else np.zeros((0, 3), np.int64))


def collate(samples: Sequence[dict], max_len: int, bucket_multiple: int) -> dict[str, torch.Tensor]:
    """Pad to the bucket width; place CLS at 0 and SEP after the last nucleotide.

    Pairs stay sparse (``pair_index``: rows of batch row, i, j with i < j in token coordinates);
    ``dense_pair_target`` builds the [B, T, T] map only for the rows that are trained, on the
    training device (AST draws more candidates than it trains, and a dense map per candidate
    built here in the loader workers would cost O(T^2) each).
    """
    b = len(samples)
    thermo = "bpp" in samples[0]
    if any(("bpp" in s) != thermo for s in samples):
        raise ValueError("thermodynamic features for some samples of a batch only")
    width = bucket_length(max(len(s["seq"]) for s in samples) + 2, max_len, bucket_multiple)
    tokens = torch.full((b, width), PAD_ID, dtype=torch.long)
    seq_tokens = torch.full((b, width), PAD_ID, dtype=torch.long)
    mlm = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
    struct = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
    lengths = torch.zeros(b, dtype=torch.long)
    for k, s in enumerate(samples):
        n = len(s["seq"])
        lengths[k] = n
        for dst, arr in ((tokens, s["input"]), (seq_tokens, s["seq"])):
            dst[k, 0] = CLS_ID
            dst[k, 1 : n + 1] = torch.from_numpy(arr)
            dst[k, n + 1] = SEP_ID
        mlm[k, 1 : n + 1] = torch.from_numpy(s["mlm"])
        struct[k, 1 : n + 1] = torch.from_numpy(s["struct"])
    pos = torch.arange(width)
    attention_mask = pos[None, :] < (lengths[:, None] + 2)
    nucleotide_mask = (pos[None, :] >= 1) & (pos[None, :] <= lengths[:, None])
    extra = {}
    if thermo:  # sparse, like the pairs: densified on the training device (thermo_maps)
        extra = {"bpp_index": _sparse_rows(samples, "bpp"),
                 "bpp_prob": torch.from_numpy(np.concatenate(
                     [np.asarray(s["bpp_p"], np.float32) for s in samples if len(s["bpp"])]
                     or [np.zeros(0, np.float32)])),
                 "mfe_index": _sparse_rows(samples, "mfe")}
        extra_sets = min(s["bpp_x"].shape[1] for s in samples)
        if extra_sets:  # the same cells under further parameter sets
            extra["bpp_xprob"] = torch.from_numpy(np.concatenate(
                [np.asarray(s["bpp_x"][:, :extra_sets], np.float32) for s in samples
                 if len(s["bpp"])] or [np.zeros((0, extra_sets), np.float32)]))
    return {
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "tokens": tokens,  # [B, T] model input (masked)
        "seq_tokens": seq_tokens,  # [B, T] unmasked sequence (for pair post-processing)
        "attention_mask": attention_mask,  # [B, T] real tokens incl. CLS/SEP
        "nucleotide_mask": nucleotide_mask,  # [B, T] nucleotides only
        "mlm_labels": mlm,  # [B, T] original id at masked positions, else IGNORE_INDEX
        "struct_labels": struct,  # [B, T] class id at nucleotides, else IGNORE_INDEX
        "pair_index": _sparse_rows(samples, "pairs"),  # [P, 3] row, i, j
        "lengths": lengths,  # [B] nucleotides per sample
        **extra,  # bpp_index [Q, 3], bpp_prob [Q], mfe_index [M, 3], bpp_xprob [Q, S - 1]
    }


def thermo_sets(batch: dict[str, torch.Tensor]) -> int:
    """How many parameter sets' pair probabilities a batch carries (``folding.PARAMETER_SETS``)."""
    return 1 + (batch["bpp_xprob"].shape[1] if "bpp_xprob" in batch else 0)


def thermo_maps(batch: dict[str, torch.Tensor], parameter_sets: int = 1) -> torch.Tensor:
    """The symmetric [B, 1 + S, T, T] float map of a batch's thermodynamic features (pair
    probability, MFE pair, then the pair probabilities under ``PARAMETER_SETS[1:S]``), S =
    ``parameter_sets``, on the batch's device."""
    b, t = batch["tokens"].shape
    if parameter_sets > thermo_sets(batch):
        raise ConfigError("thermo_parameter_sets",
                          f"the model reads {parameter_sets} ViennaRNA parameter sets, the "
                          f"data carries {thermo_sets(batch)}: compute the thermo stage with "
                          f"thermo.parameter_sets >= {parameter_sets}")
    maps = torch.zeros((b, 1 + parameter_sets, t, t), dtype=torch.float32,
                       device=batch["tokens"].device)
    r, i, j = batch["bpp_index"].to(maps.device).unbind(1)
    p = batch["bpp_prob"].to(maps.device)
    if parameter_sets > 1:
        p = torch.cat([p[:, None], batch["bpp_xprob"][:, : parameter_sets - 1].to(maps.device)], 1)
    else:
        p = p[:, None]
    channels = torch.tensor([0, *range(2, parameter_sets + 1)], device=maps.device)
    maps[r[:, None], channels, i[:, None], j[:, None]] = p
    maps[r[:, None], channels, j[:, None], i[:, None]] = p
    r, i, j = batch["mfe_index"].to(maps.device).unbind(1)
    maps[r, 1, i, j] = 1.0
    maps[r, 1, j, i] = 1.0
    return maps


def model_inputs(batch: dict[str, torch.Tensor], config, tokens: str = "tokens") -> dict:
    """Keyword arguments of the model's forward for a batch: ``tokens`` (or the unmasked
    ``seq_tokens``), the attention mask and, for a model that reads them (``config``:
    its ModelConfig), the thermodynamic feature maps."""
    out = {"tokens": batch[tokens], "attention_mask": batch["attention_mask"]}
    if config.thermo_features:
        if "bpp_index" not in batch:
            raise ConfigError("thermo_features", "the model reads thermodynamic features but "
                              "the data has none: pack the split with the thermo stage's "
                              "features (pack_split), or train with --no-thermo_features")
        out["thermo"] = thermo_maps(batch, config.thermo_parameter_sets)
    return out


def dense_pair_target(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The symmetric [B, T, T] bool pair map of a batch, on the batch's device."""
    b, t = batch["tokens"].shape
    target = torch.zeros((b, t, t), dtype=torch.bool, device=batch["tokens"].device)
    r, i, j = batch["pair_index"].to(target.device).unbind(1)
    target[r, i, j] = True
    target[r, j, i] = True
    return target


# a batch's sparse entries (rows of batch row, i, j) -> the per-entry values aligned with them
SPARSE_KEYS = {"pair_index": (), "bpp_index": ("bpp_prob", "bpp_xprob"), "mfe_index": ()}


def subset_batch(batch: dict[str, torch.Tensor], rows: torch.Tensor, bucket_multiple: int) -> dict:
    """Rows ``rows`` of a batch, re-trimmed to their own bucket width (AST sub-batches)."""
    width = batch["tokens"].shape[1]
    new_w = bucket_length(int(batch["lengths"][rows].max()) + 2, width, bucket_multiple)
    out = {}
    new_row = torch.full((len(batch["tokens"]),), -1, dtype=torch.long)
    new_row[rows] = torch.arange(len(rows))
    for key, val in batch.items():
        if key in SPARSE_KEYS:  # rows (batch row, i, j), and the values that go with them
            kept = new_row[val[:, 0]] >= 0
            out[key] = torch.cat([new_row[val[kept, :1]], val[kept, 1:]], 1)
            for aligned in SPARSE_KEYS[key]:
                if aligned in batch:
                    out[aligned] = batch[aligned][kept]
            continue
        if any(key in v for v in SPARSE_KEYS.values()):
            continue
        v = val[rows]
        if v.dim() == 2:
            v = v[:, :new_w]
        # slices of the wider batch are strided views; kernels run far faster on dense copies
        out[key] = v.contiguous()
    return out


def micro_batch_rows(lengths: torch.Tensor, width: int, max_cells: int, bucket_multiple: int
                     ) -> list[torch.Tensor]:
    """Rows of a batch grouped so that each group's pair map (rows x its own width^2) holds at
    most ``max_cells`` cells, longest rows first; a single row wider than that is a group of
    its own. ``max_cells`` 0, or a batch that fits: one group of all rows in their order.

    The pair map and the activations saved for its backward grow as width^2, so at a fixed
    batch size one wide batch sets the step's peak memory; groups bounded in cells bound it
    whatever the lengths (micro-batches whose gradients add up to the batch's step)."""
    n = len(lengths)
    if not max_cells or n * width * width <= max_cells:
        return [torch.arange(n)]
    order = torch.argsort(lengths, descending=True, stable=True)
    groups, start = [], 0
    while start < n:
        w = bucket_length(int(lengths[order[start]]) + 2, width, bucket_multiple)
        take = max(1, max_cells // (w * w))
        groups.append(order[start:start + take])
        start += take
    return groups


_U64 = np.uint64


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, element-wise on uint64 (wrapping arithmetic)."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


class LazyPermutation:
    """A pseudo-random permutation of ``range(n)`` fixed by ``key``, evaluated at any positions
    without ever holding it: a 4-round Feistel network on [0, 4^h) >= n (round function
    splitmix64 with per-round keys from ``key``) and cycle walking, which restricts a
    permutation of the larger domain to [0, n). The shuffled epoch order of a sampler over
    tens of millions of sequences then costs no memory per sequence."""

    ROUNDS = 4

    def __init__(self, n: int, key: Sequence[int]):
        self.n = n
        self.half = max(1, (max(n - 1, 1).bit_length() + 1) // 2)  # bits per half
        self.keys = np.random.default_rng(list(key)).integers(
            0, 2**63, size=self.ROUNDS, dtype=np.uint64)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        h, mask = _U64(self.half), _U64((1 << self.half) - 1)
        left, right = x >> h, x & mask
        for k in self.keys:
            left, right = right, left ^ (_mix64(right ^ k) & mask)
        return (left << h) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        out = self._encrypt(np.asarray(positions, dtype=np.uint64))
        outside = out >= self.n
        while outside.any():  # at most a few rounds: the domain is below 4 n
            out[outside] = self._encrypt(out[outside])
            outside = out >= self.n
        return out.astype(np.int64)


def sort_keys(lengths: np.ndarray, block: int = 1 << 20) -> np.ndarray:
    """The sampler's copy of the lengths: uint16 (2 B per sequence; lengths above 65,535 sort
    as 65,535, beyond any max_len). A memory map is read from its file in blocks, so its pages
    do not stay mapped in the process."""
    n = len(lengths)
    out = np.empty(n, dtype=np.uint16)
    if isinstance(lengths, np.memmap) and lengths.filename and n:
        with open(lengths.filename, "rb") as fh:
            fh.seek(lengths.offset)
            for a in range(0, n, block):
                part = np.fromfile(fh, dtype=lengths.dtype, count=min(block, n - a))
                out[a : a + len(part)] = np.minimum(part, 65535)
        return out
    for a in range(0, n, block):
        out[a : a + block] = np.minimum(np.asarray(lengths[a : a + block]), 65535)
    return out


class BucketBatchSampler(Sampler):
    """Length-bucketed batches in an order fixed by (seed, epoch), optionally sharded by rank.

    Training: the epoch's sample order is a pseudo-random permutation (``LazyPermutation``),
    cut into chunks of ``chunk_batches`` batches; each chunk is sorted by length and cut into
    batches, and the batches are visited in a shuffled order. Similar lengths share a batch
    (little padding) while the data order stays random. A chunk is built when one of its
    batches is asked for (a few are cached), so the sampler holds 2 B per sequence (the sort
    keys) and 4 B per batch, whatever the split's size. Validation: one global length sort, no
    shuffling. ``set_epoch(epoch, start_batch)`` lets a resumed run skip the batches it
    already trained.

    Multi-process (``world_size`` > 1): ``batch_size`` is the *global* batch, and the global
    batch order is built exactly as in one process with that batch size. Rank r then takes
    every world_size-th sample of each global batch, starting at r (a strided split keeps the
    token counts of the ranks balanced: each global batch is sorted by length). So an N-process
    run with per-rank batch b sees the batches of a one-process run with batch N*b. A short
    last batch with fewer samples than ranks leaves some ranks nothing; they get a placeholder
    (the batch's first sample) that ``is_placeholder`` flags, which the trainer runs with zero
    weight so that every rank still joins the gradient all-reduce.
    """

    CACHED_CHUNKS = 4

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, shuffle: bool,
                 chunk_batches: int = 50, rank: int = 0, world_size: int = 1):
        assert 0 <= rank < world_size, (rank, world_size)
        self.lengths = sort_keys(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.chunk_batches = chunk_batches
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0
        n = len(self.lengths)
        self._index_dtype = np.int32 if n < 2**31 else np.int64
        # validation: one length sort, the same every epoch
        self._sorted = (None if shuffle else
                        np.argsort(self.lengths, kind="stable").astype(self._index_dtype))
        # (epoch, permutation, batch order, position of the short batch in it)
        self._epoch_state: tuple[int, LazyPermutation, np.ndarray, int] | None = None
        self._chunks: dict[tuple[int, int], np.ndarray] = {}

    def _state(self, epoch: int) -> tuple[LazyPermutation, np.ndarray, int]:
        if self._epoch_state is None or self._epoch_state[0] != epoch:
            nb = self.num_batches()
            rng = np.random.default_rng([self.seed, epoch, 7])
            order = rng.permutation(nb).astype(self._index_dtype)
            short = int(np.flatnonzero(order == nb - 1)[0]) if nb else 0
            perm = LazyPermutation(len(self.lengths), [self.seed, epoch, 11])
            self._epoch_state = (epoch, perm, order, short)
        return self._epoch_state[1:]

    def _chunk(self, epoch: int, c: int, perm: LazyPermutation) -> np.ndarray:
        """Chunk ``c`` of the epoch's permuted order, sorted by length (stable)."""
        key = (epoch, c)
        if key not in self._chunks:
            size = self.batch_size * self.chunk_batches
            idx = perm(np.arange(c * size, min(len(self.lengths), (c + 1) * size)))
            idx = idx[np.argsort(self.lengths[idx], kind="stable")].astype(self._index_dtype)
            if len(self._chunks) >= self.CACHED_CHUNKS:
                self._chunks.pop(next(iter(self._chunks)))
            self._chunks[key] = idx
        return self._chunks[key]

    def _batch(self, batch_number: int, epoch: int | None = None) -> np.ndarray:
        """Sample indices of global batch ``batch_number`` of the epoch."""
        epoch = self.epoch if epoch is None else epoch
        bs = self.batch_size
        if not self.shuffle:
            return self._sorted[batch_number * bs : (batch_number + 1) * bs]
        perm, order, _ = self._state(epoch)
        j = int(order[batch_number])  # the batch's place in the chunk-sorted order
        start = (j % self.chunk_batches) * bs
        return self._chunk(epoch, j // self.chunk_batches, perm)[start : start + bs]

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All global batches of an epoch as lists, for inspection and tests (the trainer
        never builds it)."""
        return [self._batch(k, epoch).tolist() for k in range(self.num_batches())]

    def shard(self, batch: Sequence[int] | np.ndarray) -> Sequence[int] | np.ndarray:
        """This rank's part of a global batch: positions rank, rank + world_size, ..."""
        return batch[self.rank :: self.world_size]

    def shard_positions(self, batch_number: int, epoch: int | None = None) -> list[int]:
        """Positions (in the epoch's global sample order) of this rank's samples in a batch."""
        epoch = self.epoch if epoch is None else epoch
        size = len(self._batch(batch_number, epoch))
        start = batch_number * self.batch_size
        if self.shuffle:  # every batch before it is full, but the short one (if it came first)
            short = self._state(epoch)[2]
            if short < batch_number:
                start -= self.batch_size - len(self._batch(short, epoch))
        return [start + k for k in range(self.rank, size, self.world_size)]

    def is_placeholder(self, batch_number: int, epoch: int | None = None) -> bool:
        """True when this rank holds no sample of that global batch (only a stand-in)."""
        return len(self._batch(batch_number, epoch)) <= self.rank

    def num_batches(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for k in range(self.start_batch, self.num_batches()):
            batch = self._batch(k)
            mine = self.shard(batch)
            if not len(mine):
                mine = batch[:1]
            yield [(self.epoch, int(i)) for i in mine]

    def __len__(self) -> int:
        return self.num_batches() - self.start_batch


def make_loader(dataset: RNADataset, sampler: BucketBatchSampler, max_len: int,
                bucket_multiple: int, num_workers: int, seed: int, pin_memory: bool = False
                ) -> DataLoader:
    # A private generator keeps the DataLoader from drawing on the global torch RNG, whose
    # state must depend only on the training steps taken (exact resume).
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=partial(collate, max_len=max_len, bucket_multiple=bucket_multiple),
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=pin_memory,
    )


def encode_sequences(sequences: Sequence[str], max_len: int | None = None,
                     bucket_multiple: int = 32,
                     thermo: Sequence[ThermoFeatures] | None = None) -> dict[str, torch.Tensor]:
    """Inference batch for raw sequences (no masking, no crop: too-long input is an error),
    with their thermodynamic features when given."""
    toks = [_TOKENIZER.encode(s, add_special_tokens=False) for s in sequences]
    longest = max(len(t) for t in toks) + 2
    if max_len is not None and longest > max_len:
        raise ValueError(f"sequence of {longest - 2} nt exceeds the model's max_len {max_len} - 2")
    samples = [
        {"index": k, "input": t.astype(np.int64), "seq": t.astype(np.int64),
         "mlm": np.full(len(t), IGNORE_INDEX), "struct": np.full(len(t), IGNORE_INDEX),
         "pairs": np.zeros((0, 2), np.int32),
         **thermo_sample(thermo[k] if thermo is not None else None)}
        for k, t in enumerate(toks)
    ]
    return collate(samples, max_len or _round_up(longest, bucket_multiple), bucket_multiple)
