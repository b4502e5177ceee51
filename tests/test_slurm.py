"""The workflow on a real SLURM cluster (single node, localhost) through workflow/profiles/slurm.

Skips with the reason where SLURM, munge or the executor plugin is not installed (see
tests/slurm_cluster.py). Every snakemake call runs under ``timeout -k`` so a stuck status check
cannot hang the suite.
"""

from __future__ import annotations

import csv
import random
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.slurm_cluster import SlurmCluster, local_slurm_cluster
from tests.workflow_utils import copy_workflow, write_config, write_fold_structures

pytestmark = pytest.mark.slow

PROFILE = "workflow/profiles/slurm"
RUN_TIMEOUT = 360  # seconds for one snakemake run (the first takes ~2-3 minutes on 2 cores)
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (.+?)\)")
CHECKPOINT = re.compile(r"ckpt_step\d+\.pt$")
# Rules that run on the submit host: `all` (nothing to execute) and any rule the Snakefile
# declares in `localrules:`.
LOCAL_RULES = {"all"}


def snakemake_cmd(timeout: int = RUN_TIMEOUT) -> list[str]:
    # The profile replaces the local workflow profile (profiles/default), whose keys would
    # otherwise override it. Test-only flags: status checks start after 1 s instead of 40 s,
    # and the SLURM logs of successful jobs are kept for inspection.
    return ["timeout", "-k", "15", str(timeout), sys.executable, "-m", "snakemake",
            "--workflow-profile", PROFILE, "--configfile", "test_config.yaml",
            "--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs"]


def run_snakemake(cluster: SlurmCluster, work: Path) -> str:
    proc = subprocess.run(snakemake_cmd(), cwd=work, env=cluster.env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT + 30)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"snakemake on SLURM failed ({proc.returncode}):\n{output}\n"
                             f"{cluster.logs()}")
    return output


def job_stats(output: str) -> Counter:
    """Rule -> job count from the 'Job stats' table snakemake prints first."""
    counts: Counter = Counter()
    lines = output.splitlines()
    start = lines.index("Job stats:")
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="module")
def cluster():
    with local_slurm_cluster() as running:
        yield running


@dataclass
class Runs:
    """What the module's two snakemake runs left: the killed one, then the resumed one."""

    work: Path
    killed_output: str
    killed_jobid: str
    left_checkpoints: list[str]
    resumed_output: str


def _wait_for_checkpoint(folder: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.is_dir() and any(CHECKPOINT.match(p.name) for p in folder.iterdir()):
            return
        if proc.poll() is not None:
            raise AssertionError(f"snakemake exited ({proc.returncode}) before a checkpoint")
        time.sleep(0.2)
    raise TimeoutError(f"no checkpoint in {folder} after {timeout}s")


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory) -> Runs:
    """The demo workflow on the cluster; its training job is cancelled (scancel) once it has
    written a checkpoint, then the workflow is run again."""
    work = tmp_path_factory.mktemp("slurm_wf")
    copy_workflow(work)
    rng = random.Random(7)
    with open(work / "tiny.fa", "w") as fh:
        for k in range(150):
            fh.write(f">s{k}\n{''.join(rng.choice('ACGU') for _ in range(rng.randint(40, 80)))}\n")
    write_fold_structures(work / "tiny.fa", work / "tiny_structures.tsv")
    # A checkpoint every 5 steps and 3 epochs (~21 steps): a checkpoint appears early, and
    # training is still running when it is cancelled.
    trainer = yaml.safe_load((work / "config" / "train_cpu_demo.yaml").read_text())
    (work / "train_test.yaml").write_text(yaml.safe_dump({**trainer, "save_every_steps": 5}))
    write_config(work, {
        "corpus": {"source": "tiny.fa"},
        "split": {"method": "random", "val_fraction": 0.15, "test_fraction": 0.15},
        "train": {"config": "train_test.yaml", "num_epochs": 3, "gpus": 1, "threads": 2},
        "finetune": {"structures": "tiny_structures.tsv", "num_epochs": 1},
    })
    checkpoints = work / "results" / "train_checkpoints"

    start = time.monotonic()
    with open(work / "killed_run.out", "w") as out:
        proc = subprocess.Popen(snakemake_cmd(), cwd=work, env=cluster.env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        _wait_for_checkpoint(checkpoints, proc, timeout=RUN_TIMEOUT)
        running = [j for j in cluster.jobs()
                   if j["comment"] == "rule_train_model" and j["state"] == "RUNNING"]
        assert len(running) == 1, cluster.jobs()
        jobid = running[0]["id"]
        cluster.run("scancel", jobid)
        assert cluster.wait_for_state(jobid, {"CANCELLED", "COMPLETED"}) == "CANCELLED"
        proc.wait(timeout=RUN_TIMEOUT)  # snakemake notices at its next status check
    finally:
        if proc.poll() is None:
            proc.terminate()  # `timeout` passes SIGTERM on; snakemake cancels its jobs
            proc.wait(timeout=60)
    killed_output = (work / "killed_run.out").read_text()
    assert proc.returncode != 0, killed_output
    left = sorted(p.name for p in checkpoints.iterdir() if CHECKPOINT.match(p.name))
    killed_log = (work / "results" / "logs" / "train_model.log").read_text()
    assert not re.search(r"wrote .*model\.pt", killed_log), "training ended before the kill"
    killed_at = time.monotonic()

    resumed_output = run_snakemake(cluster, work)
    print(f"\nSLURM: killed run {killed_at - start:.0f}s, "
          f"resumed run {time.monotonic() - killed_at:.0f}s")
    return Runs(work, killed_output, jobid, left, resumed_output)


def test_every_rule_runs_as_a_slurm_job_and_training_gets_a_gpu(runs, cluster):
    def planned(output: str) -> Counter:
        stats = job_stats(output)
        return Counter({f"rule_{r}": n for r, n in stats.items() if r not in LOCAL_RULES})

    def rule_of(log: Path) -> str:
        return log.parent.name if log.parent.name.startswith("rule_") else log.parent.parent.name

    def by_rule_of(output: str) -> tuple[dict, Counter]:
        jobs = {jobid: Path(log) for jobid, log in SUBMITTED.findall(output)}
        return jobs, Counter(rule_of(log) for log in jobs.values())

    expected = planned(runs.killed_output)
    assert {"rule_annotate_shard", "rule_train_model", "rule_plot_metrics"} <= set(expected)
    killed, killed_rules = by_rule_of(runs.killed_output)
    resumed, resumed_rules = by_rule_of(runs.resumed_output)
    # the resumed run sends every job it plans to the cluster, training among them; over both
    # runs every rule of the workflow ran as a SLURM job
    assert resumed_rules == planned(runs.resumed_output), runs.resumed_output
    assert resumed_rules["rule_train_model"] == 1
    assert set(killed_rules) | set(resumed_rules) == set(expected)
    submitted = {**killed, **resumed}
    by_rule = killed_rules + resumed_rules

    # The cluster's own record: every job ran to the end but the cancelled training and what
    # snakemake cancelled when it stopped (jobs still running beside training on a loaded
    # machine), each of those submitted again by the resumed run; every job left its SLURM log.
    records = {job["id"]: job for job in cluster.jobs()}
    for jobid, log in submitted.items():
        state = records[jobid]["state"]
        if jobid == runs.killed_jobid:
            assert state == "CANCELLED", records[jobid]
        elif jobid in killed and state == "CANCELLED":
            assert resumed_rules[rule_of(log)] >= 1, records[jobid]
        else:
            assert state == "COMPLETED", (records[jobid], cluster.logs())
        assert log.is_file(), f"no SLURM log {log}"
    rules_on_cluster = Counter(
        re.sub(r"_wildcards_.*$", "", records[jobid]["comment"]) for jobid in submitted)
    assert rules_on_cluster == by_rule

    train_ids = [j for j in submitted if records[j]["comment"] == "rule_train_model"]
    assert runs.killed_jobid in train_ids
    for jobid in train_ids:
        train = cluster.job_record(jobid)
        assert train["Partition"] == "gpu"
        assert train["JOB_GRES"] == "gpu:1", train  # the GPU was allocated, not only requested
        assert train["NumCPUs"] == "2"  # cpus_per_gpu follows train.threads
    finetune_ids = [j for j in submitted
                    if records[j]["comment"].startswith("rule_finetune_model")]
    assert len(finetune_ids) == 1
    assert cluster.job_record(finetune_ids[0])["JOB_GRES"] == "gpu:1"
    shard_ids = [j for j in submitted if records[j]["comment"].startswith("rule_annotate_shard")]
    assert len(shard_ids) == expected["rule_annotate_shard"]
    for jobid in shard_ids:
        shard = cluster.job_record(jobid)
        assert shard["Partition"] == "cpu"
        assert shard["JOB_GRES"] == "(null)", shard  # CPU jobs hold no GPU
    assert (runs.work / "results" / "plots" / "train" / "summary.png").is_file()
    assert (runs.work / "results" / "evaluation" / "models.tsv").is_file()


def test_a_training_job_killed_on_the_cluster_resumes_from_its_checkpoint(runs):
    assert f"SLURM-job '{runs.killed_jobid}' failed" in runs.killed_output
    assert runs.left_checkpoints, "the cancelled job left no checkpoint"
    log = (runs.work / "results" / "logs" / "train_model.log").read_text()
    resumed = re.search(r"resumed from (\S+):", log)
    assert resumed, log
    assert Path(resumed.group(1)).name in runs.left_checkpoints
    assert (runs.work / "results" / "train" / "model.pt").is_file()
    with open(runs.work / "results" / "train" / "training_metrics.csv") as fh:
        epochs = [int(row["epoch"]) for row in csv.DictReader(fh) if row["phase"] == "train"]
    assert epochs == [1, 2, 3]
