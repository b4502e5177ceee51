"""The thermo stage: ViennaRNA's view of every sequence of a data set, computed once.

For each sequence of a split table (the fine-tune data) or a curated benchmark, the stage
stores what ``folding.thermo_features`` returns (partition-function pair probabilities above
``folding.BPP_FLOOR``, the MFE pairs and energies, default parameters; with ``parameter_sets``
> 1 also the probabilities under ``folding.PARAMETER_SETS[1:]``) as one Parquet row
(schema ``THERMO``). A data set is cut into ``shards`` by row number (row k goes to shard
k mod shards), each shard one job with its own worker processes; readers take the list of
shard files (``ThermoStore``) and look features up by sequence. The stage is what

- ``pack_split`` packs beside the labels for a fine-tune that reads the features,
- ``evaluate`` reads for the model's input and for the ViennaRNA baselines (MFE, and MEA:
  ``decoding.nested_pairs`` on these probabilities),
- ``predict`` computes for itself (``features_for``), so a FASTA in gives the structures that
  evaluation scores.

Pretraining never needs it: stage 1 learns from a corpus of any size without folding it twice.
Every sequence the stage cannot fold (after the model's input policy ``sequences.MODEL_INPUT``:
letters it cannot read, empty, longer than ``max_length``) is listed in the shard's rejected
table with the reason.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from genesis_rna.errors import ConfigError, InputFileError
from genesis_rna.folding import (
    BPP_FLOOR,
    PARAMETER_SETS,
    ThermoFeatures,
    thermo_features,
    vienna_version,
)
from genesis_rna.sequences import MODEL_INPUT, normalize_sequence
from genesis_rna.tables import REJECTED, ParquetStreamWriter

THERMO = pa.schema([
    ("id", pa.string()),
    ("sequence", pa.string()),
    ("bpp_i", pa.list_(pa.int32())),
    ("bpp_j", pa.list_(pa.int32())),
    ("bpp_p", pa.list_(pa.float32())),
    ("mfe_i", pa.list_(pa.int32())),
    ("mfe_j", pa.list_(pa.int32())),
    ("mfe_energy", pa.float32()),
    ("ensemble_energy", pa.float32()),
    # [K, S - 1] row-major: the cells' probabilities under PARAMETER_SETS[1:S] (absent in
    # tables written before parameter sets: S = 1)
    ("bpp_x", pa.list_(pa.float32())),
])
OPTIONAL_COLUMNS = ("bpp_x",)
KINDS = ("split", "benchmark")
# Spawned workers pay a package import (a few seconds): small jobs fold in-process.
# Partition function + MFE: about 3.3x an MFE fold, ~(L / 100 nt)^3 / 65 s per sequence.
PARALLEL_MIN_SECONDS = 5.0


def _fold_seconds(lengths: Iterable[int]) -> float:
    return sum((n / 100) ** 3 for n in lengths) / 65


def compute_many(sequences: Sequence[str], threads: int = 1, progress: bool = False,
                 desc: str = "ViennaRNA features",
                 parameter_sets: int = 1) -> Iterator[ThermoFeatures]:
    """``folding.thermo_features`` of each sequence, in input order; ``threads`` > 1 folds in
    spawned worker processes when the job is big enough to pay for them."""
    fold = partial(thermo_features, parameter_sets=parameter_sets)
    bar = tqdm(total=len(sequences), desc=desc, unit="seq", disable=not progress,
               mininterval=30, file=sys.stderr)
    try:
        if threads > 1 and len(sequences) > 1 and \
                parameter_sets * _fold_seconds(map(len, sequences)) >= PARALLEL_MIN_SECONDS:
            with mp.get_context("spawn").Pool(min(threads, len(sequences))) as pool:
                for feats in pool.imap(fold, sequences, chunksize=4):
                    bar.update(1)
                    yield feats
        else:
            for seq in sequences:
                bar.update(1)
                yield fold(seq)
    finally:
        bar.close()


def to_row(rid: str, sequence: str, f: ThermoFeatures) -> dict:
    return {"id": rid, "sequence": sequence, "bpp_i": f.bpp_i, "bpp_j": f.bpp_j,
            "bpp_p": f.bpp_p, "mfe_i": f.mfe[:, 0], "mfe_j": f.mfe[:, 1],
            "mfe_energy": f.mfe_energy, "ensemble_energy": f.ensemble_energy,
            "bpp_x": f.bpp_x.reshape(-1)}


def _records(source: str | Path, kind: str) -> Iterator[tuple[str, str]]:
    """(id, raw sequence) of a split table or a curated benchmark, in file order."""
    if kind == "split":
        path = Path(source)
        if not path.is_file():
            raise InputFileError(path, "split table not found")
        for batch in pq.ParquetFile(path).iter_batches(batch_size=20_000,
                                                       columns=["id", "sequence"]):
            cols = batch.to_pydict()
            yield from zip(cols["id"], cols["sequence"], strict=True)
    elif kind == "benchmark":
        from genesis_rna.benchmarks import iter_benchmark_records

        for rec in iter_benchmark_records(source):
            yield rec.id, rec.sequence
    else:
        raise ConfigError("kind", f"must be one of {KINDS}, got {kind!r}")


def admit(raw: str, max_length: int | None) -> tuple[str | None, str | None]:
    """(normalized sequence, None), or (None, the reason it is not folded)."""
    try:
        seq = normalize_sequence(raw, MODEL_INPUT).sequence
    except ValueError as exc:
        return None, f"sequence cannot be read: {exc}"
    if not seq:
        return None, "empty sequence"
    if max_length is not None and len(seq) > max_length:
        return None, (f"{len(seq)} nt, longer than the feature stage's max_length {max_length} "
                      "(partition-function time grows as length^3)")
    return seq, None


def compute_shard(source: str | Path, out: str | Path, rejected: str | Path, *, kind: str,
                  shard: int = 0, shards: int = 1, max_length: int | None = None,
                  threads: int = 1, progress: bool = True, parameter_sets: int = 1) -> dict:
    """Features of rows ``shard``, ``shard + shards``, ... of a data set into ``out``; what is
    not folded goes to ``rejected`` (id, line: the row number, reason). Returns counts and time."""
    if shards < 1 or not 0 <= shard < shards:
        raise ConfigError("thermo.shards", f"shard {shard} of {shards} does not exist")
    if not 1 <= parameter_sets <= len(PARAMETER_SETS):
        raise ConfigError("thermo.parameter_sets",
                          f"must be 1..{len(PARAMETER_SETS)} ({', '.join(PARAMETER_SETS)}), "
                          f"got {parameter_sets}")
    t0 = time.perf_counter()
    ids, seqs = [], []
    counts = {"rows": 0, "folded": 0, "rejected": 0, "nt": 0}
    with ParquetStreamWriter(rejected, REJECTED) as rej:
        for row, (rid, raw) in enumerate(_records(source, kind)):
            if row % shards != shard:
                continue
            counts["rows"] += 1
            seq, reason = admit(raw, max_length)
            if seq is None:
                rej.write({"id": rid, "line": row, "reason": reason})
                print(f"not folded: {rid} (row {row}): {reason}", file=sys.stderr)
                counts["rejected"] += 1
            else:
                ids.append(rid)
                seqs.append(seq)
    with ParquetStreamWriter(out, THERMO, row_group_size=2_000) as writer:
        for rid, seq, feats in zip(ids, seqs, compute_many(
                seqs, threads, progress, desc=f"features {Path(out).name}",
                parameter_sets=parameter_sets), strict=True):
            writer.write(to_row(rid, seq, feats))
            counts["folded"] += 1
            counts["nt"] += len(seq)
    seconds = time.perf_counter() - t0
    counts.update(seconds=round(seconds, 2), threads=threads, vienna=vienna_version(),
                  bpp_floor=BPP_FLOOR, parameter_sets=list(PARAMETER_SETS[:parameter_sets]),
                  seconds_per_1000_sequences=round(1000 * seconds / max(counts["folded"], 1), 2))
    return counts


def _parameter_sets(table: pa.Table) -> int:
    """Parameter sets of a feature table: 1 + len(bpp_x) / len(bpp_p) of a row with pairs."""
    if "bpp_x" not in table.column_names:
        return 1
    k = pc.list_value_length(table.column("bpp_p")).to_numpy(zero_copy_only=False)
    x = pc.list_value_length(table.column("bpp_x")).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(k > 0)
    return 1 + int(x[rows[0]] // k[rows[0]]) if len(rows) else len(PARAMETER_SETS)


class ThermoStore:
    """Features stored by the stage (any number of shard files), looked up by sequence."""

    def __init__(self, paths: Iterable[str | Path] = ()):
        self._tables: list[pa.Table] = []
        self._sets: list[int] = []
        self._where: dict[str, tuple[int, int]] = {}
        for path in paths:
            self.add(path)

    def add(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "thermodynamic feature table not found (thermo stage)")
        try:
            names = pq.read_schema(path).names
            missing = [c for c in THERMO.names if c not in names and c not in OPTIONAL_COLUMNS]
            if missing:
                raise KeyError(f"missing column(s) {missing}")
            schema = pa.schema([f for f in THERMO if f.name in names])
            table = pq.read_table(path, columns=schema.names).cast(schema)
        except (pa.ArrowInvalid, OSError, KeyError) as exc:
            raise InputFileError(path, f"not a thermodynamic feature table ({exc})") from None
        t = len(self._tables)
        self._tables.append(table)
        self._sets.append(_parameter_sets(table))
        for row, seq in enumerate(table.column("sequence").to_pylist()):
            self._where.setdefault(seq, (t, row))

    def __len__(self) -> int:
        return len(self._where)

    @property
    def parameter_sets(self) -> int:
        """How many of ``folding.PARAMETER_SETS`` every stored table holds."""
        return min(self._sets, default=1)

    def sequences(self) -> list[str]:
        return list(self._where)

    def __contains__(self, sequence: str) -> bool:
        return sequence in self._where

    def get(self, sequence: str) -> ThermoFeatures | None:
        where = self._where.get(sequence)
        if where is None:
            return None
        t, row = where
        r = self._tables[t].slice(row, 1).to_pylist()[0]
        p = np.asarray(r["bpp_p"], np.float32)
        return ThermoFeatures(np.asarray(r["bpp_i"], np.int32), np.asarray(r["bpp_j"], np.int32),
                              p, np.stack([np.asarray(r["mfe_i"], np.int32),
                                           np.asarray(r["mfe_j"], np.int32)], 1).reshape(-1, 2),
                              float(r["mfe_energy"]), float(r["ensemble_energy"]),
                              np.asarray(r.get("bpp_x") or [], np.float32).reshape(len(p), -1))


def features_for(sequences: Sequence[str], store: ThermoStore | None = None, *,
                 threads: int = 1, progress: bool = False, desc: str = "ViennaRNA features",
                 log=None, parameter_sets: int = 1) -> list[ThermoFeatures]:
    """Features of normalized ``sequences`` in order (at least ``parameter_sets`` sets): from
    ``store`` where it has them, computed here for the rest (and said so through ``log``)."""
    store = store or ThermoStore()
    out: list[ThermoFeatures | None] = [store.get(s) for s in sequences]
    out = [f if f is not None and f.parameter_sets >= parameter_sets else None for f in out]
    todo = sorted({s for s, f in zip(sequences, out, strict=True) if f is None},
                  key=len, reverse=True)  # longest first: better load balance
    if todo and log is not None:
        log(f"{desc}: computing ViennaRNA features of {len(todo)} sequences "
            f"({len(sequences) - sum(f is None for f in out)} of {len(sequences)} stored)")
    done = dict(zip(todo, compute_many(todo, threads, progress, desc, parameter_sets),
                    strict=True))
    return [f if f is not None else done[s] for s, f in zip(sequences, out, strict=True)]


def tune_mea_threshold(table: str | Path, store: ThermoStore, min_sep: int = 4) -> dict:
    """The threshold of ViennaRNA's MEA structure (``decoding.nested_pairs`` on its pair
    probabilities) that maximizes the mean per-sequence F1 against a split table's structures
    (the validation split's curated or comparative labels: never a test set)."""
    from genesis_rna.data import load_split
    from genesis_rna.decoding import TUNE_THRESHOLDS, sparse_candidates, tune_threshold
    from genesis_rna.pair_metrics import pair_counts, prf

    data = load_split(table)
    sets = store.parameter_sets
    cands, truths, missing = [[] for _ in range(sets)], [], 0
    for seq, pairs in zip(data.sequences, data.pairs, strict=True):
        f = store.get(seq)
        if f is None:
            missing += 1
            continue
        for s in range(sets):
            cands[s].append(sparse_candidates(seq, f.bpp_i, f.bpp_j, f.probabilities(s), min_sep))
        truths.append([tuple(p) for p in pairs.tolist()])
    if not truths:
        raise InputFileError(table, "no sequence of this table has thermodynamic features")
    best, f1 = tune_threshold(cands[0], truths, "mea")
    # the MEA structures under the further parameter sets the features carry: baselines too
    further = {}
    for s in range(1, sets):
        t, f = tune_threshold(cands[s], truths, "mea")
        further[PARAMETER_SETS[s]] = {"threshold": t, "val_f1": f}
    mfe = [prf(*pair_counts([tuple(p) for p in store.get(s).mfe.tolist()], t))[2]
           for s, t in zip((s for s in data.sequences if s in store), truths, strict=True)]
    return {"threshold": best, "val_f1": f1, "val_mfe_f1": float(np.mean(mfe)),
            "n": len(truths), "n_without_features": missing, "table": str(table),
            "parameter_sets": further,
            "thresholds": list(TUNE_THRESHOLDS["mea"])}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from genesis_rna.errors import GenesisError

    p = argparse.ArgumentParser(prog="python -m genesis_rna.thermo",
                                description="ViennaRNA features of a data set, and the MEA "
                                "baseline's threshold tuned on a validation table.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compute", help="features of a split table or curated benchmark")
    c.add_argument("--input", required=True, help="split table (.parquet) or benchmark path")
    c.add_argument("--kind", choices=KINDS, default="benchmark")
    c.add_argument("--out", required=True, help="feature table to write (.parquet)")
    c.add_argument("--rejected", required=True, help="table of what was not folded, and why")
    c.add_argument("--max_length", type=int, default=1000)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--parameter_sets", type=int, default=1,
                   help=f"how many of {', '.join(PARAMETER_SETS)} (in order) to compute")
    t = sub.add_parser("tune", help="ViennaRNA MEA threshold on a validation split table")
    t.add_argument("--table", required=True, help="validation split table with structures")
    t.add_argument("--thermo", action="append", required=True, help="feature table(s)")
    t.add_argument("--out", help="JSON to write (default: print)")
    args = p.parse_args(argv)
    try:
        if args.command == "compute":
            result = compute_shard(args.input, args.out, args.rejected, kind=args.kind,
                                   max_length=args.max_length, threads=args.threads,
                                   parameter_sets=args.parameter_sets)
        else:
            result = tune_mea_threshold(args.table, ThermoStore(args.thermo))
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    if getattr(args, "out", None) and args.command == "tune":
        from genesis_rna.atomic import write_json

        write_json(args.out, result)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
