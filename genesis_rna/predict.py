"""Fold new sequences with a trained model: FASTA (or any structure file) in, dot-bracket
FASTA, CT or bpseq out.

    python -m genesis_rna.predict [--checkpoint model.pt] --input seqs.fasta --output out.fa \
        [--format dbn|ct|bpseq] [--draw DIR] [--pair_probs probs.parquet|probs.npz] \
        [--threshold X] [--decoder mea|greedy] [--rejected FILE] [--strict]

The input's format is read from its content (``benchmarks.sniff_format``). A record that cannot
be folded (no id, empty, a gap or an illegal character) is skipped and listed at the end (all
of them in ``--rejected``); the run fails only with ``--strict`` (at the first such record,
before folding) or when no record is left. Ids given twice are folded twice, with a warning.
Output and drawings: ``predict_io``. Each dot-bracket record is ``>id``, the normalized sequence
(T -> U, IUPAC codes -> N) and the predicted structure followed by its free energy under
ViennaRNA as RNAfold prints it (``(((...))) ( -1.20)``): ``.`` an unpaired base, ``(`` and
``)`` the two bases of a pair. With the default ``mea`` decoder the structure is nested (no crossing
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
from pathlib import Path

import numpy as np
import pyarrow as pa

from genesis_rna.atomic import atomic_path
from genesis_rna.decoding import DECODERS
from genesis_rna.errors import ConfigError, GenesisError, InputFileError
from genesis_rna.folding import structure_energy
from genesis_rna.inference import (
    Prediction,
    load_for_inference,
    predict_structures,
)
from genesis_rna.predict_io import (
    FORMATS,
    InputSequence,
    draw_predictions,
    duplicate_id_warnings,
    output_layout,
    read_inputs,
    rejected_summary,
    write_rejected,
    write_structures,
)
from genesis_rna.runtime import add_inference_arguments
from genesis_rna.shipped_model import REPO, SHIPPED_MODEL, resolve_checkpoint
from genesis_rna.tables import write_table


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
                  progress: bool = True, fmt: str = "dbn", draw: str | Path | None = None,
                  rejected_path: str | Path | None = None, strict: bool = False) -> dict:
    """Fold every usable record of ``input_path``; returns {sequences, windowed, threshold,
    decoder, rejected, where}.

    ``decoder`` defaults to the one the checkpoint's threshold was tuned for. ``fmt`` and
    ``output``: see ``predict_io.output_layout``; ``draw``: a folder for the drawings; ``checkpoint``
    None: the shipped model."""
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ConfigError("threshold", f"must be in (0, 1), got {threshold}")
    if decoder is not None and decoder not in DECODERS:
        raise ConfigError("decoder", f"{decoder!r} not in {DECODERS}")
    if pair_probs is not None and not str(pair_probs).lower().endswith((".parquet", ".npz")):
        raise ConfigError("pair_probs", f"{pair_probs}: use a .parquet or .npz file name")
    output_layout(fmt, output)  # a bad --format/--output pair fails before any folding
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    records, rejected = read_inputs(input_path)
    if strict and rejected:
        bad = rejected[0]
        raise InputFileError(input_path, f"record {bad.id!r}: {bad.reason} (--strict)", bad.line)
    if not records:
        raise InputFileError(input_path, "no record could be folded\n"
                             + rejected_summary(input_path, rejected, 0))
    for warning in duplicate_id_warnings(records):
        print(warning, file=sys.stderr)
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
        keep_pair_probs=pair_probs is not None or draw is not None, prob_floor=prob_floor,
        progress=progress, desc="fold", threads=threads or 1)
    energies = [structure_energy(r.sequence, p.pairs) for r, p in zip(records, preds, strict=True)]
    where = write_structures(fmt, output, records, [p.pairs for p in preds], energies)
    if pair_probs is not None:
        write_pair_probs(pair_probs, records, preds)
    if draw is not None:
        draw_predictions(draw, records, preds, energies)
    if rejected_path is not None:
        write_rejected(rejected_path, rejected)
    if rejected:
        print(rejected_summary(input_path, rejected, len(records)), file=sys.stderr)
    n_windowed = sum(p.windowed for p in preds)
    if n_windowed:
        print(f"{n_windowed} of {len(preds)} sequences are longer than "
              f"{window or model.config.max_len - 2} nt and were predicted in sliding windows",
              file=sys.stderr)
    return {"sequences": len(preds), "windowed": n_windowed, "threshold": thr, "decoder": dec,
            "rejected": len(rejected), "where": where}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genesis_rna.predict",
                                description="Predict secondary structures with a trained model.")
    p.add_argument("--checkpoint", help="final model.pt of a training run (default: the shipped "
                   f"model, {SHIPPED_MODEL.relative_to(REPO)})")
    p.add_argument("--input", required=True,
                   help="FASTA(.gz) of RNA (or DNA) sequences, or any structure file (dot-bracket "
                        "FASTA, bpseq, ct, bpRNA CSV; read by content, structures ignored)")
    p.add_argument("--output",
                   help="dbn: the dot-bracket FASTA (default: stdout); ct: a folder, or one file "
                        "ending in .ct; bpseq: a folder")
    p.add_argument("--format", choices=FORMATS, default="dbn",
                   help="dbn: dot-bracket FASTA with RNAfold-style energies; ct, bpseq: one file "
                        "per sequence (safe names, index.tsv)")
    p.add_argument("--draw", metavar="DIR",
                   help="also write per sequence ViennaRNA's SVG drawing and a dot plot PNG "
                        "(model probabilities above the diagonal, the structure below)")
    p.add_argument("--rejected", metavar="FILE",
                   help="TSV of the records not folded (id, line, reason)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first record that cannot be folded (default: skip it, "
                        "list it at the end)")
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
                             progress=args.progress, fmt=args.format, draw=args.draw,
                             rejected_path=args.rejected, strict=args.strict)
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    skipped = f", {done['rejected']} skipped" if done["rejected"] else ""
    drawn = f"; drawings in {args.draw}" if args.draw else ""
    print(f"folded {done['sequences']} sequences{skipped} ({done['decoder']} decoder, threshold "
          f"{done['threshold']:.3f}) -> {done['where']}{drawn}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
