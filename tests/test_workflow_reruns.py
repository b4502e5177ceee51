"""What reruns after an edit: the whole workflow once on a tiny config, then dry-run plans."""

import os
import random
import shutil
import time

import pytest

from tests.helpers import REPO
from tests.workflow_utils import (
    copy_workflow,
    planned_rules,
    snakemake,
    write_config,
    write_fold_structures,
)

pytestmark = pytest.mark.slow
UPSTREAM = {"fetch_corpus", "parse_fasta", "scatter_sequences", "annotate_shard",
            "gather_annotations", "split_dataset", "pack_split"}


# Curated sets as users save them: dot-bracket FASTA under a .dbn (bpRNA's) and a .fas (a
# common FASTA extension) name; each used for decontamination and as an evaluation benchmark.
BENCHMARK_FILES = {"dbn": "curated.dbn", "fas": "curated.fas"}
BENCHMARK_RECORDS = {"dbn": range(0, 6), "fas": range(6, 12)}  # tiny.fa records t0..t11


def _tiny_config(workdir, **train):
    return write_config(workdir, {
        "corpus": {"source": "tiny.fa"},
        "split": {"method": "random", "val_fraction": 0.15, "test_fraction": 0.15,
                  "decontaminate": list(BENCHMARK_FILES.values())},
        "train": {"num_epochs": 1, "gpus": 0, **train},
        "finetune": {"structures": "tiny_structures.tsv", "num_epochs": 1},
        "evaluate": {"benchmarks": BENCHMARK_FILES},
    })


def _write_benchmarks(work, sequences):
    import RNA

    for name, file in BENCHMARK_FILES.items():
        with open(work / file, "w") as fh:
            for k in BENCHMARK_RECORDS[name]:
                structure, energy = RNA.fold(sequences[k])
                fh.write(f">curated{k}\n{sequences[k]}\n{structure} ({energy:6.2f})\n")


@pytest.fixture(scope="module")
def trained_copy(tmp_path_factory):
    """A copy of the repo (package included) with the tiny workflow run to the end."""
    work = tmp_path_factory.mktemp("wf")
    copy_workflow(work)
    shutil.copytree(REPO / "genesis_rna", work / "genesis_rna",
                    ignore=shutil.ignore_patterns("__pycache__"))
    rng = random.Random(4)
    sequences = ["".join(rng.choice("ACGU") for _ in range(rng.randint(40, 80)))
                 for _ in range(120)]
    with open(work / "tiny.fa", "w") as fh:
        fh.writelines(f">t{k}\n{seq}\n" for k, seq in enumerate(sequences))
    _write_benchmarks(work, sequences)
    write_fold_structures(work / "tiny.fa", work / "tiny_structures.tsv")
    _tiny_config(work)
    # The copy's own package is the one imported, so editing it is what a user's edit would be.
    os.environ["PYTHONPATH"] = str(work)
    try:
        snakemake(work, "--configfile=test_config.yaml", "--resources", "gpu=1")
        yield work
    finally:
        os.environ.pop("PYTHONPATH", None)


def test_everything_is_cached_after_a_run(trained_copy):
    assert planned_rules(trained_copy, "--configfile=test_config.yaml") == set()


def test_training_reads_the_packed_splits(trained_copy):
    import pyarrow.parquet as pq
    import yaml

    from genesis_rna.data import load_split
    from genesis_rna.packed import PackedSplit

    results = trained_copy / "results"
    for data, run in (("split", "train"), ("finetune_data", "finetune")):
        for name in ("train", "val"):
            packed = PackedSplit(results / "packed" / data / name)
            table = results / data / f"{name}.parquet"
            assert len(packed) == pq.read_metadata(table).num_rows > 0
            assert packed.fingerprint() == load_split(table).fingerprint()
        run_cfg = yaml.safe_load((results / run / "run_config.yaml").read_text())
        assert run_cfg["data_path"] == f"results/packed/{data}"
        assert not (results / run / "packed_data").exists()  # nothing packed on the fly


def test_editing_the_plotting_code_reruns_only_the_plot_rule(trained_copy):
    code = trained_copy / "genesis_rna" / "plot_metrics.py"
    before = code.read_text()
    time.sleep(1.1)  # a new mtime, even on coarse-grained filesystems
    code.write_text(before + "\n# a user's edit to the plotting code\n")
    try:
        plan = planned_rules(trained_copy, "--configfile=test_config.yaml")
        assert "plot_metrics" in plan
        assert not plan & (UPSTREAM | {"train_model"}), plan
    finally:
        code.write_text(before)


def test_editing_the_evaluation_plots_reruns_only_their_rule(trained_copy):
    """The plots are drawn from the evaluation's files: a plot edit redraws, never re-evaluates."""
    code = trained_copy / "genesis_rna" / "eval_plots.py"
    evaluation = trained_copy / "results" / "evaluation" / "train"
    before = code.read_text()
    time.sleep(1.1)  # a new mtime, even on coarse-grained filesystems
    code.write_text(before + "\n# a user's edit to the evaluation plots\n")
    try:
        plan = planned_rules(trained_copy, "--configfile=test_config.yaml")
        assert "plot_evaluation" in plan and plan <= {"plot_evaluation", "all"}, plan
        kept = {p.name: p.stat().st_mtime_ns for p in evaluation.iterdir() if p.suffix != ".png"}
        plot = evaluation / "f1_per_family_test.png"
        drawn = plot.stat().st_mtime_ns
        snakemake(trained_copy, "--configfile=test_config.yaml", "--resources", "gpu=1")
        assert plot.stat().st_mtime_ns > drawn
        assert {p.name: p.stat().st_mtime_ns for p in evaluation.iterdir()
                if p.suffix != ".png"} == kept
    finally:
        code.write_text(before)


def test_a_training_parameter_reruns_training_and_downstream_only(trained_copy):
    _tiny_config(trained_copy, num_epochs=2)
    try:
        plan = planned_rules(trained_copy, "--configfile=test_config.yaml")
        assert {"train_model", "plot_metrics"} <= plan
        assert not plan & UPSTREAM, plan
    finally:
        _tiny_config(trained_copy)


def test_report_collects_plots_evaluation_and_config(trained_copy):
    snakemake(trained_copy, "--configfile=test_config.yaml", "--report", "report.html")
    html = (trained_copy / "report.html").read_text(errors="replace")
    for item in ("summary.png", "f1_vs_length_test.png", "summary.tsv", "run_config.yaml",
                 "models.tsv"):
        assert item in html, item


def test_finetune_stage_starts_from_the_pretrained_weights(trained_copy):
    """The demo config fine-tunes on the designed structures: same split relabelled, weights
    from the pretrained model, both models evaluated side by side."""
    import json

    import pandas as pd
    import pyarrow.parquet as pq
    import yaml

    from genesis_rna.packed import PackedSplit

    results = trained_copy / "results"
    run_cfg = yaml.safe_load((results / "finetune" / "run_config.yaml").read_text())
    assert run_cfg["init_from"] == "results/train/model.pt"
    counts = json.loads((results / "finetune_data" / "counts.json").read_text())
    for name in ("train", "val", "test"):
        ids = set(pq.read_table(results / "split" / f"{name}.parquet", columns=["id"])["id"]
                  .to_pylist())
        relabelled = pq.read_table(results / "finetune_data" / f"{name}.parquet")
        assert set(relabelled["id"].to_pylist()) <= ids  # the same split, never mixed
        assert counts[name]["labelled"] == relabelled.num_rows > 0
        sources = set(relabelled["label_source"].to_pylist())
        assert sources == {"provided:tiny_structures.tsv"}
    log = (results / "logs" / "finetune_model.log").read_text()
    assert "initialized from the weights of results/train/model.pt" in log
    # the demo fine-tune reads the thermo stage's features; the pretrained model does not
    assert "new at zero: pair_head.thermo_in.weight" in log
    assert yaml.safe_load((results / "train" / "run_config.yaml").read_text())["model"][
        "thermo_features"] is False
    assert run_cfg["model"]["thermo_features"] is True
    assert PackedSplit(results / "packed" / "finetune_data" / "train").has_thermo
    assert not PackedSplit(results / "packed" / "split" / "train").has_thermo
    for data in ("split_train", "split_val", "split_test"):
        feats = pq.read_table(results / "thermo" / data / "0-of-1.parquet")
        table = results / "finetune_data" / f"{data[6:]}.parquet"
        assert feats.num_rows == pq.read_metadata(table).num_rows  # every sequence folded
    tuned = json.loads((results / "thermo" / "vienna_mea_threshold.json").read_text())
    summary = json.loads((results / "evaluation" / "finetune" / "summary.json").read_text())
    assert summary["vienna_mea_threshold"] == tuned["threshold"] and summary["thermo_features"]
    models = pd.read_csv(results / "evaluation" / "models.tsv", sep="\t")
    assert set(models["run"]) == {"train", "finetune"}
    assert set(models["dataset"]) == {"test", *BENCHMARK_FILES}
    assert models["model_f1"].between(0, 1).all() and models["vienna_f1"].between(0, 1).all()
    assert models["vienna_mea_f1"].between(0, 1).all()
    assert (models["pair_decoder"] == "mea").all()
    # editing the fine-tune config reruns the fine-tune and what reads it, not the pretraining
    _tiny_config(trained_copy)
    cfg = trained_copy / "config" / "finetune_cpu_demo.yaml"
    before = cfg.read_text()
    try:
        cfg.write_text(before.replace("learning_rate: 1.0e-3", "learning_rate: 5.0e-4"))
        plan = planned_rules(trained_copy, "--configfile=test_config.yaml")
        assert {"finetune_model", "evaluate_model", "compare_models"} <= plan
        assert not plan & (UPSTREAM | {"train_model", "label_finetune", "thermo_features"}), plan
    finally:
        cfg.write_text(before)


def test_dbn_and_fas_curated_sets_decontaminate_and_are_evaluated(trained_copy):
    """Read by content, not by extension: both files are dot-bracket FASTA."""
    import json

    import pyarrow.parquet as pq

    results = trained_copy / "results"
    removed = {r["id"]: r["reason"]
               for r in pq.read_table(results / "split" / "removed.parquet").to_pylist()}
    for name, file in BENCHMARK_FILES.items():
        for k in BENCHMARK_RECORDS[name]:
            assert f"{file}:curated{k}" in removed.get(f"t{k}", ""), (k, removed.get(f"t{k}"))
    for run in ("train", "finetune"):
        summary = json.loads((results / "evaluation" / run / "summary.json").read_text())
        for name in BENCHMARK_FILES:
            block = summary["datasets"][name]
            assert block["n_evaluated"] == len(BENCHMARK_RECORDS[name]), (run, name)
            png = results / "evaluation" / run / f"gallery_{name}.png"
            assert png.read_bytes()[:4] == b"\x89PNG", png


def test_the_checkouts_own_package_runs_whatever_python_finds_first(trained_copy, monkeypatch):
    """Another checkout first on the path (as a `pip install -e` of it would be): the workflow
    says so in one line, tracks and runs its own checkout's code, and plans just what it plans
    with its own checkout first (earlier tests here leave plot_evaluation due: they restore
    eval_plots.py after their run)."""
    own_plan = planned_rules(trained_copy, "--configfile=test_config.yaml")
    assert not own_plan & (UPSTREAM | {"train_model", "evaluate_model"}), own_plan
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("PYTHONSAFEPATH", "1")  # the run folder is not put on sys.path either
    proc = snakemake(trained_copy, "-n", "--configfile=test_config.yaml",
                     "--forcerun", "plot_evaluation")
    out = proc.stdout + proc.stderr
    assert (f"note: running genesis_rna from this checkout ({trained_copy}), not the one Python "
            f"finds first ({REPO})") in out
    assert f"{trained_copy}/genesis_rna/eval_plots.py" in out and f"{REPO}/genesis_rna" not in out
    assert planned_rules(trained_copy, "--configfile=test_config.yaml") == own_plan
