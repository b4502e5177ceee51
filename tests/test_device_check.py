"""The prepared GPU check (genesis_rna.device_check): its workflow config for a GPU machine, its
report, and the whole script in its CPU dry run on the demo (so it cannot rot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest
import torch
import yaml

from genesis_rna import device_check
from genesis_rna.checkpoint import load_model
from genesis_rna.predict import main as predict_main
from tests.helpers import REPO, need_mmseqs
from tests.workflow_utils import copy_workflow, write_config


def test_workflow_config_moves_data_and_uses_the_gpu_trainer_configs():
    base = yaml.safe_load((REPO / "config" / "realdata_comparative.yaml").read_text())
    carried = device_check.carried_data_files(base)
    assert sorted(carried) == sorted([base["finetune"]["structures"],
                                      *base["evaluate"]["benchmarks"].values()])
    assert base["corpus"]["source"] not in carried  # the split is carried, not its inputs
    cfg = device_check.workflow_config(
        base, results="results/device_run", data_dir="results/device_carry/data",
        train_config="config/train_gpu.yaml", finetune_config="config/finetune_gpu.yaml",
        train_epochs=3, finetune_epochs=None, cores=16, ablations=False)
    assert cfg["results"] == "results/device_run"
    assert cfg["finetune"]["structures"] == "results/device_carry/data/" + \
        base["finetune"]["structures"].rsplit("/", 1)[1]
    assert all(v.startswith("results/device_carry/data/")
               for v in cfg["evaluate"]["benchmarks"].values())
    assert cfg["train"] == {**base["train"], "config": "config/train_gpu.yaml", "gpus": 1,
                            "threads": 16, "num_epochs": 3}
    assert cfg["finetune"]["config"] == "config/finetune_gpu.yaml"
    assert cfg["finetune"]["thermo_features"] is True
    assert not cfg["finetune"]["scratch_baseline"] and not cfg["finetune"]["thermo_ablation"]
    assert cfg["thermo"]["shards"] == 16 and cfg["evaluate"]["threads"] == 16
    assert base["finetune"]["scratch_baseline"]  # the base config is not changed
    both = device_check.workflow_config(
        base, results="r", data_dir="d", train_config="t", finetune_config="f",
        train_epochs=None, finetune_epochs=None, cores=2, ablations=True)
    assert both["finetune"]["scratch_baseline"] and both["finetune"]["thermo_ablation"]
    # the GPU trainer configs share the architecture the fine-tune needs
    gpu = [yaml.safe_load((REPO / "config" / n).read_text())
           for n in ("train_gpu.yaml", "finetune_gpu.yaml")]
    arch = ("model_size", "pair_conv_layers", "pair_conv_channels", "max_len")
    assert all(gpu[0][k] == gpu[1][k] for k in arch)
    assert gpu[0]["mixed_precision"] == "bf16" and gpu[0]["num_workers"] >= 8


def test_report_tables():
    summary = {"dry_run": False, "machine": {"gpu": "NVIDIA H200"}, "steps": {
        "tests": {"ok": True, "exit": 0, "seconds": 30, "tests": 6, "skipped": 0},
        "bench": {"ok": True, "exit": 0, "seconds": 100, "rows": [
            {"model_size": "base", "bench": "train", "mode": "base, genesis_rna, bf16, "
             "length buckets of 32, batch 64, H200", "records_per_s": 250000.0,
             "mfu_vs_best_matmul": 0.36, "speedup_vs_earlier_design": 12.5},
            {"model_size": "base", "bench": "train_trainer", "mode": "base, trainer, AST on",
             "trained_nt_per_s": 90000.0, "mfu_vs_bf16_matmul": 0.2, "activation": 0.41,
             "candidate_nt_per_s": 220000.0, "batch_size": 128, "num_workers": 8}]},
        "workflow": {"ok": False, "exit": 124, "seconds": 200, "models": [
            {"run": "finetune", "dataset": "archiveII", "n": 3865, "model_f1": 0.6,
             "vienna_f1": 0.58, "vienna_mea_f1": float("nan")}]}}}
    text = device_check.report(summary)
    assert "- workflow: FAILED, exit 124" in text and "(6 tests, 0 failed" in text
    assert "| base | base, genesis_rna, bf16, length buckets of 32 | 250,000 | 36.0% | " \
           "speedup 12.5x (median round) |" in text
    assert "90,000 trained | 20.0% | activation 0.41" in text
    assert "| finetune | archiveII | 3865 | 0.600 | 0.580 | - |" in text


@pytest.mark.slow
def test_dry_run_of_the_whole_device_script(tmp_path):
    """prepare (the demo split, no wheels) then run --dry-run: the CUDA tests step (skipped
    here), bench train on CPU, the workflow from the carried split; what comes back."""
    need_mmseqs()
    work = copy_workflow(tmp_path / "repo")
    # the demo config on its first 240 records (the whole demo takes minutes per stage on CPU)
    records = (work / "resources" / "demo_corpus.fasta").read_text().split(">")[1:241]
    (work / "resources" / "dry.fasta").write_text("".join(">" + r for r in records))
    write_config(work / "config", {"corpus": {"source": "resources/dry.fasta"}}, "dry.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    prep = subprocess.run([sys.executable, "-m", "genesis_rna.device_check", "prepare",
                           "--configfile", "config/dry.yaml", "--wheels"], cwd=work,
                          capture_output=True, text=True, env=env, timeout=900)
    assert prep.returncode == 0, prep.stdout + prep.stderr
    assert "device_check run --carry results/device_carry --configfile config/dry.yaml" \
        in prep.stdout
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "genesis_rna.device_check", "run", "--dry-run",
                          "--configfile", "config/dry.yaml", "--out", str(out),
                          "--budget_s", "2400"], cwd=work,
                         capture_output=True, text=True, env=env, timeout=2700)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "device_check.log", "genesis_rna_gpu.pt", "report.md", "results.tar.gz", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] and all(s["ok"] for s in summary["steps"].values())
    tests = summary["steps"]["tests"]
    assert tests["tests"] == tests["skipped"] >= 6  # the CUDA tests, skipped on CPU
    bench = summary["steps"]["bench"]["rows"]
    assert {r["bench"] for r in bench} == {"train", "train_trainer"}
    assert [r["activation"] == 1.0 for r in bench if r["bench"] == "train_trainer"] == [True, False]
    runs = {(m["run"], m["dataset"]) for m in summary["steps"]["workflow"]["models"]}
    assert runs == {("train", "test"), ("finetune", "test")}
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
    for needed in ("device_run/evaluation/models.tsv", "device_run/train/training_metrics.csv",
                   "device_run/finetune/training_metrics.csv",
                   "device_run/plots/finetune/summary.png", "device_check/bench_tiny.json"):
        assert needed in names, needed
    report = (out / "report.md").read_text()
    assert "| finetune | test |" in report and report.strip() in run.stdout
    # the exported fine-tuned model: fp16 weights that load and fold
    assert load_checkpoint_dtype(out / "genesis_rna_gpu.pt") == torch.float16
    model, *_ = load_model(out / "genesis_rna_gpu.pt")
    assert model.config.thermo_features
    fasta = tmp_path / "in.fa"
    fasta.write_text(">x\nGGGGAAAACCCCAUAUGGGGAAAACCCC\n")
    assert predict_main(["--checkpoint", str(out / "genesis_rna_gpu.pt"), "--input", str(fasta),
                         "--output", str(tmp_path / "x.fa"), "--no-progress"]) == 0
    assert (tmp_path / "x.fa").read_text().splitlines()[0] == ">x"


def load_checkpoint_dtype(path) -> torch.dtype:
    from genesis_rna.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    return next(v.dtype for k, v in state["model"].items() if k.endswith(".weight"))
