import gzip
import json
import os
import random
from collections import defaultdict

import pandas as pd
import pyarrow.parquet as pq
import pytest

from genesis_rna.errors import ConfigError
from genesis_rna.split import ToolError, assign_clusters, split_dataset
from tests.helpers import family_rows, mutate, need_mmseqs, shared_data, write_annotations


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


@pytest.mark.parametrize(("val", "test", "key"), [(0.6, 0.5, r"split\.val_fraction \+ split\.test_fraction"),
                                                  (0.1, 1.2, r"'split\.test_fraction'")])
def test_bad_fractions_name_the_key(tmp_path, val, test, key):
    ann = write_annotations(tmp_path / "ann.parquet", family_rows(2, 2))
    with pytest.raises(ConfigError, match=key):
        split_dataset(ann, tmp_path / "out", tmp_path / "r.json", method="random",
                      val_fraction=val, test_fraction=test)


def _split_of(out):
    """id -> (split, cluster) over the three split tables."""
    return {r["id"]: (name, r["cluster"]) for name in ("train", "val", "test")
            for r in _read(out / f"{name}.parquet")}


def _write_family_table(path, entries, gz=True):
    """entries: (id, family, clan) rows, as a TSV shaped like Rfam's (extra columns, empty clan)."""
    lines = ["id\tfamily\tfamily_id\tclan\tlength"]
    lines += [f"{rid}\t{fam}\t{fam}_name\t{clan}\t0" for rid, fam, clan in entries]
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_family_split_keeps_families_and_clans_whole(tmp_path):
    rows = family_rows(n_families=30, members=4, seed=11)
    # Two synthetic families per Rfam family (so a family is more than one MMseqs2 cluster);
    # RF00000 and RF00001 share clan CL00001; fam004_m0 is also listed under RF00010 (Rfam seeds
    # can sit in two families), which ties RF00002 and RF00010 together; fam028/fam029 are absent.
    entries = [(r["id"], f"RF{int(r['id'][3:6]) // 2:05d}", "CL00001" if r["id"] < "fam004" else "")
               for r in rows if r["id"] < "fam028"]
    entries += [("fam004_m0", "RF00010", ""), ("not_in_corpus", "RF09999", "CL09999")]
    table = _write_family_table(tmp_path / "families.tsv.gz", entries)
    ann = write_annotations(tmp_path / "ann.parquet", rows)
    report = split_dataset(ann, tmp_path / "out", tmp_path / "r.json", method="family",
                           family_table=str(table), val_fraction=0.2, test_fraction=0.2, seed=3)

    where = _split_of(tmp_path / "out")
    assert len(where) == len(rows)  # the 8 sequences without a family are kept
    groups = defaultdict(set)
    for rid, fam, clan in entries[:-1]:
        groups[fam].add(where[rid][0])
        groups[clan or fam].add(where[rid][0])
    groups["RF00002+RF00010"] = groups["RF00002"] | groups["RF00010"]
    assert all(len(s) == 1 for s in groups.values()), groups
    assert where["fam000_m0"][1] == where["fam003_m1"][1] == "CL00001"  # group in cluster column
    assert all(where[f"fam0{f}_m{m}"][1] == f"fam0{f}_m{m}" for f in (28, 29) for m in range(4))
    assert {name for name, _ in where.values()} == {"train", "val", "test"}
    assert report["method"] == "family" and report["homology_aware"] is True
    assert report["guarantee"].startswith("no family/clan spans two splits")
    fam = report["families"]
    assert (fam["sequences_without_family"], fam["sequences_with_family"]) == (8, 112)
    assert (fam["families"], fam["clans"], fam["groups"]) == (14, 1, 12)
    assert report["clusters"]["total"] == 12 + 8


def test_family_split_config_errors_name_key_file_and_column(tmp_path):
    ann = write_annotations(tmp_path / "ann.parquet", family_rows(2, 2))
    with pytest.raises(ConfigError, match=r"split\.family_table.*split\.method is 'family'"):
        split_dataset(ann, tmp_path / "out", tmp_path / "r.json", method="family")
    with pytest.raises(ConfigError, match=r"split\.family_table.*decontaminate_level is 'family'"):
        split_dataset(ann, tmp_path / "out", tmp_path / "r.json", method="random",
                      decontaminate_level="family")
    no_family = tmp_path / "ids.csv"
    no_family.write_text("id,clan\nfam000_m0,CL1\n")
    with pytest.raises(ConfigError, match=r"split\.family_table.*ids\.csv has no column 'family'"):
        split_dataset(ann, tmp_path / "out", tmp_path / "r.json", method="family",
                      family_table=str(no_family))
    with pytest.raises(ConfigError, match=r"split\.family_table.*nowhere\.tsv not found"):
        split_dataset(ann, tmp_path / "out", tmp_path / "r.json", method="family",
                      family_table=str(tmp_path / "nowhere.tsv"))
    assert not (tmp_path / "out").exists()


def test_family_level_decontamination_removes_whole_family_and_clan(tmp_path):
    need_mmseqs()
    rows = family_rows(n_families=10, members=3, seed=5)
    ann = write_annotations(tmp_path / "ann.parquet", rows)
    bench_seq = mutate(random.Random(9), rows[3]["sequence"], 0.02)  # near fam001 only
    bench = tmp_path / "bench.fa"
    bench.write_text(f">bench1\n{bench_seq}\n{'.' * len(bench_seq)}\n")
    # fam001 and fam003 are one Rfam family (two MMseqs2 clusters); fam002 shares its clan.
    family = {1: ("RF00001", "CL00001"), 3: ("RF00001", "CL00001"), 2: ("RF00002", "CL00001")}
    entries = [(r["id"], *family.get(int(r["id"][3:6]), (f"RF001{r['id'][4:6]}", "")))
               for r in rows if not r["id"].startswith("fam009")]  # fam009: no family
    table = str(_write_family_table(tmp_path / "fam.csv", entries, gz=False))
    removed_family = sorted(f"fam00{f}_m{m}" for f in (1, 2, 3) for m in range(3))

    def run(name, **kw):
        out = tmp_path / name
        report = split_dataset(ann, out, tmp_path / f"{name}.json", decontaminate=[str(bench)],
                               family_table=table, val_fraction=0.1, test_fraction=0.1, **kw)
        removed = {r["id"]: r["reason"] for r in _read(out / "removed.parquet")}
        kept = _split_of(out)
        assert len(kept) + len(removed) == len(rows) == report["sequences"]["input"]
        assert not set(kept) & set(removed)
        return report, removed

    # Sequence level: only the MMseqs2 cluster of the hit goes.
    report, removed = run("seq", decontaminate_level="sequence")
    assert sorted(removed) == ["fam001_m0", "fam001_m1", "fam001_m2"]
    assert report["decontamination"]["families_removed"] == []

    for method in ("mmseqs", "family"):
        report, removed = run(method, method=method, decontaminate_level="family")
        assert sorted(removed) == removed_family, method
        for reason in removed.values():
            assert reason.startswith("family RF0000"), reason
            assert "(clan CL00001) has RF00001 sequence fam001_m" in reason, reason
            assert "similar to benchmark bench.fa:bench1" in reason and "E-value" in reason, reason
        assert removed["fam002_m0"].startswith("family RF00002 (clan CL00001)")
        dec = report["decontamination"]
        assert dec["level"] == "family" and dec["evalue"] == 1e-3 and dec["min_seq_id"] is None
        assert "-s 7.5 -e 0.001" in dec["search"] and "--min-seq-id" not in dec["search"]
        assert dec["families_removed"] == ["RF00001", "RF00002"]
        assert dec["groups_removed"] == 1 and dec["sequences_removed"] == 9
        assert report["families"]["sequences_without_family"] == 3


def test_family_split_on_real_rfam_seed_table(tmp_path):
    table = shared_data("rfam14.9_seed_structures.tsv.gz")
    head = pd.read_csv(table, sep="\t", nrows=3000, dtype=str, keep_default_na=False)
    head = head.drop_duplicates("id")
    rows = [{"id": r.id, "description": r.family_id, "sequence": r.sequence, "length": len(r.sequence),
             "structure": r.structure, "pair_i": [], "pair_j": [], "elements": "", "energy": None,
             "label_source": "rfam"} for r in head.itertuples()]
    ann = write_annotations(tmp_path / "ann.parquet", rows)
    report = split_dataset(ann, tmp_path / "out", tmp_path / "r.json", method="family",
                           family_table=str(table), val_fraction=0.1, test_fraction=0.1)
    where = _split_of(tmp_path / "out")
    assert len(where) == len(rows)
    for key in ("family", "clan"):
        spans = head[head[key] != ""].assign(split=head["id"].map(lambda i: where[i][0]))
        per_group = spans.groupby(key)["split"].nunique()
        assert (per_group == 1).all(), per_group[per_group > 1]
    assert report["families"]["sequences_without_family"] == 0
    assert report["sequences"]["val"] > 0 and report["sequences"]["test"] > 0


def test_empty_or_tiny_splits_fail_or_warn_with_the_counts(tmp_path, capsys):
    """A corpus too small for the requested fractions stops before writing anything; a tiny
    val/test split is written with a warning (issue 14: a 1 / 0 / 0 split trained on nothing)."""
    ann = write_annotations(tmp_path / "ann.parquet", family_rows(3, 1))
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"'split\.val_fraction': the split would leave val, "
                       r"test empty \(input 3 sequences, removed 0, train 3 / val 0 / test 0\): "
                       r"3 kept sequences are too few for val_fraction 0\.05"):
        split_dataset(ann, out, tmp_path / "r.json", method="random")
    assert not out.exists() and not (tmp_path / "r.json").exists()
    with pytest.raises(ConfigError, match=r"leave train empty \(input 3 sequences, removed 0, "
                                          r"train 0 / val 1 / test 2\)"):
        split_dataset(ann, out, tmp_path / "r.json", method="random", val_fraction=0.3,
                      test_fraction=0.6)
    assert not out.exists()
    # no val/test requested: nothing to warn about
    split_dataset(ann, out, tmp_path / "r.json", method="random", val_fraction=0, test_fraction=0)
    assert "warning" not in capsys.readouterr().err
    ann = write_annotations(tmp_path / "ann30.parquet", family_rows(30, 1))
    report = split_dataset(ann, tmp_path / "out30", tmp_path / "r30.json", method="random",
                           val_fraction=0.1, test_fraction=0.1)
    err = capsys.readouterr().err
    assert "warning: small split: val 3, test 3 sequences (input 30 sequences, removed 0, " \
           "train 24 / val 3 / test 3)" in err
    assert report["sequences"]["val"] == 3 and (tmp_path / "out30" / "val.parquet").exists()


def test_split_fails_when_decontamination_removes_everything(tmp_path):
    need_mmseqs()
    rows = family_rows(n_families=1, members=3, seed=5)
    ann = write_annotations(tmp_path / "ann.parquet", rows)
    bench = tmp_path / "bench.fa"
    seq = rows[0]["sequence"]
    bench.write_text(f">bench1\n{seq}\n{'.' * len(seq)}\n")
    with pytest.raises(ConfigError, match=r"'split\.decontaminate': the split would leave train, "
                       r"val, test empty \(input 3 sequences, removed 3, .*decontamination "
                       r"removed every sequence"):
        split_dataset(ann, tmp_path / "out", tmp_path / "r.json", decontaminate=[str(bench)])
    assert not (tmp_path / "out").exists()


def test_memory_limit_is_passed_to_every_mmseqs_step(tmp_path, capsys):
    need_mmseqs()
    rows = family_rows(n_families=10, members=3, seed=5)
    ann = write_annotations(tmp_path / "ann.parquet", rows)
    bench = tmp_path / "bench.fa"
    seq = rows[3]["sequence"]
    bench.write_text(f">bench1\n{seq}\n{'.' * len(seq)}\n")
    report = split_dataset(ann, tmp_path / "out", tmp_path / "r.json", decontaminate=[str(bench)],
                           val_fraction=0.1, test_fraction=0.1, memory_limit="9G")
    log = capsys.readouterr().err  # the rule's log: every tool command line
    commands = [line for line in log.splitlines() if line.startswith("$ mmseqs")]
    assert [c.split()[2] for c in commands] == ["easy-linclust", "easy-search"]
    assert all(" --split-memory-limit 9G " in c for c in commands), commands
    assert report["mmseqs"]["memory_limit"] == report["decontamination"]["memory_limit"] == "9G"
    assert report["decontamination"]["sequences_removed"] == 3  # same result as without a limit
    split_dataset(ann, tmp_path / "out2", tmp_path / "r2.json", val_fraction=0.1,
                  test_fraction=0.1)
    assert "--split-memory-limit" not in capsys.readouterr().err  # null: MMseqs2's own default


@pytest.mark.parametrize(("limit", "step", "hint"), [
    ("1G", "easy-search", "at least 9G"),  # the nucleotide search's k-mer index is ~8 GiB
    ("100B", "easy-linclust", "raise the limit"),  # the k-mer matcher's buffers do not fit
])
def test_too_small_memory_limit_is_a_config_error(tmp_path, limit, step, hint):
    need_mmseqs()
    rows = family_rows(n_families=10, members=3, seed=5)
    ann = write_annotations(tmp_path / "ann.parquet", rows)
    bench = tmp_path / "bench.fa"
    bench.write_text(f">bench1\n{rows[0]['sequence']}\n{'.' * len(rows[0]['sequence'])}\n")
    with pytest.raises(ConfigError, match=rf"'split\.memory_limit'.*MMseqs2 {step} cannot fit "
                       rf"its databases into {limit}.*{hint}"):
        split_dataset(ann, tmp_path / "out", tmp_path / "r.json", decontaminate=[str(bench)],
                      memory_limit=limit)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("limit", ["16", "16GB", "0G", "1.5G", "g"])
def test_malformed_memory_limit_names_the_key(tmp_path, limit):
    ann = write_annotations(tmp_path / "ann.parquet", family_rows(5, 4))
    with pytest.raises(ConfigError, match=r"'split\.memory_limit'.*not a size like"):
        split_dataset(ann, tmp_path / "out", tmp_path / "r.json", method="random",
                      memory_limit=limit)


@pytest.mark.slow
def test_split_job_memory_follows_memory_limit(tmp_path):
    """The job's mem_mb (what the SLURM profile submits) is split.memory_limit + 4 GB."""
    from tests.workflow_utils import copy_workflow, snakemake, write_config

    copy_workflow(tmp_path)
    for limit, mem_mb in (("9G", 9 * 1024 + 4000), (None, 16000)):
        write_config(tmp_path, {"split": {"memory_limit": limit}})
        out = snakemake(tmp_path, "-n", "--configfile=test_config.yaml").stdout
        job = out[out.index("rule split_dataset:"):].split("\n\n")[0]
        assert f" mem_mb={mem_mb}," in job, job
