"""annotate_structures stage: scatter sequences into shards, label each shard, gather.

Labels come from a ViennaRNA MFE fold (``RNA.fold_compound``) or from a provided structure
file. Each annotated record carries its dot-bracket, 0-based pair list, bpRNA element labels,
free energy and the label source (tool and version, or the provided file). Sequences that
cannot be labelled (no provided structure, length mismatch, unbalanced brackets) go to a
rejected table with the reason, never silently away.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq
from tqdm import tqdm

from genesis_rna.errors import ConfigError, InputFileError
from genesis_rna.folding import mfe_fold, vienna_version
from genesis_rna.structures import element_labels, parse_dot_bracket, read_provided_structures
from genesis_rna.tables import ANNOTATIONS, REJECTED, SEQUENCES, SPLITS, ParquetStreamWriter


def scatter_sequences(sequences: str | Path, shards: Sequence[str | Path]) -> list[int]:
    """Deal the sequences round-robin into ``len(shards)`` tables; returns rows per shard.

    Round-robin by row keeps shard sizes and length mixes even, and streams by row group.
    """
    if not shards:
        raise ConfigError("annotate.shards", "must be at least 1")
    writers = [ParquetStreamWriter(p, SEQUENCES) for p in shards]
    counts = [0] * len(shards)
    k = 0
    try:
        for batch in pq.ParquetFile(sequences).iter_batches(batch_size=50_000):
            for row in batch.to_pylist():
                writers[k % len(shards)].write(row)
                counts[k % len(shards)] += 1
                k += 1
    except BaseException as exc:
        for w in writers:
            w.abort(exc)
        raise
    for w in writers:
        w.close()
    return counts


def _chunks(rows: Iterator[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _annotation_row(row: dict, structure: str, energy: float | None, source: str, where: str):
    pairs = parse_dot_bracket(structure, source=where)
    return {
        "id": row["id"],
        "description": row["description"],
        "sequence": row["sequence"],
        "length": row["length"],
        "structure": structure,
        "pair_i": [i for i, _ in pairs],
        "pair_j": [j for _, j in pairs],
        "elements": element_labels(pairs, row["length"]),
        "energy": energy,
        "label_source": source,
    }


def _iter_rows(path: str | Path) -> Iterator[dict]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        yield from batch.to_pylist()


def provided_annotations(rows: Callable[[], Iterator[dict]], provided_path: str | Path | None
                         ) -> Iterator[tuple[dict, dict | None, str | None]]:
    """(row, annotation row or None, reason it was rejected or None) for each of ``rows()``,
    labelled with the structure ``provided_path`` gives for its id. ``rows`` is called twice
    (ids first): only those ids' structures are kept in memory, so memory scales with them.
    The first structure listed for an id wins, as the first record does in parse_fasta."""
    if not provided_path:
        raise ConfigError("structures.provided_path", "required when structures.source is 'provided'")
    wanted = {row["id"] for row in rows()}
    provided: dict[str, str] = {}
    for i, db in read_provided_structures(provided_path):
        if i in wanted:
            provided.setdefault(i, db)
    label = f"provided:{Path(provided_path).name}"
    for row in rows():
        db = provided.get(row["id"])
        reason = None
        if db is None:
            reason = f"no structure for this id in {provided_path}"
        elif len(db) != row["length"]:
            reason = f"provided structure length {len(db)} != sequence length {row['length']}"
        if reason is None:
            try:
                yield row, _annotation_row(row, db, None, label, str(provided_path)), None
                continue
            except InputFileError as exc:
                reason = f"malformed provided structure: {exc}"
        yield row, None, reason


def relabel_split(split_dir: str | Path, provided_path: str | Path, out_dir: str | Path,
                  names: Sequence[str] = ("train", "val", "test")) -> dict:
    """Fine-tuning data: the same train/val/test sequences (same clusters, same split), each
    labelled with its provided structure instead of the pretraining labels. Sequences without
    a usable structure go to ``out_dir/rejected.parquet`` (id, reason naming the split).
    Returns counts per split."""
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    counts: dict[str, dict[str, int]] = {}
    with ParquetStreamWriter(out_dir / "rejected.parquet", REJECTED) as rej:
        for name in names:
            src = split_dir / f"{name}.parquet"
            if not src.exists():
                raise InputFileError(src, "split table not found")
            c = counts[name] = {"labelled": 0, "rejected": 0}
            with ParquetStreamWriter(out_dir / f"{name}.parquet", SPLITS) as out:
                for row, annotation, reason in provided_annotations(lambda s=src: _iter_rows(s),
                                                                    provided_path):
                    if annotation is None:
                        rej.write({"id": row["id"], "line": None, "reason": f"{name}: {reason}"})
                        c["rejected"] += 1
                        continue
                    out.write({**annotation, "cluster": row["cluster"], "split": row["split"]})
                    c["labelled"] += 1
            if c["labelled"] == 0:
                raise InputFileError(provided_path, f"no {name} sequence of {src} has a structure "
                                     "in this file (do its ids match the corpus FASTA ids? "
                                     "finetune.structures: null skips fine-tuning)")
    return counts


def annotate_shard(
    shard: str | Path,
    annotations_out: str | Path,
    rejected_out: str | Path,
    *,
    source: str = "fold",
    provided_path: str | Path | None = None,
    max_bp_span: int = -1,
    temperature: float = 37.0,
    threads: int = 1,
    progress: bool = True,
) -> dict:
    """Label one shard; returns counts {annotated, rejected}."""
    n_rows = pq.ParquetFile(shard).metadata.num_rows
    counts = {"annotated": 0, "rejected": 0}
    with (
        ParquetStreamWriter(annotations_out, ANNOTATIONS, row_group_size=20_000) as out,
        ParquetStreamWriter(rejected_out, REJECTED) as rej,
    ):
        bar = tqdm(total=n_rows, desc=f"annotate {Path(shard).name}", unit="seq",
                   disable=not progress, mininterval=2)
        if source == "fold":
            label = f"ViennaRNA {vienna_version()} MFE (T={temperature}C, max_bp_span={max_bp_span})"
            fold = partial(mfe_fold, max_bp_span=max_bp_span, temperature=temperature)
            # Workers get whole sequences and return only (structure, energy): the row dicts
            # stay in this process, so what crosses the pipe is small.
            pool = mp.get_context("fork").Pool(threads) if threads > 1 else None
            try:
                for chunk in _chunks(_iter_rows(shard), 2_000):
                    seqs = [r["sequence"] for r in chunk]
                    results = pool.map(fold, seqs, chunksize=16) if pool else map(fold, seqs)
                    for row, (structure, energy) in zip(chunk, results, strict=True):
                        out.write(_annotation_row(row, structure, energy, label, str(shard)))
                    counts["annotated"] += len(chunk)
                    bar.update(len(chunk))
            finally:
                if pool is not None:
                    pool.close()
                    pool.join()
        elif source == "provided":
            for row, annotation, reason in provided_annotations(lambda: _iter_rows(shard),
                                                                provided_path):
                bar.update(1)
                if annotation is not None:
                    out.write(annotation)
                    counts["annotated"] += 1
                else:
                    rej.write({"id": row["id"], "line": None, "reason": reason})
                    counts["rejected"] += 1
        else:
            raise ConfigError("structures.source", f"unknown value {source!r}; use 'fold' or 'provided'")
        bar.close()
    return counts


def gather_tables(parts: Sequence[str | Path], out: str | Path, schema) -> int:
    """Concatenate shard tables row group by row group (memory flat); returns rows written."""
    n = 0
    with ParquetStreamWriter(out, schema) as writer:
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=20_000):
                writer.write_many(batch.to_pylist())
                n += batch.num_rows
    return n
