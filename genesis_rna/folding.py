"""ViennaRNA folding, one place for the package: the annotate stage's MFE labels
(``mfe_fold`` with its settings) and the evaluation's baseline folds (``vienna_structures``:
default parameters, in worker processes when worth it, cached on disk by version and sequence).

``RNA`` is imported inside the functions: importing this module costs nothing where ViennaRNA
is never called, and spawned workers import it once.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from genesis_rna.atomic import atomic_path
from genesis_rna.errors import InputFileError
from genesis_rna.pair_metrics import Pair
from genesis_rna.structures import parse_dot_bracket


def vienna_version() -> str:
    import RNA

    return RNA.__version__


def mfe_fold(sequence: str, max_bp_span: int = -1, temperature: float = 37.0) -> tuple[str, float]:
    """ViennaRNA MFE structure and free energy (kcal/mol); -1 means no base-pair span limit.

    Settings are arguments, not process state, so the annotation stage and the evaluation
    baseline (default parameters) can fold in one process without affecting each other.
    """
    import RNA

    md = RNA.md()
    md.temperature = temperature
    if max_bp_span and max_bp_span > 0:
        md.max_bp_span = max_bp_span
    structure, mfe = RNA.fold_compound(sequence, md).mfe()
    return structure, float(mfe)


def structure_energy(sequence: str, pairs: Iterable[Pair]) -> float:
    """Free energy (kcal/mol, ViennaRNA default parameters) of a structure on ``sequence``, as
    ``RNA.fold_compound(sequence).eval_structure`` gives it (what RNAfold prints beside a
    structure). Pseudoknotted pairs are outside ViennaRNA's energy model: the energy is that of
    the nested part (``structures.split_pseudoknots``)."""
    import RNA

    from genesis_rna.structures import pairs_to_dot_bracket, split_pseudoknots

    nested, _ = split_pseudoknots(pairs)
    db = pairs_to_dot_bracket(nested, len(sequence))
    return float(RNA.fold_compound(sequence).eval_structure(db))


# Worker processes are spawned (the parent holds torch's threads, so no fork); each start
# costs an import of this package, a few seconds, so small jobs fold in-process. Estimated
# serial folding time: about (L / 100 nt)^3 / 215 s per sequence (ViennaRNA MFE is cubic).
PARALLEL_MIN_SECONDS = 5.0


def _fold_seconds(lengths: Iterable[int]) -> float:
    return sum((n / 100) ** 3 for n in lengths) / 215


def vienna_mfe(sequence: str) -> str:
    """ViennaRNA MFE dot-bracket with default parameters (37 C, no span limit): the baseline
    the field reports, whatever settings the training corpus was annotated with."""
    return mfe_fold(sequence)[0]


def _cache_key(sequence: str, version: str) -> str:
    return hashlib.sha1(f"{version}\t{sequence}".encode()).hexdigest()


def vienna_structures(sequences: Sequence[str], *, threads: int = 1, progress: bool = False,
                      desc: str = "ViennaRNA", cache: str | Path | None = None
                      ) -> list[list[Pair]]:
    """MFE pairs (default ViennaRNA parameters) of each sequence, in input order.

    ``threads`` > 1 folds in worker processes when the job is big enough to pay for them.
    ``cache``: a Parquet file of (key, structure) keyed by ViennaRNA version and sequence,
    read if present and rewritten with the new folds, so reruns skip finished sequences.
    """
    version = vienna_version()
    keys = [_cache_key(s, version) for s in sequences]
    known: dict[str, str] = {}
    if cache is not None and Path(cache).exists():
        try:
            t = pq.read_table(cache, columns=["key", "structure"])
        except (pa.ArrowInvalid, OSError, KeyError) as exc:
            raise InputFileError(cache, f"unreadable ViennaRNA cache ({exc}); delete it") from None
        known = dict(zip(t.column("key").to_pylist(), t.column("structure").to_pylist(),
                         strict=True))
    todo = sorted({k: s for k, s in zip(keys, sequences, strict=True) if k not in known}.items(),
                  key=lambda kv: -len(kv[1]))  # longest first: better load balance
    bar = tqdm(total=len(todo), desc=desc, unit="seq", disable=not progress, mininterval=1,
               file=sys.stderr)
    seqs = [s for _, s in todo]
    if threads > 1 and len(todo) > 1 and _fold_seconds(map(len, seqs)) >= PARALLEL_MIN_SECONDS:
        with mp.get_context("spawn").Pool(min(threads, len(todo))) as pool:
            for (key, _), structure in zip(todo, pool.imap(vienna_mfe, seqs, chunksize=1),
                                           strict=True):
                known[key] = structure
                bar.update(1)
    else:
        for (key, _), seq in zip(todo, seqs, strict=True):
            known[key] = vienna_mfe(seq)
            bar.update(1)
    bar.close()
    if cache is not None and todo:
        table = pa.table({"key": list(known), "structure": list(known.values())})
        with atomic_path(cache) as tmp:
            pq.write_table(table, tmp, compression="zstd")
    return [parse_dot_bracket(known[k], source="ViennaRNA") for k in keys]


