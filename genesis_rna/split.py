"""split_dataset stage: homology-aware train/val/test split with benchmark decontamination.

1. Cluster all annotated sequences with MMseqs2 (``easy-linclust`` or ``easy-cluster``).
2. Remove every cluster that holds a sequence similar to a configured benchmark sequence
   (``mmseqs easy-search``), so a later evaluation on curated structures is honest. Removed
   sequences are listed with the reason, not silently dropped.
3. Order the remaining clusters by a seeded hash and assign whole clusters to test, then val,
   until each reaches its fraction of sequences; the rest is train. No cluster spans two splits.

``method: family`` uses Rfam families instead of MMseqs2 clusters: a whole clan (or the family,
when it is in no clan) goes to one split, so evaluation measures generalisation to unseen
families (sequence identity alone misses remote homologs that share a fold).
``decontaminate_level: family`` searches benchmarks sensitively (E-value, no identity floor) and
removes the whole family and clan of every hit, not only its cluster.

``method: random`` (for users without MMseqs2) treats every sequence as its own cluster. It
is labelled in the report as NOT homology-aware: near-identical sequences can then sit in
train and test at once.
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from genesis_rna.atomic import write_json
from genesis_rna.benchmarks import iter_benchmark_records
from genesis_rna.errors import ConfigError, GenesisError, InputFileError
from genesis_rna.seqio import open_input
from genesis_rna.tables import REJECTED, SPLITS, ParquetStreamWriter

MMSEQS_MISSING = (
    "mmseqs (MMseqs2) was not found on PATH, and split.method is 'mmseqs'. Install it with "
    "'conda install -c conda-forge -c bioconda mmseqs2' (it is in environment.yml) or "
    "'apt-get install mmseqs2' on Debian/Ubuntu. Without it you may set split.method: random, "
    "which is NOT homology-aware (similar sequences can land in train and test)."
)


class ToolError(GenesisError, RuntimeError):
    """An external tool failed; the message carries its stderr tail."""


MEMORY_LIMIT = re.compile(r"^([1-9][0-9]*)([BKMGT])$")
_UNIT_BYTES = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# Measured (README, "Scaling"): the nucleotide decontamination search holds a k-mer index of
# ~8 GiB whatever the corpus size, so it needs at least this limit; clustering needs far less.
SEARCH_MIN_MEMORY = "9G"
# What MMseqs2 prints when its --split-memory-limit is too small (prefilter; k-mer matcher)
_OUT_OF_MEMORY = ("Cannot fit databases", "Not enough memory")


def memory_limit_bytes(limit: str | None) -> int | None:
    """Bytes of an MMseqs2 ``--split-memory-limit`` value such as ``9G`` (None: no limit)."""
    if limit is None:
        return None
    m = MEMORY_LIMIT.match(str(limit))
    if not m:
        raise ConfigError("split.memory_limit", f"{limit!r} is not a size like 500M, 16G or 1T "
                          "(a whole number and one of the units B, K, M, G, T)")
    return int(m.group(1)) * _UNIT_BYTES[m.group(2)]


def _memory_args(limit: str | None) -> list[str]:
    return [] if limit is None else ["--split-memory-limit", str(limit)]


def _run(cmd: list[str], memory_limit: str | None = None) -> None:
    """Run a tool; its command line and output go to stderr (the rule's log)."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    print("$ " + " ".join(cmd) + "\n" + proc.stdout + proc.stderr, file=sys.stderr)
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        if memory_limit is not None and any(m in output for m in _OUT_OF_MEMORY):
            step = cmd[1]
            need = (f"at least {SEARCH_MIN_MEMORY}: its nucleotide k-mer index takes ~8 GiB "
                    "whatever the corpus size" if step == "easy-search" else
                    "for example to twice the current value")
            raise ConfigError(
                "split.memory_limit",
                f"MMseqs2 {step} cannot fit its databases into {memory_limit}; raise the limit "
                f"({need}) or set it to null to let MMseqs2 use the machine's memory")
        tail = "\n".join(output.strip().splitlines()[-15:])
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
    threads: int, memory_limit: str | None = None,
) -> dict[str, str]:
    """Member id -> cluster representative id, from MMseqs2 (``memory_limit``: its
    ``--split-memory-limit``, e.g. ``16G``; None lets it use all memory)."""
    fasta = workdir / "corpus.fasta"
    _write_fasta(((r["id"], r["sequence"]) for r in _iter_rows(annotations, ["id", "sequence"])), fasta)
    prefix = workdir / "clu"
    _run(
        ["mmseqs", f"easy-{mode}", str(fasta), str(prefix), str(workdir / "tmp"),
         "--min-seq-id", str(min_seq_id), "-c", str(coverage), "--cov-mode", "0",
         "--threads", str(threads), *_memory_args(memory_limit), "-v", "1"],
        memory_limit,
    )
    members: dict[str, str] = {}
    with open(f"{prefix}_cluster.tsv", encoding="utf-8") as fh:
        for line in fh:
            rep, member = line.rstrip("\n").split("\t")
            members[member] = rep
    return members


def benchmark_hits(
    annotations: Path, benchmarks: list[str], workdir: Path, *, search_args: list[str],
    threads: int, memory_limit: str | None = None,
) -> dict[str, tuple[float, str]]:
    """Corpus id -> (E-value, 'benchmark id (identity, E-value)') of its best benchmark hit."""
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
                yield rid, rec.sequence  # structure readers already uppercase with T -> U

    if _write_fasta(bench_records(), bench_fa) == 0:
        return {}
    query = workdir / "corpus.fasta"
    if not query.exists():
        _write_fasta(((r["id"], r["sequence"]) for r in _iter_rows(annotations, ["id", "sequence"])), query)
    hits_tsv = workdir / "bench_hits.m8"
    _run(
        ["mmseqs", "easy-search", str(query), str(bench_fa), str(hits_tsv), str(workdir / "tmp_s"),
         "--search-type", "3", *search_args, "--threads", str(threads),
         *_memory_args(memory_limit), "-v", "1"],
        memory_limit,
    )
    hits: dict[str, tuple[float, str]] = {}
    with open(hits_tsv, encoding="utf-8") as fh:
        for line in fh:
            # BLAST-tab columns: query, target, identity, ..., E-value (11th), bit score
            f = line.split("\t")
            q, t, ident, evalue = f[0], f[1], float(f[2]), float(f[10])
            if q not in hits or evalue < hits[q][0]:
                hits[q] = (evalue, f"{t} (identity {ident:.2f}, E-value {evalue:.2g})")
    return hits


def decontamination_search_args(level: str, min_seq_id: float, coverage: float,
                                evalue: float) -> list[str]:
    """``mmseqs easy-search`` options of the benchmark search at ``level``."""
    if level == "family":
        # Family level: any detectable homology counts (remote members of a family share its
        # fold even at low identity), so no identity or coverage floor, only an E-value.
        return ["-s", "7.5", "-e", str(evalue)]
    return ["--min-seq-id", str(min_seq_id), "-c", str(coverage), "--cov-mode", "0"]


def read_family_table(path: str | Path, ids: set[str]) -> dict[str, list[tuple[str, str]]]:
    """Corpus id -> [(family, clan or '')] from a TSV/CSV (gzip ok) with columns id, family[, clan].

    Only ids of the corpus are kept. An id may be listed under several families (Rfam seeds
    shared by two families), hence a list.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError("split.family_table", f"file {path} not found")
    with open_input(path, text=True) as fh:  # plain or gzip, told apart by content
        first = fh.readline()
        sep = "\t" if "\t" in first else ","
        header = [c.strip() for c in next(csv.reader([first], delimiter=sep), [])]
        for col in ("id", "family"):
            if col not in header:
                raise ConfigError("split.family_table", f"{path} has no column {col!r}; found {header}")
        cols = [c for c in ("id", "family", "clan") if c in header]
        try:
            # Strings only, and an empty clan stays '' (keep_default_na=False: no NaN, no "NA" ids).
            table = pd.read_csv(fh, sep=sep, header=None, names=header, usecols=cols, dtype=str,
                                keep_default_na=False)
        except pd.errors.EmptyDataError:  # a header and no rows: every sequence lacks a family
            table = pd.DataFrame({c: pd.Series(dtype=str) for c in cols})
        except (ValueError, OSError, EOFError) as exc:  # parser, decoding and gzip errors
            raise InputFileError(path, f"unreadable family table (split.family_table): {exc}") from exc
    table = table.fillna("").apply(lambda col: col.str.strip())  # short rows give NaN
    table = table[table["id"].isin(ids) & (table["family"] != "")]
    clans = table["clan"] if "clan" in table else [""] * len(table)
    out: dict[str, list[tuple[str, str]]] = {}
    for rid, family, clan in zip(table["id"], table["family"], clans, strict=True):
        out.setdefault(rid, []).append((family, clan))
    return out


def family_groups(families: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """Id -> group: its clan, else its family. Groups that share a sequence are merged
    (union-find, smallest key as the root), since that sequence can sit in only one split."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.get(key, key) != key:
            key = parent[key]
        return key

    for pairs in families.values():
        roots = sorted({find(clan or family) for family, clan in pairs})
        for root in roots[1:]:
            parent[root] = roots[0]
    return {rid: find(pairs[0][1] or pairs[0][0]) for rid, pairs in families.items()}


def _family_label(pairs: list[tuple[str, str]]) -> str:
    clans = "/".join(sorted({c for _, c in pairs if c}))
    return "family " + "/".join(sorted({f for f, _ in pairs})) + (f" (clan {clans})" if clans else "")


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


MIN_USEFUL_SPLIT = 10  # val/test sequences below which their metrics are mostly noise
CLUSTER_UNITS = {"mmseqs": "MMseqs2 clusters", "family": "family/clan groups", "random": "sequences"}


def check_split_sizes(method: str, n_input: int, kept_sizes: Counter, assignment: dict[str, str],
                      fractions: dict[str, float]) -> None:
    """Before anything is written: fail if train, or a requested val/test, would be empty;
    warn on stderr (the rule's log) if a requested val/test would be tiny."""
    planned = Counter()
    for cluster, n in kept_sizes.items():
        planned[assignment[cluster]] += n
    kept = sum(planned.values())
    removed = n_input - kept
    counts = (f"input {n_input} sequences, removed {removed}, train {planned['train']} / "
              f"val {planned['val']} / test {planned['test']}")
    wanted = [name for name in ("val", "test") if fractions[name] > 0]
    empty = [name for name in ("train", *wanted) if planned[name] == 0]
    if empty:
        if kept == 0 and removed:
            key, cause = "split.decontaminate", "decontamination removed every sequence"
        elif kept == 0:
            key, cause = "split", "there are no annotated sequences to split"
        else:
            key = "split.test_fraction" if empty == ["test"] else "split.val_fraction"
            units = CLUSTER_UNITS[method]
            grouped = "" if method == "random" else f" in {len(kept_sizes)} {units}, each kept whole,"
            fix = "smaller" if "train" in empty else "larger"
            cause = (f"{kept} kept sequences{grouped} are too few for val_fraction "
                     f"{fractions['val']:g} and test_fraction {fractions['test']:g}; use a larger "
                     f"corpus or {fix} fractions")
            if removed:
                cause += f" (decontamination removed {removed})"
        raise ConfigError(key, f"the split would leave {', '.join(empty)} empty ({counts}): "
                          f"{cause}; nothing was written")
    tiny = [f"{name} {planned[name]}" for name in wanted if planned[name] < MIN_USEFUL_SPLIT]
    if tiny:
        print(f"warning: small split: {', '.join(tiny)} sequences ({counts}); metrics on fewer "
              f"than {MIN_USEFUL_SPLIT} sequences are noise; use a larger corpus or larger "
              "split fractions", file=sys.stderr)


def split_dataset(
    annotations: str | Path, out_dir: str | Path, report_path: str | Path, *,
    method: str = "mmseqs", mode: str = "linclust", min_seq_id: float = 0.8,
    coverage: float = 0.8, val_fraction: float = 0.05, test_fraction: float = 0.05,
    seed: int = 42, decontaminate: list[str] | None = None,
    decontaminate_min_seq_id: float = 0.8, decontaminate_coverage: float = 0.5,
    decontaminate_level: str = "sequence", decontaminate_evalue: float = 1e-3,
    family_table: str | Path | None = None, threads: int = 1, memory_limit: str | None = None,
) -> dict:
    """Write train/val/test/removed parquet tables under ``out_dir`` and a JSON report.

    ``memory_limit`` bounds MMseqs2 (clustering and the decontamination search) through its
    ``--split-memory-limit``; a limit too small for a step is a ConfigError naming the key.
    """
    annotations, out_dir = Path(annotations), Path(out_dir)
    memory_limit_bytes(memory_limit)
    for key, value in (("split.val_fraction", val_fraction), ("split.test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ConfigError(key, f"{value} is not in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise ConfigError("split.val_fraction", f"split.val_fraction + split.test_fraction = "
                          f"{val_fraction + test_fraction:g}; it must be below 1 to leave a train split")
    if mode not in ("linclust", "cluster"):
        raise ConfigError("split.mmseqs_mode", f"unknown value {mode!r}; use linclust or cluster")
    if method not in ("mmseqs", "family", "random"):
        raise ConfigError("split.method", f"unknown value {method!r}; use mmseqs, family or random")
    if decontaminate_level not in ("sequence", "family"):
        raise ConfigError("split.decontaminate_level",
                          f"unknown value {decontaminate_level!r}; use sequence or family")
    if not decontaminate_evalue > 0:
        raise ConfigError("split.decontaminate_evalue", f"{decontaminate_evalue} must be above 0")
    if not family_table and (method == "family" or decontaminate_level == "family"):
        why = "split.method is 'family'" if method == "family" else "split.decontaminate_level is 'family'"
        raise ConfigError("split.family_table",
                          f"a table with columns id, family[, clan] is required when {why}")
    decontaminate = list(decontaminate or [])
    if (method == "mmseqs" or decontaminate) and shutil.which("mmseqs") is None:
        raise ToolError(MMSEQS_MISSING)
    search_args = decontamination_search_args(decontaminate_level, decontaminate_min_seq_id,
                                              decontaminate_coverage, decontaminate_evalue)

    ids = [r["id"] for r in _iter_rows(annotations, ["id"])]
    families = read_family_table(family_table, set(ids)) if family_table else {}
    group_of = family_groups(families)
    with tempfile.TemporaryDirectory(prefix="genesis_split_") as tmp:
        work = Path(tmp)
        if method == "mmseqs":
            member_of = mmseqs_clusters(annotations, work, mode=mode, min_seq_id=min_seq_id,
                                        coverage=coverage, threads=threads,
                                        memory_limit=memory_limit)
        else:
            # family: a sequence absent from the table is its own group (kept, and counted).
            member_of = {rid: group_of.get(rid, rid) if method == "family" else rid for rid in ids}
        hits = benchmark_hits(annotations, decontaminate, work, search_args=search_args,
                              threads=threads, memory_limit=memory_limit)

    missing = [rid for rid in ids if rid not in member_of]
    if missing:
        raise ToolError(f"clustering returned no cluster for {len(missing)} ids, e.g. {missing[:3]}")
    # A cluster with any benchmark-similar member leaves all splits entirely (at both levels).
    contaminated = {member_of[q]: why for q, (_, why) in sorted(hits.items())}
    # At family level the whole family/clan group of a hit leaves too; its best hit is the cited one.
    condemned: dict[str, str] = {}
    if decontaminate_level == "family":
        for q in sorted(hits, key=lambda q: (hits[q][0], q)):
            if q in group_of:
                condemned.setdefault(group_of[q], q)

    def removal_reason(rid: str) -> str | None:
        group = group_of.get(rid)
        if group in condemned:
            q = condemned[group]
            fams = "/".join(sorted({f for f, _ in families[q]}))
            return (f"{_family_label(families[rid])} has {fams} sequence {q} similar to benchmark "
                    f"{hits[q][1]}")
        cluster = member_of[rid]
        if cluster in contaminated:
            direct = hits.get(rid)
            return (f"similar to benchmark sequence {direct[1]}" if direct else
                    f"in cluster {cluster} with a sequence similar to benchmark {contaminated[cluster]}")
        return None

    sizes = Counter(member_of.values())
    kept_sizes = Counter(member_of[rid] for rid in ids if removal_reason(rid) is None)
    assignment = assign_clusters(kept_sizes, {"val": val_fraction, "test": test_fraction}, seed)
    check_split_sizes(method, len(ids), kept_sizes, assignment,
                      {"val": val_fraction, "test": test_fraction})

    counts = Counter()
    writers = {name: ParquetStreamWriter(out_dir / f"{name}.parquet", SPLITS) for name in ("train", "val", "test")}
    removed = ParquetStreamWriter(out_dir / "removed.parquet", REJECTED)
    try:
        for row in _iter_rows(annotations):
            reason = removal_reason(row["id"])
            if reason is not None:
                removed.write({"id": row["id"], "line": None, "reason": reason})
                counts["removed"] += 1
                continue
            cluster = member_of[row["id"]]
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
    family_level = decontaminate_level == "family"
    report = {
        "method": method if method != "random" else "random (NOT homology-aware)",
        "homology_aware": method != "random",
        "mmseqs": {"mode": f"easy-{mode}", "min_seq_id": min_seq_id, "coverage": coverage,
                   "memory_limit": memory_limit} if method == "mmseqs" else None,
        "families": {
            "table": str(family_table),
            "families": len({f for pairs in families.values() for f, _ in pairs}),
            "clans": len({c for pairs in families.values() for _, c in pairs if c}),
            "groups": len(set(group_of.values())),
            "sequences_with_family": len(families),
            "sequences_without_family": len(ids) - len(families),
        } if family_table else None,
        "seed": seed,
        "fractions_requested": {"val": val_fraction, "test": test_fraction},
        "sequences": {"input": len(ids), **{k: counts[k] for k in ("train", "val", "test", "removed")}},
        "clusters": {
            "total": len(sizes),
            "singletons": sum(1 for n in cluster_sizes if n == 1),
            "largest": cluster_sizes[:10],
            "train": per_split_clusters["train"], "val": per_split_clusters["val"],
            "test": per_split_clusters["test"], "removed": len(contaminated),
        },
        "decontamination": {
            "benchmarks": decontaminate, "level": decontaminate_level,
            "search": "mmseqs easy-search --search-type 3 " + " ".join(search_args),
            "min_seq_id": None if family_level else decontaminate_min_seq_id,
            "coverage": None if family_level else decontaminate_coverage,
            "evalue": decontaminate_evalue if family_level else None,
            "memory_limit": memory_limit,
            "sequences_with_hits": len(hits),
            "clusters_removed": len(contaminated), "groups_removed": len(condemned),
            "families_removed": sorted(
                {f for rid, g in group_of.items() if g in condemned for f, _ in families[rid]}),
            "sequences_removed": counts["removed"],
            "removed_table": str(out_dir / "removed.parquet"),
        },
        "guarantee": {
            "mmseqs": "no cluster spans two splits; clusters are MMseqs2 clusters",
            "family": "no family/clan spans two splits; sequences absent from the family table are "
                      "single-sequence groups",
            "random": "no cluster spans two splits; clusters are single sequences",
        }[method],
    }
    assert counts["train"] + counts["val"] + counts["test"] + counts["removed"] == len(ids)
    write_json(report_path, report)
    return report
