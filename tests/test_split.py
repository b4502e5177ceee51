import json
import os
import random
from collections import defaultdict

import pyarrow.parquet as pq
import pytest

from genesis_rna.split import ToolError, assign_clusters, split_dataset
from tests.helpers import family_rows, mutate, need_mmseqs, write_annotations


def _read(path):
    return pq.read_table(path).to_pylist()


def test_assign_clusters_keeps_clusters_whole_and_hits_fractions():
    sizes = {f"c{i}": (i % 5) + 1 for i in range(400)}
    total = sum(sizes.values())
    a = assign_clusters(sizes, {"val": 0.1, "test": 0.1}, seed=1)
    assert set(a) == set(sizes)
    for name in ("val", "test"):
        got = sum(sizes[c] for c, s in a.items() if s == name)
        assert abs(got - 0.1 * total) <= 5, (name, got)
    assert a == assign_clusters(sizes, {"val": 0.1, "test": 0.1}, seed=1)
    assert a != assign_clusters(sizes, {"val": 0.1, "test": 0.1}, seed=2)


def test_mmseqs_split_never_separates_a_family(tmp_path):
    need_mmseqs()
    rows = family_rows(n_families=40, members=4, seed=3)
    ann = write_annotations(tmp_path / "ann.parquet", rows)
    report = split_dataset(ann, tmp_path / "out", tmp_path / "report.json",
                           val_fraction=0.15, test_fraction=0.15, seed=7)
    where = {}
    for name in ("train", "val", "test"):
        for r in _read(tmp_path / "out" / f"{name}.parquet"):
            assert r["split"] == name
            where[r["id"]] = name
    assert len(where) == len(rows)  # nothing lost
    by_family = defaultdict(set)
    for rid, name in where.items():
        by_family[rid.split("_")[0]].add(name)
    assert all(len(s) == 1 for s in by_family.values()), "a family spans two splits"
    assert report["homology_aware"] is True
    assert report["clusters"]["total"] == 40  # mmseqs found the designed families
    assert report["sequences"]["val"] > 0 and report["sequences"]["test"] > 0
    assert json.loads((tmp_path / "report.json").read_text()) == report


def test_decontamination_removes_the_whole_similar_cluster(tmp_path):
    need_mmseqs()
    rows = family_rows(n_families=10, members=3, seed=5)
    ann = write_annotations(tmp_path / "ann.parquet", rows)
    rng = random.Random(9)
    bench_seq = mutate(rng, rows[3]["sequence"], 0.02)  # family 1's parent, lightly mutated
    bench = tmp_path / "bench.fa"
    bench.write_text(f">bench1\n{bench_seq}\n{'.' * len(bench_seq)}\n")
    report = split_dataset(ann, tmp_path / "out", tmp_path / "r.json", decontaminate=[str(bench)],
                           val_fraction=0.1, test_fraction=0.1)
    removed = _read(tmp_path / "out" / "removed.parquet")
    assert sorted(r["id"] for r in removed) == ["fam001_m0", "fam001_m1", "fam001_m2"]
    assert all("bench1" in r["reason"] for r in removed)
    assert report["decontamination"]["sequences_removed"] == 3
    kept = sum(len(_read(tmp_path / "out" / f"{n}.parquet")) for n in ("train", "val", "test"))
    assert kept + len(removed) == len(rows)


def test_random_method_is_labelled_not_homology_aware(tmp_path):
    ann = write_annotations(tmp_path / "ann.parquet", family_rows(5, 4))
    report = split_dataset(ann, tmp_path / "out", tmp_path / "r.json", method="random",
                           val_fraction=0.2, test_fraction=0.2)
    assert report["homology_aware"] is False
    assert "NOT homology-aware" in report["method"]
    assert sum(report["sequences"][k] for k in ("train", "val", "test")) == 20


def test_missing_mmseqs_says_how_to_install(tmp_path, monkeypatch):
    ann = write_annotations(tmp_path / "ann.parquet", family_rows(2, 2))
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH on which mmseqs cannot be found
    with pytest.raises(ToolError, match="apt-get install mmseqs2.*split.method: random"):
        split_dataset(ann, tmp_path / "out", tmp_path / "r.json")
    assert not os.path.exists(tmp_path / "out" / "train.parquet")


def test_bad_fractions_name_the_key(tmp_path):
    ann = write_annotations(tmp_path / "ann.parquet", family_rows(2, 2))
    with pytest.raises(ValueError, match="split.fractions"):
        split_dataset(ann, tmp_path / "out", tmp_path / "r.json", method="random",
                      val_fraction=0.6, test_fraction=0.5)
