"""Structure prediction with a trained model: batched, length-sorted, windowed when too long.

Sequences are sorted by length and cut into batches whose padded pair map (batch x T x T)
stays under a cell budget, so short sequences go many to a batch and long ones few; results
come back in input order. A sequence longer than the model's window (``max_len - 2``
nucleotides, room for CLS and SEP) is predicted in sliding windows of that size with a
stride of half a window: pair and structure-class probabilities are averaged over the
windows that contain both bases (a pair whose bases share no window gets probability 0),
then post-processed as usual. Nothing is dropped; each ``Prediction`` says whether it was
windowed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from genesis_rna.checkpoint import load_model
from genesis_rna.data import bucket_length, encode_sequences, model_inputs
from genesis_rna.decoding import DEFAULT_DECODER, check_decoder, decode_map
from genesis_rna.errors import ConfigError, InputFileError
from genesis_rna.folding import ThermoFeatures
from genesis_rna.pair_metrics import Pair
from genesis_rna.runtime import PRECISIONS, autocast_for, resolve_device, resolve_precision
from genesis_rna.sequences import MODEL_INPUT, normalize_sequence
from genesis_rna.thermo import features_for
from genesis_rna.tokenization import STRUCTURE_CLASSES, VOCAB, Tokenizer

_CLASS_BYTES = np.frombuffer(STRUCTURE_CLASSES.encode("ascii"), dtype=np.uint8)
# Pair-map cells (batch x T x T) per forward pass. On CPU small batches that stay in cache
# run fastest (measured on 2 cores: 2^17-2^18 cells ~2-3x faster than 2^21); GPUs want
# large batches.
CPU_BATCH_CELLS = 2**18
CUDA_BATCH_CELLS = 2**23


def default_batch_cells(device: torch.device) -> int:
    return CUDA_BATCH_CELLS if torch.device(device).type == "cuda" else CPU_BATCH_CELLS


@dataclass
class Prediction:
    """One sequence's prediction. Positions are 0-based nucleotide indices."""

    pairs: list[Pair]  # decoded pairs (i < j), see genesis_rna.decoding
    elements: str  # argmax structure class per base, one of EHSBIM each
    windowed: bool  # predicted in sliding windows (longer than the window)
    n_windows: int
    # Sparse pair probabilities (i < j, p >= prob_floor): arrays i, j (int32), p (float32);
    # None unless asked for.
    pair_probs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def window_starts(length: int, window: int, stride: int | None = None) -> list[int]:
    """Start positions of windows of ``window`` nt covering ``length`` nt; the last one ends
    exactly at the sequence end. One window (start 0) when the sequence fits."""
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    if length <= window:
        return [0]
    stride = stride or max(1, window // 2)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def length_batches(lengths: Sequence[int], max_tokens: int, batch_cells: int, max_batch: int,
                   bucket_multiple: int = 32) -> list[list[int]]:
    """Indices into ``lengths`` (nucleotides) grouped into batches in ascending length.

    A batch's padded width T is the bucketed longest length + 2 (CLS, SEP); batches grow while
    batch x T x T <= ``batch_cells`` (the pair map dominates memory) and size <= ``max_batch``.
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    for k in order.tolist():
        width = bucket_length(int(lengths[k]) + 2, max_tokens, bucket_multiple)
        if current and ((len(current) + 1) * width * width > batch_cells
                        or len(current) >= max_batch):
            batches.append(current)
            current = []
        current.append(k)
    if current:
        batches.append(current)
    return batches


def _elements(struct_probs: np.ndarray) -> str:
    return _CLASS_BYTES[np.argmax(struct_probs, axis=-1)].tobytes().decode("ascii")


def _sparse(probs: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i, j = np.nonzero(np.triu(np.ones(probs.shape, dtype=bool), k=1) & (probs >= floor))
    return i.astype(np.int32), j.astype(np.int32), probs[i, j].astype(np.float32)


class _Accumulator:
    """Sums of window predictions for one long sequence (dense L x L, freed when done)."""

    def __init__(self, length: int, n_classes: int, n_windows: int):
        self.pair_sum = np.zeros((length, length), dtype=np.float32)
        self.pair_cnt = np.zeros((length, length), dtype=np.uint16)
        self.struct_sum = np.zeros((length, n_classes), dtype=np.float64)
        self.struct_cnt = np.zeros(length, dtype=np.int64)
        self.remaining = n_windows

    def add(self, start: int, pair: np.ndarray, struct: np.ndarray) -> None:
        end = start + len(struct)
        self.pair_sum[start:end, start:end] += pair
        self.pair_cnt[start:end, start:end] += 1
        self.struct_sum[start:end] += struct
        self.struct_cnt[start:end] += 1
        self.remaining -= 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        pair = np.divide(self.pair_sum, self.pair_cnt, out=np.zeros_like(self.pair_sum),
                         where=self.pair_cnt > 0)
        return pair, self.struct_sum / self.struct_cnt[:, None]


def _forward_chunks(model: torch.nn.Module, chunks: Sequence[str], device: torch.device,
                    precision: str, batch_cells: int, max_batch: int,
                    thermo: Sequence[ThermoFeatures] | None = None
                    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(chunk index, pair probs [n, n], struct probs [n, C]) for every chunk, by length."""
    max_len = model.config.max_len
    for batch in length_batches([len(c) for c in chunks], max_len, batch_cells, max_batch):
        enc = encode_sequences([chunks[k] for k in batch], max_len=max_len,
                               thermo=[thermo[k] for k in batch] if thermo else None)
        enc = {k: v.to(device) for k, v in enc.items()}
        with autocast_for(device, precision):
            out = model.predict(**model_inputs(enc, model.config))
        pair = out["pair_probs"].float().cpu().numpy()
        struct = out["struct_probs"].float().cpu().numpy()
        for b, k in enumerate(batch):
            n = len(chunks[k])
            yield k, pair[b, 1 : n + 1, 1 : n + 1], struct[b, 1 : n + 1]


def predict_structures(
    model: torch.nn.Module,
    sequences: Sequence[str],
    threshold: float,
    *,
    tokenizer: Tokenizer | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    window: int | None = None,
    min_sep: int = 4,
    decoder: str = DEFAULT_DECODER,
    batch_cells: int | None = None,
    max_batch: int = 256,
    keep_pair_probs: bool = False,
    prob_floor: float = 0.01,
    progress: bool = False,
    desc: str = "predict",
    thermo: Sequence[ThermoFeatures] | None = None,
    threads: int = 1,
) -> list[Prediction]:
    """Predict pairs and structure classes for ``sequences`` (returned in input order).

    ``threshold``: pair-probability cut-off (the checkpoint's tuned one); ``decoder``: how
    probabilities become a structure (``mea``: nested, ``greedy``: may cross; see
    ``genesis_rna.decoding``; use the checkpoint's, its threshold was tuned for it). ``precision``:
    autocast dtype (``fp32``, ``bf16``, ``fp16``; see ``runtime.resolve_precision``). ``window``:
    nucleotides per window for sequences longer than that (default and maximum: the model's
    ``max_len - 2``). ``batch_cells``: budget of batch x T x T pair-map cells per forward
    pass (default per device, see ``default_batch_cells``). ``keep_pair_probs``: also return the (window-averaged) probabilities >= ``prob_floor``.
    Sequences are normalized under ``sequences.MODEL_INPUT`` (T -> U, IUPAC codes -> N); a character
    outside it raises ``ValueError`` naming the sequence and position. A model that reads
    thermodynamic features gets ``thermo`` (one ``ThermoFeatures`` per sequence, of the
    normalized sequence), or has them computed here (``thermo.features_for``, ``threads``
    ViennaRNA processes); a window reads the features of its bases.
    """
    if tokenizer is not None and tuple(tokenizer.vocab) != VOCAB:
        raise ValueError(f"checkpoint vocabulary {tokenizer.vocab} differs from this package's "
                         f"{VOCAB}; the model cannot be run with this version")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    check_decoder(decoder)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batch_cells = batch_cells or default_batch_cells(device)
    limit = model.config.max_len - 2
    window = limit if window is None else window
    if not 1 <= window <= limit:
        raise ValueError(f"window must be in 1..{limit} (the model's max_len - 2), got {window}")
    seqs = []
    for k, s in enumerate(sequences):
        try:
            seqs.append(normalize_sequence(s, MODEL_INPUT).sequence)
        except ValueError as exc:
            raise ValueError(f"sequence {k}: {exc}") from None

    feats: list[ThermoFeatures | None] | None = None
    if model.config.thermo_features:
        if thermo is not None and len(thermo) != len(seqs):
            raise ValueError(f"{len(thermo)} thermodynamic feature sets for {len(seqs)} sequences")
        feats = list(thermo) if thermo is not None else [None] * len(seqs)
        sets = model.config.thermo_parameter_sets
        missing = [k for k, s in enumerate(seqs)
                   if s and (feats[k] is None or feats[k].parameter_sets < sets)]
        for k, f in zip(missing, features_for([seqs[k] for k in missing], threads=threads,
                                              progress=progress, desc=f"{desc}: ViennaRNA",
                                              parameter_sets=sets),
                        strict=True):
            feats[k] = f

    # Cut every sequence into chunks: itself when it fits, else its sliding windows.
    chunks: list[str] = []
    chunk_feats: list[ThermoFeatures] = []
    owner: list[tuple[int, int]] = []  # chunk -> (sequence index, start)
    n_windows = [0] * len(seqs)
    for k, s in enumerate(seqs):
        if not s:
            continue
        for start in window_starts(len(s), window):
            chunks.append(s[start : start + window])
            if feats is not None:
                chunk_feats.append(feats[k].crop(start, len(chunks[-1])))
            owner.append((k, start))
            n_windows[k] += 1

    results: list[Prediction | None] = [None] * len(seqs)
    for k, s in enumerate(seqs):
        if not s:
            empty = np.zeros(0, np.int32)
            results[k] = Prediction([], "", False, 0, (empty, empty, np.zeros(0, np.float32))
                                    if keep_pair_probs else None)
    partial: dict[int, _Accumulator] = {}
    n_classes = len(STRUCTURE_CLASSES)

    def finish(k: int, pair: np.ndarray, struct: np.ndarray) -> None:
        results[k] = Prediction(
            pairs=decode_map(pair, seqs[k], threshold, decoder, min_sep),
            elements=_elements(struct),
            windowed=n_windows[k] > 1,
            n_windows=n_windows[k],
            pair_probs=_sparse(pair, prob_floor) if keep_pair_probs else None,
        )

    was_training = model.training
    model.eval()
    bar = tqdm(total=len(seqs), desc=desc, unit="seq", disable=not progress, mininterval=1,
               file=sys.stderr)
    bar.update(sum(r is not None for r in results))
    try:
        for c, pair, struct in _forward_chunks(model, chunks, device, precision, batch_cells,
                                               max_batch, chunk_feats or None):
            k, start = owner[c]
            if n_windows[k] == 1:
                finish(k, pair, struct)
                bar.update(1)
                continue
            acc = partial.get(k)
            if acc is None:
                acc = partial[k] = _Accumulator(len(seqs[k]), n_classes, n_windows[k])
            acc.add(start, pair, struct)
            if acc.remaining == 0:
                finish(k, *partial.pop(k).result())
                bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    assert not partial and all(r is not None for r in results), "a sequence was not predicted"
    return results  # type: ignore[return-value]


@dataclass
class LoadedModel:
    """A trained model ready for prediction, with what its checkpoint says about it."""

    model: torch.nn.Module
    tokenizer: Tokenizer
    config: dict  # the resolved training config
    threshold: float  # pair-probability threshold tuned on validation
    decoder: str  # the decoder the threshold was tuned for
    device: torch.device
    precision: str  # autocast precision used for inference on ``device``


def load_for_inference(checkpoint: str | Path, *, device: str = "auto",
                       precision: str | None = None, window: int | None = None) -> LoadedModel:
    """Load ``checkpoint`` for prediction; bad device, window or path raise typed errors."""
    dev = resolve_device(device)
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputFileError(checkpoint, "checkpoint not found")
    model, tokenizer, config, threshold, decoder = load_model(checkpoint, device=dev)
    if window is not None and not 1 <= window <= model.config.max_len - 2:
        raise ConfigError("window", f"must be in 1..{model.config.max_len - 2} (the model's "
                          f"max_len - 2), got {window}")
    prec = resolve_precision(precision or config.get("mixed_precision", "fp32"), dev)
    return LoadedModel(model, tokenizer, config, threshold, decoder, dev, prec)
