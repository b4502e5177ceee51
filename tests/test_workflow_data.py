"""The data stages through the real snakemake CLI, on tiny configs in tmp folders."""

import gzip
import json
import random

import pyarrow.parquet as pq
import pytest

from tests.helpers import shared_data
from tests.workflow_utils import copy_workflow, planned_rules, snakemake, write_config

pytestmark = pytest.mark.slow
DATA_TARGET = "results/split/split_report.json"


def _tiny_fasta(path, n=150, seed=1):
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for k in range(n):
            seq = "".join(rng.choice("ACGU") for _ in range(rng.randint(40, 90)))
            fh.write(f">seq{k} tiny test record\n{seq}\n")
        fh.write(">bad1 has illegal characters\nACGU!!ACGUACGUACGUACGUACGU\n")
        fh.write(">seq0 duplicate id\nACGUACGUACGUACGUACGUACGUAA\n")
    return path


@pytest.fixture
def tiny_workdir(tmp_path):
    copy_workflow(tmp_path)
    _tiny_fasta(tmp_path / "tiny.fa")
    write_config(tmp_path, {"corpus": {"source": "tiny.fa"}, "annotate": {"shards": 3},
                            "split": {"val_fraction": 0.1, "test_fraction": 0.1}})
    return tmp_path


def test_data_stages_run_cache_and_account_for_every_record(tiny_workdir):
    cfg = "--configfile=test_config.yaml"
    assert {"fetch_corpus", "parse_fasta", "scatter_sequences", "annotate_shard",
            "gather_annotations", "split_dataset"} <= planned_rules(tiny_workdir, cfg, DATA_TARGET)
    snakemake(tiny_workdir, cfg, DATA_TARGET)
    res = tiny_workdir / "results"
    manifest = json.loads((res / "corpus" / "manifest.json").read_text())
    assert manifest["bytes"] == (tiny_workdir / "tiny.fa").stat().st_size
    stats = json.loads((res / "sequences" / "stats.json").read_text())
    assert stats["records_read"] == 152
    rejected = pq.read_table(res / "sequences" / "rejected.parquet").to_pylist()
    assert {r["id"] for r in rejected} >= {"bad1", "seq0"}
    assert stats["kept"] + stats["rejected"] == 152
    ann = pq.read_table(res / "annotate" / "annotations.parquet").to_pylist()
    assert len(ann) == stats["kept"]
    for r in ann[:20]:
        assert len(r["structure"]) == len(r["elements"]) == r["length"]
        assert r["label_source"].startswith("ViennaRNA")
        assert r["elements"].count("S") == 2 * len(r["pair_i"])
    assert len(list((res / "annotate" / "shards").glob("*.annotations.parquet"))) == 3
    report = json.loads((res / "split" / "split_report.json").read_text())
    assert sum(report["sequences"][k] for k in ("train", "val", "test", "removed")) == len(ann)
    # Cached: nothing to do on a second run.
    assert planned_rules(tiny_workdir, cfg, DATA_TARGET) == set()
    # A parse parameter change reruns parsing and downstream, never the download.
    write_config(tiny_workdir, {"corpus": {"source": "tiny.fa"}, "annotate": {"shards": 3},
                                "parse": {"min_length": 50},
                                "split": {"val_fraction": 0.1, "test_fraction": 0.1}})
    plan = planned_rules(tiny_workdir, cfg, DATA_TARGET)
    assert "parse_fasta" in plan and "split_dataset" in plan and "fetch_corpus" not in plan


def test_unknown_or_mistyped_config_key_is_named_before_any_job(tmp_path):
    copy_workflow(tmp_path)
    write_config(tmp_path, {"annotate": {"shards": "two"}})
    proc = snakemake(tmp_path, "-n", "--configfile=test_config.yaml", check=False)
    assert proc.returncode != 0
    assert "shards" in proc.stderr + proc.stdout and "'two' is not of type 'integer'" in proc.stderr + proc.stdout
    write_config(tmp_path, {"annotate": {"shardz": 2}})
    proc = snakemake(tmp_path, "-n", "--configfile=test_config.yaml", check=False)
    assert proc.returncode != 0 and "shardz" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


def test_truncated_gzip_corpus_fails_clearly_and_leaves_no_output(tmp_path):
    copy_workflow(tmp_path)
    data = gzip.compress(b">a\nACGUACGUACGUACGUACGUACGU\n" * 200)
    (tmp_path / "cut.fa.gz").write_bytes(data[: len(data) // 2])
    write_config(tmp_path, {"corpus": {"source": "cut.fa.gz"}})
    proc = snakemake(tmp_path, "--configfile=test_config.yaml", DATA_TARGET, check=False)
    assert proc.returncode != 0
    assert "cut.fa.gz" in proc.stderr and "gzip" in proc.stderr.lower()
    assert not (tmp_path / "results" / "corpus" / "corpus.fasta.gz").exists()


def test_provided_structures_on_the_demo_corpus(tmp_path):
    copy_workflow(tmp_path)
    write_config(tmp_path, {
        "structures": {"source": "provided", "provided_path": "resources/demo_structures.tsv.gz"},
        "split": {"method": "random"},
    })
    snakemake(tmp_path, "--configfile=test_config.yaml", DATA_TARGET)
    ann = pq.read_table(tmp_path / "results" / "annotate" / "annotations.parquet").to_pylist()
    rej = pq.read_table(tmp_path / "results" / "annotate" / "rejected.parquet").to_pylist()
    assert ann and all(r["label_source"] == "provided:demo_structures.tsv.gz" for r in ann)
    stats = json.loads((tmp_path / "results" / "sequences" / "stats.json").read_text())
    assert len(ann) + len(rej) == stats["kept"]


@pytest.mark.realdata
def test_data_stages_on_real_rfam_seed_records(tmp_path):
    src = shared_data("rfam14.9_seed.fasta.gz")
    copy_workflow(tmp_path)
    # Every 30th record of the seed file: ~3000 real sequences from many families.
    with gzip.open(src, "rt") as fin, gzip.open(tmp_path / "rfam_subset.fa.gz", "wt") as fout:
        keep, k = False, 0
        for line in fin:
            if line.startswith(">"):
                keep = k % 30 == 0
                k += 1
            if keep:
                fout.write(line)
    write_config(tmp_path, {"corpus": {"source": "rfam_subset.fa.gz"},
                            "parse": {"max_length": 400}, "annotate": {"shards": 2}})
    snakemake(tmp_path, "--configfile=test_config.yaml", DATA_TARGET, timeout=1500)
    stats = json.loads((tmp_path / "results" / "sequences" / "stats.json").read_text())
    assert stats["records_read"] == (k + 29) // 30
    report = json.loads((tmp_path / "results" / "split" / "split_report.json").read_text())
    assert report["homology_aware"] and report["clusters"]["total"] < stats["kept"]
