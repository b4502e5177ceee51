"""What reruns after an edit: the whole workflow once on a tiny config, then dry-run plans."""

import os
import random
import shutil
import time

import pytest

from tests.helpers import REPO
from tests.workflow_utils import copy_workflow, planned_rules, snakemake, write_config

pytestmark = pytest.mark.slow
UPSTREAM = {"fetch_corpus", "parse_fasta", "scatter_sequences", "annotate_shard",
            "gather_annotations", "split_dataset"}


def _tiny_config(workdir, **train):
    return write_config(workdir, {
        "corpus": {"source": "tiny.fa"},
        "split": {"method": "random", "val_fraction": 0.15, "test_fraction": 0.15},
        "train": {"num_epochs": 1, "gpus": 0, **train},
    })


@pytest.fixture(scope="module")
def trained_copy(tmp_path_factory):
    """A copy of the repo (package included) with the tiny workflow run to the end."""
    work = tmp_path_factory.mktemp("wf")
    copy_workflow(work)
    shutil.copytree(REPO / "genesis_rna", work / "genesis_rna",
                    ignore=shutil.ignore_patterns("__pycache__"))
    rng = random.Random(4)
    with open(work / "tiny.fa", "w") as fh:
        for k in range(120):
            fh.write(f">t{k}\n{''.join(rng.choice('ACGU') for _ in range(rng.randint(40, 80)))}\n")
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
    for item in ("summary.png", "f1_vs_length_test.png", "summary.tsv", "run_config.yaml"):
        assert item in html, item
