"""split_dataset stage: homology-aware train/val/test split with benchmark decontamination.

1. Cluster all annotated sequences with MMseqs2 (``easy-linclust`` or ``easy-cluster``).
2. Remove every cluster that holds a sequence similar to a configured benchmark sequence
   (``mmseqs easy-search``), so a later evaluation on curated structures is honest. Removed
   sequences are listed with the reason, not silently dropped.
3. Order the remaining clusters by a seeded hash and assign whole clusters to test, then val,
   until each reaches its fraction of sequences; the rest is train. No cluster spans two splits.

``method: random`` (for users without MMseqs2) treats every sequence as its own cluster. It
is labelled in the report as NOT homology-aware: near-identical sequences can then sit in
train and test at once.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq

from genesis_rna.atomic import write_json
from genesis_rna.benchmarks import iter_benchmark_records
from genesis_rna.errors import ConfigError, GenesisError
from genesis_rna.tables import REJECTED, SPLITS, ParquetStreamWriter

MMSEQS_MISSING = (
    "mmseqs (MMseqs2) was not found on PATH, and split.method is 'mmseqs'. Install it with "
    "'conda install -c conda-forge -c bioconda mmseqs2' (it is in environment.yml) or "
    "'apt-get install mmseqs2' on Debian/Ubuntu. Without it you may set split.method: random, "
    "which is NOT homology-aware (similar sequences can land in train and test)."
)


class ToolError(GenesisError, RuntimeError):
    """An external tool failed; the message carries its stderr tail."""


def _run(cmd: list[str]) -> None:
    """Run a tool; its command line and output go to stderr (the rule's log)."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    print("$ " + " ".join(cmd) + "\n" + proc.stdout + proc.stderr, file=sys.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ToolError(f"{cmd[0]} {cmd[1]} failed (exit {proc.returncode}):\n{tail}")


def _iter_rows(path: str | Path, columns: list[str] | None = None) -> Iterable[dict]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=20_000, columns=columns):
        yield from batch.to_pylist()


def _write_fasta(records: Iterable[tuple[str, str]], path: Path) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for rid, seq in records:
            fh.write(f">{rid}\n{seq}\n")
            n += 1
    return n


def mmseqs_clusters(
    annotations: Path, workdir: Path, *, mode: str, min_seq_id: float, coverage: float,
    threads: int,
) -> dict[str, str]:
    """Member id -> cluster representative id, from MMseqs2."""
    fasta = workdir / "corpus.fasta"
    _write_fasta(((r["id"], r["sequence"]) for r in _iter_rows(annotations, ["id", "sequence"])), fasta)
    prefix = workdir / "clu"
    _run(
        ["mmseqs", f"easy-{mode}", str(fasta), str(prefix), str(workdir / "tmp"),
         "--min-seq-id", str(min_seq_id), "-c", str(coverage), "--cov-mode", "0",
         "--threads", str(threads), "-v", "1"],
    )
    members: dict[str, str] = {}
    with open(f"{prefix}_cluster.tsv", encoding="utf-8") as fh:
        for line in fh:
            rep, member = line.rstrip("\n").split("\t")
            members[member] = rep
    return members


def benchmark_hits(
    annotations: Path, benchmarks: list[str], workdir: Path, *, min_seq_id: float,
    coverage: float, threads: int,
) -> dict[str, str]:
    """Corpus id -> 'benchmark id (identity)' for corpus sequences similar to a benchmark."""
    if not benchmarks:
        return {}
    bench_fa = workdir / "benchmarks.fasta"
    seen: set[str] = set()

    def bench_records():
        for path in benchmarks:
            for k, rec in enumerate(iter_benchmark_records(path)):
                rid = f"{Path(path).name}:{rec.id or k}"
                if rid in seen:
                    rid = f"{rid}#{k}"
                seen.add(rid)
                yield rid, rec.sequence.upper().replace("T", "U")

    if _write_fasta(bench_records(), bench_fa) == 0:
        return {}
    query = workdir / "corpus.fasta"
    if not query.exists():
        _write_fasta(((r["id"], r["sequence"]) for r in _iter_rows(annotations, ["id", "sequence"])), query)
    hits_tsv = workdir / "bench_hits.m8"
    _run(
        ["mmseqs", "easy-search", str(query), str(bench_fa), str(hits_tsv), str(workdir / "tmp_s"),
         "--search-type", "3", "--min-seq-id", str(min_seq_id), "-c", str(coverage),
         "--cov-mode", "0", "--threads", str(threads), "-v", "1"],
    )
    hits: dict[str, str] = {}
    with open(hits_tsv, encoding="utf-8") as fh:
        for line in fh:
            q, t, ident = line.split("\t")[:3]
            hits.setdefault(q, f"{t} (identity {float(ident):.2f})")
    return hits


def _order_key(cluster: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{cluster}".encode()).hexdigest()


def assign_clusters(sizes: dict[str, int], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Cluster -> split. Whole clusters only; test then val are filled to their fraction."""
    total = sum(sizes.values())
    order = sorted(sizes, key=lambda c: _order_key(c, seed))
    targets = [("test", fractions.get("test", 0.0) * total), ("val", fractions.get("val", 0.0) * total)]
    assignment: dict[str, str] = {}
    filled = {"test": 0, "val": 0}
    for cluster in order:
        for name, target in targets:
            # A cluster goes to a split only while that split is below its target, and only if
            # it does not overshoot by more than half its own size (keeps fractions close).
            if filled[name] < target and filled[name] + sizes[cluster] / 2 <= target:
                assignment[cluster] = name
                filled[name] += sizes[cluster]
                break
        else:
            assignment[cluster] = "train"
    return assignment


def split_dataset(
    annotations: str | Path, out_dir: str | Path, report_path: str | Path, *,
    method: str = "mmseqs", mode: str = "linclust", min_seq_id: float = 0.8,
    coverage: float = 0.8, val_fraction: float = 0.05, test_fraction: float = 0.05,
    seed: int = 42, decontaminate: list[str] | None = None,
    decontaminate_min_seq_id: float = 0.8, decontaminate_coverage: float = 0.5,
    threads: int = 1,
) -> dict:
    """Write train/val/test/removed parquet tables under ``out_dir`` and a JSON report."""
    annotations, out_dir = Path(annotations), Path(out_dir)
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ConfigError("split.fractions", "val and test must be in [0, 1) and sum below 1")
    if mode not in ("linclust", "cluster"):
        raise ConfigError("split.mmseqs_mode", f"unknown value {mode!r}; use linclust or cluster")
    decontaminate = list(decontaminate or [])
    need_mmseqs = method == "mmseqs" or decontaminate
    if method not in ("mmseqs", "random"):
        raise ConfigError("split.method", f"unknown value {method!r}; use mmseqs or random")
    if need_mmseqs and shutil.which("mmseqs") is None:
        raise ToolError(MMSEQS_MISSING)

    with tempfile.TemporaryDirectory(prefix="genesis_split_") as tmp:
        work = Path(tmp)
        if method == "mmseqs":
            member_of = mmseqs_clusters(annotations, work, mode=mode, min_seq_id=min_seq_id,
                                        coverage=coverage, threads=threads)
        else:
            member_of = {r["id"]: r["id"] for r in _iter_rows(annotations, ["id"])}
        hits = benchmark_hits(annotations, decontaminate, work, min_seq_id=decontaminate_min_seq_id,
                              coverage=decontaminate_coverage, threads=threads)

    missing = [rid for rid in (r["id"] for r in _iter_rows(annotations, ["id"])) if rid not in member_of]
    if missing:
        raise ToolError(f"clustering returned no cluster for {len(missing)} ids, e.g. {missing[:3]}")
    # A cluster with any benchmark-similar member leaves training entirely.
    contaminated = {member_of[q]: why for q, why in sorted(hits.items())}
    sizes = Counter(member_of.values())
    kept_sizes = {c: n for c, n in sizes.items() if c not in contaminated}
    assignment = assign_clusters(kept_sizes, {"val": val_fraction, "test": test_fraction}, seed)

    counts = Counter()
    writers = {name: ParquetStreamWriter(out_dir / f"{name}.parquet", SPLITS) for name in ("train", "val", "test")}
    removed = ParquetStreamWriter(out_dir / "removed.parquet", REJECTED)
    try:
        for row in _iter_rows(annotations):
            cluster = member_of[row["id"]]
            if cluster in contaminated:
                direct = hits.get(row["id"])
                reason = (f"similar to benchmark sequence {direct}" if direct else
                          f"in cluster {cluster} with a sequence similar to benchmark {contaminated[cluster]}")
                removed.write({"id": row["id"], "line": None, "reason": reason})
                counts["removed"] += 1
                continue
            name = assignment[cluster]
            writers[name].write({**row, "cluster": cluster, "split": name})
            counts[name] += 1
    except BaseException as exc:
        for w in [*writers.values(), removed]:
            w.abort(exc)
        raise
    for w in [*writers.values(), removed]:
        w.close()

    cluster_sizes = sorted(sizes.values(), reverse=True)
    per_split_clusters = Counter(assignment.values())
    report = {
        "method": method if method == "mmseqs" else "random (NOT homology-aware)",
        "homology_aware": method == "mmseqs",
        "mmseqs": {"mode": f"easy-{mode}", "min_seq_id": min_seq_id, "coverage": coverage} if method == "mmseqs" else None,
        "seed": seed,
        "fractions_requested": {"val": val_fraction, "test": test_fraction},
        "sequences": {"input": sum(sizes.values()), **{k: counts[k] for k in ("train", "val", "test", "removed")}},
        "clusters": {
            "total": len(sizes),
            "singletons": sum(1 for n in cluster_sizes if n == 1),
            "largest": cluster_sizes[:10],
            "train": per_split_clusters["train"], "val": per_split_clusters["val"],
            "test": per_split_clusters["test"], "removed": len(contaminated),
        },
        "decontamination": {
            "benchmarks": decontaminate, "min_seq_id": decontaminate_min_seq_id,
            "coverage": decontaminate_coverage, "sequences_with_hits": len(hits),
            "clusters_removed": len(contaminated), "sequences_removed": counts["removed"],
            "removed_table": str(out_dir / "removed.parquet"),
        },
        "guarantee": "no cluster spans two splits" + (
            "; clusters are MMseqs2 clusters" if method == "mmseqs" else "; clusters are single sequences"),
    }
    assert counts["train"] + counts["val"] + counts["test"] + counts["removed"] == sum(sizes.values())
    write_json(report_path, report)
    return report
