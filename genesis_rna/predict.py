"""Fold new sequences with a trained model: FASTA in, dot-bracket FASTA out.

    python -m genesis_rna.predict [--checkpoint model.pt] --input seqs.fasta --output out.fa \
        [--pair_probs probs.parquet|probs.npz] [--threshold X] [--decoder mea|greedy]

Each output record is ``>id``, the normalized sequence (T -> U, IUPAC codes -> N) and the
predicted structure in dot-bracket notation: ``.`` an unpaired base, ``(`` and ``)`` the two
bases of a pair. With the default ``mea`` decoder the structure is nested (no crossing
pairs), so ``()`` is all it uses. The ``greedy`` decoder may predict crossing pairs
(pseudoknots); those go on further bracket pages, ``[]``, then ``{}``, ``<>``, then letter
pairs ``Aa``, ``Bb``, ... (each page nested on its own). Sequences longer than
the model's window are predicted in sliding windows (see ``inference``) and counted on stderr.
A model trained with thermodynamic features gets them computed here (ViennaRNA, as the thermo
stage computes them), so a FASTA gives the structures that evaluation scores.
``--pair_probs`` writes the pair probabilities >= ``--prob_floor`` as a long table
(index, id, i, j, prob; 0-based positions, i < j): Parquet, or numpy ``.npz`` (plain arrays,
readable with ``allow_pickle=False``). Without ``--checkpoint`` the model shipped in
``resources/models/`` folds them (``genesis_rna.shipped_model``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from genesis_rna import seqio
from genesis_rna.atomic import atomic_open, atomic_path
from genesis_rna.decoding import DECODERS
from genesis_rna.errors import ConfigError, GenesisError, InputFileError
from genesis_rna.fasta import parse_header
from genesis_rna.inference import (
    Prediction,
    load_for_inference,
    predict_structures,
)
from genesis_rna.runtime import add_inference_arguments
from genesis_rna.sequences import FASTA_RECORDS, InvalidSequence, normalize_sequence
from genesis_rna.shipped_model import REPO, SHIPPED_MODEL, resolve_checkpoint
from genesis_rna.structures import pairs_to_dot_bracket
from genesis_rna.tables import write_table


@dataclass
class InputSequence:
    id: str
    sequence: str  # normalized
    line: int  # 1-based header line


def read_fasta(path: str | Path) -> list[InputSequence]:
    """Records of a FASTA(.gz) file; sequences normalized (``sequences.FASTA_RECORDS``,
    ambiguity codes -> N). Malformed input raises ``InputFileError`` naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "input FASTA not found")
    records: list[InputSequence] = []
    for rec in seqio.read_fasta(path):
        rid, _, _ = parse_header(rec.title)
        if not rid:
            raise InputFileError(path, "header without an id", rec.line)
        try:
            seq = normalize_sequence(rec.sequence, FASTA_RECORDS).sequence
        except InvalidSequence as exc:
            raise InputFileError(path, f"record {rid!r}: {exc}", rec.line) from None
        records.append(InputSequence(rid, seq, rec.line))
    return records


def write_dot_bracket_fasta(path: str | Path | None, records: list[InputSequence],
                            predictions: list[Prediction]) -> None:
    """``>id``, sequence, structure per record; to stdout when ``path`` is None."""
    text = "".join(f">{r.id}\n{r.sequence}\n{pairs_to_dot_bracket(p.pairs, len(r.sequence))}\n"
                   for r, p in zip(records, predictions, strict=True))
    if path is None:
        sys.stdout.write(text)
    else:
        with atomic_open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


def write_pair_probs(path: str | Path, records: list[InputSequence],
                     predictions: list[Prediction]) -> None:
    """Long table index, id, i, j, prob (0-based, i < j) as .parquet or .npz (no pickle)."""
    path = Path(path)
    parts = [(k, r.id, p.pair_probs) for k, (r, p) in enumerate(zip(records, predictions,
                                                                     strict=True))]
    sizes = [len(pp[0]) for _, _, pp in parts]
    index = np.repeat(np.arange(len(parts), dtype=np.int32), sizes)
    ids = np.repeat(np.array([rid for _, rid, _ in parts], dtype=str), sizes)
    i = np.concatenate([pp[0] for _, _, pp in parts]).astype(np.int32)
    j = np.concatenate([pp[1] for _, _, pp in parts]).astype(np.int32)
    prob = np.concatenate([pp[2] for _, _, pp in parts]).astype(np.float32)
    if path.name.lower().endswith(".npz"):
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, index=index, id=ids, i=i, j=j, prob=prob)
    else:
        write_table(path, pa.table({"index": index, "id": pa.array(ids.tolist(), pa.string()),
                                    "i": i, "j": j, "prob": prob}))


def predict_fasta(checkpoint: str | Path | None, input_path: str | Path,
                  output: str | Path | None = None, *, pair_probs: str | Path | None = None,
                  threshold: float | None = None, decoder: str | None = None,
                  device: str = "auto",
                  precision: str | None = None, window: int | None = None,
                  prob_floor: float = 0.01, threads: int | None = None,
                  progress: bool = True) -> dict:
    """Fold every record of ``input_path``; returns {sequences, windowed, threshold, decoder}.

    ``decoder`` defaults to the one the checkpoint's threshold was tuned for; ``checkpoint``
    None: the shipped model."""
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ConfigError("threshold", f"must be in (0, 1), got {threshold}")
    if decoder is not None and decoder not in DECODERS:
        raise ConfigError("decoder", f"{decoder!r} not in {DECODERS}")
    if pair_probs is not None and not str(pair_probs).lower().endswith((".parquet", ".npz")):
        raise ConfigError("pair_probs", f"{pair_probs}: use a .parquet or .npz file name")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    records = read_fasta(input_path)
    loaded = load_for_inference(resolve_checkpoint(checkpoint), device=device,
                                precision=precision, window=window)
    model, tokenizer, config = loaded.model, loaded.tokenizer, loaded.config
    dev, prec = loaded.device, loaded.precision
    thr = loaded.threshold if threshold is None else threshold
    dec = decoder or loaded.decoder
    if dec != loaded.decoder and threshold is None:
        print(f"note: the checkpoint's threshold {thr:.3f} was tuned for the {loaded.decoder} "
              f"decoder, not {dec}; pass --threshold to choose one", file=sys.stderr)
    preds = predict_structures(
        model, [r.sequence for r in records], thr, tokenizer=tokenizer, device=dev,
        precision=prec, window=window, min_sep=int(config.get("pair_min_sep", 4)), decoder=dec,
        keep_pair_probs=pair_probs is not None, prob_floor=prob_floor, progress=progress,
        desc="fold", threads=threads or 1)
    write_dot_bracket_fasta(output, records, preds)
    if pair_probs is not None:
        write_pair_probs(pair_probs, records, preds)
    n_windowed = sum(p.windowed for p in preds)
    if n_windowed:
        print(f"{n_windowed} of {len(preds)} sequences are longer than "
              f"{window or model.config.max_len - 2} nt and were predicted in sliding windows",
              file=sys.stderr)
    return {"sequences": len(preds), "windowed": n_windowed, "threshold": thr, "decoder": dec}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genesis_rna.predict",
                                description="Predict secondary structures with a trained model.")
    p.add_argument("--checkpoint", help="final model.pt of a training run (default: the shipped "
                   f"model, {SHIPPED_MODEL.relative_to(REPO)})")
    p.add_argument("--input", required=True, help="FASTA(.gz) of RNA (or DNA) sequences")
    p.add_argument("--output", help="dot-bracket FASTA to write (default: stdout)")
    p.add_argument("--pair_probs", help="also write pair probabilities (.parquet or .npz)")
    p.add_argument("--prob_floor", type=float, default=0.01,
                   help="smallest pair probability written to --pair_probs")
    p.add_argument("--threshold", type=float,
                   help="pair-probability threshold (default: the one tuned on validation)")
    p.add_argument("--decoder", choices=DECODERS,
                   help="mea: nested structure, dot-bracket '()' only; greedy: may cross "
                        "(pseudoknots on '[]', '{}', '<>', 'Aa' ...) (default: the checkpoint's)")
    add_inference_arguments(p)
    p.add_argument("--window", type=int,
                   help="nt per sliding window for long sequences (default max_len - 2)")
    p.add_argument("--threads", type=int, help="torch CPU threads, and ViennaRNA processes for "
                   "a model that reads thermodynamic features (computed here, with progress)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        done = predict_fasta(args.checkpoint, args.input, args.output,
                             pair_probs=args.pair_probs, threshold=args.threshold,
                             decoder=args.decoder,
                             device=args.device, precision=args.precision, window=args.window,
                             prob_floor=args.prob_floor, threads=args.threads,
                             progress=args.progress)
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    where = args.output or "stdout"
    print(f"folded {done['sequences']} sequences ({done['decoder']} decoder, threshold "
          f"{done['threshold']:.3f}) -> {where}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
