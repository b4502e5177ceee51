"""Multi-process training (torchrun + DDP, gloo on CPU) against the single-process trainer.

Tolerances, measured on this machine (tiny model, fp32, 2 epochs = 14 Adam steps, lr 3e-3):
- 2 processes x batch 4 vs 1 process x batch 8: max |weight difference| 1.6e-6 to 3.1e-6, which
  is the float-rounding floor (the same single-process run with 2 threads instead of 1 differs
  by 2.5e-6); per-epoch losses differ by <= 1.5e-7, accuracies and pair metrics not at all.
  Averaging per-rank *mean* losses instead (what plain DDP does) differs by 9e-3 in weights and
  1e-3 in loss, so the bounds below (2e-5 and 1e-5) do tell the two apart.
- a 2-process run killed with SIGKILL and resumed equals the uninterrupted one exactly.
"""

from __future__ import annotations

import csv
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml

from genesis_rna.checkpoint import CheckpointManager, load_checkpoint
from genesis_rna.data import BucketBatchSampler, RNADataset, collate, load_split
from genesis_rna.losses import MultiTaskLoss
from genesis_rna.model import GenesisRNA, model_config_for
from genesis_rna.rank_sync import rank_share
from tests.train_fixtures import REPO, TINY_ARGS, make_splits, run_cli

needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available")

WEIGHT_TOL = 2e-5
LOSS_TOL = 1e-5
# AST off and no dropout: the only randomness left is the data's, which is seeded per sample
EXACT_ARGS = [*TINY_ARGS, "--no-use_ast", "--dropout", "0", "--num_epochs", "2",
              "--save_every_steps", "2"]


def with_batch(args: list[str], batch: int) -> list[str]:
    args = list(args)
    args[args.index("--batch_size") + 1] = str(batch)
    return args


def torchrun_cmd(args: list[str], nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(nproc), "-m", "genesis_rna.train_pretrain", *args]


def run_ddp(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    return subprocess.run(torchrun_cmd(args), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


# ----------------------------------------------------------------------------- fast unit tests
def test_sharded_sampler_splits_the_single_process_batches():
    lengths = torch.randint(20, 300, (101,)).numpy()
    single = BucketBatchSampler(lengths, 8, seed=5, shuffle=True, chunk_batches=3)
    ranks = [BucketBatchSampler(lengths, 8, seed=5, shuffle=True, chunk_batches=3, rank=r,
                                world_size=3) for r in range(3)]
    for s in (single, *ranks):
        s.set_epoch(2)
    global_batches = single.epoch_batches(2)
    per_rank = [[[i for _, i in b] for b in s] for s in ranks]
    assert all(len(p) == len(global_batches) for p in per_rank)
    for k, batch in enumerate(global_batches):
        shards = [p[k] for p in per_rank]
        for r, shard in enumerate(shards):
            if ranks[r].is_placeholder(k):
                assert len(batch) <= r and shard == batch[:1]  # a stand-in, flagged
            else:
                assert shard == batch[r::3]
        real = [i for r, s in enumerate(shards) if not ranks[r].is_placeholder(k) for i in s]
        assert sorted(real) == sorted(batch)
    # 101 = 12 * 8 + 5: the short batch leaves no rank empty; 97 = 12 * 8 + 1 leaves two
    short = [BucketBatchSampler(lengths[:97], 8, 5, False, rank=r, world_size=3) for r in range(3)]
    assert [s.is_placeholder(12) for s in short] == [False, True, True]
    assert short[0].shard_positions(12) == [96] and short[1].shard_positions(3) == [25, 28, 31]


def test_rank_shares_add_up_to_the_global_batch_loss(tmp_path):
    data = load_split(make_splits(tmp_path, n_train=9, n_val=2, min_len=3, max_len=40)
                      / "train.parquet")
    ds = RNADataset(data, max_len=64, mask_prob=0.15, seed=0, train=True)
    torch.manual_seed(0)
    model = GenesisRNA(model_config_for("tiny", dropout=0.0, max_len=64, pair_conv_layers=1,
                                        pair_conv_channels=4))
    crit = MultiTaskLoss(min_sep=4)
    full = collate([ds[(0, i)] for i in range(9)], 64, 32)
    ref = crit(model(full["tokens"], full["attention_mask"]), full)
    shards = [collate([ds[(0, i)] for i in range(r, 9, 3)], 64, 32) for r in range(3)]
    local = [crit.counts(b) for b in shards]
    total = sum(local)
    assert torch.equal(total, crit.counts(full))
    parts = []
    for b, n in zip(shards, local, strict=True):
        part, values = rank_share(crit(model(b["tokens"], b["attention_mask"]), b), n, total)
        parts.append(part)
        assert values["loss"] == pytest.approx(float(part.detach()), rel=1e-6)
    assert float(sum(parts).detach()) == pytest.approx(float(ref.total.detach()), rel=1e-5, abs=1e-6)
    # the naive alternative, a mean of per-rank means, is measurably different here
    naive = sum(crit(model(b["tokens"], b["attention_mask"]), b).total for b in shards) / 3
    assert abs(float(naive.detach()) - float(ref.total.detach())) > 1e-3
    # AST importance weights: the weighted counts add up the same way, and the weighted
    # shares to the weighted single-process loss (fractional counts below 1 included)
    w = torch.linspace(0.3, 1.7, 9)
    wref = crit(model(full["tokens"], full["attention_mask"]), full, sample_weight=w)
    wlocal = [crit.counts(b, w[r::3]) for r, b in enumerate(shards)]
    wtotal = sum(wlocal)
    assert torch.allclose(wtotal, crit.counts(full, w))
    wparts = [rank_share(crit(model(b["tokens"], b["attention_mask"]), b, sample_weight=w[r::3]),
                         n, wtotal)[0] for r, (b, n) in enumerate(zip(shards, wlocal, strict=True))]
    assert float(sum(wparts).detach()) == pytest.approx(float(wref.total.detach()), rel=1e-5)


# ----------------------------------------------------------------------------- torchrun runs
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    # 49 = 6 * 8 + 1 and 17 = 2 * 8 + 1: the last global batch of each leaves rank 1 without a
    # sample, so the placeholder path runs in training and in validation
    return make_splits(tmp_path_factory.mktemp("ddp_splits"), n_train=49, n_val=17)


@pytest.fixture(scope="module")
def ddp_run(data_dir, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("ddp") / "out"
    r = run_ddp(["--data_path", str(data_dir), "--output_dir", str(out),
                 *with_batch(EXACT_ARGS, 4)])
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


@pytest.mark.slow
@needs_gloo
def test_two_processes_match_one_process_with_the_same_global_batch(data_dir, ddp_run, tmp_path):
    ddp_out, r = ddp_run
    assert "2 processes (gloo), global batch 8" in r.stdout
    single = tmp_path / "single"
    rs = run_cli(["--data_path", str(data_dir), "--output_dir", str(single),
                  *with_batch(EXACT_ARGS, 8)])
    assert rs.returncode == 0, rs.stderr

    assert max_weight_diff(single / "model.pt", ddp_out / "model.pt") < WEIGHT_TOL
    a, b = load_checkpoint(single / "model.pt"), load_checkpoint(ddp_out / "model.pt")
    assert a["pair_threshold"] == b["pair_threshold"]
    assert a["pair_threshold_val_f1"] == pytest.approx(b["pair_threshold_val_f1"], abs=1e-9)
    assert b["world_size"] == 2 and len(b["rank_states"]) == 2 and a["rank_states"] is None

    rows_a, rows_b = read_csv(single / "training_metrics.csv"), read_csv(ddp_out /
                                                                         "training_metrics.csv")
    assert [(x["epoch"], x["phase"], x["step"]) for x in rows_a] == [
        (x["epoch"], x["phase"], x["step"]) for x in rows_b] and len(rows_a) == 4
    for x, y in zip(rows_a, rows_b, strict=True):
        for col in x:
            if col in ("phase", "wall_time_s", "tokens_per_s", "epoch_time_s"):
                continue
            assert float(x[col]) == pytest.approx(float(y[col]), abs=LOSS_TOL), (col, x, y)

    used = yaml.safe_load((ddp_out / "run_config.yaml").read_text())["resolved"]
    assert used["world_size"] == 2 and used["global_batch_size"] == 8
    assert used["ddp_backend_used"] == "gloo"


@pytest.mark.slow
@needs_gloo
def test_micro_batches_under_ddp_train_the_same_run(data_dir, ddp_run, tmp_path):
    """``max_step_cells`` splits each rank's batch into micro-batches (a different number per
    rank: the lengths differ); only each rank's last backward all-reduces. Same run as unsplit,
    up to float rounding."""
    ddp_out, _ = ddp_run
    out = tmp_path / "micro"
    r = run_ddp(["--data_path", str(data_dir), "--output_dir", str(out),
                 *with_batch(EXACT_ARGS, 4), "--max_step_cells", str(64 * 64)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert max_weight_diff(ddp_out / "model.pt", out / "model.pt") < WEIGHT_TOL
    for x, y in zip(read_csv(ddp_out / "training_metrics.csv"),
                    read_csv(out / "training_metrics.csv"), strict=True):
        for col in x:
            if col in ("phase", "wall_time_s", "tokens_per_s", "epoch_time_s"):
                continue
            assert float(x[col]) == pytest.approx(float(y[col]), abs=LOSS_TOL), (col, x, y)


def _workers_of(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _dead(pid: int) -> bool:
    """Gone, or a zombie (killed; this machine's init may reap late)."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


@pytest.mark.slow
@needs_gloo
def test_two_process_run_resumes_exactly_after_sigkill(data_dir, ddp_run, tmp_path):
    reference, _ = ddp_run
    out = tmp_path / "out"
    args = ["--data_path", str(data_dir), "--output_dir", str(out), *with_batch(EXACT_ARGS, 4)]
    manager = CheckpointManager(out / "checkpoints")
    # a session of its own, so that killing its process group kills torchrun and nothing else
    proc = subprocess.Popen(torchrun_cmd(args), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    target_step = 8  # epoch 2 (7 steps per epoch), mid-epoch; 6 steps left to kill in
    workers: list[int] = []
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            workers = _workers_of(proc.pid) or workers
            if any(int(p.stem.split("step")[1]) >= target_step for p in manager.list()):
                break
            if proc.poll() is not None:
                pytest.fail("the 2-process run finished before it could be killed")
            time.sleep(0.02)
        else:
            pytest.fail("no checkpoint appeared in time")
        workers = _workers_of(proc.pid) or workers
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun only: its workers live in other sessions
    finally:
        proc.wait()
    assert len(workers) == 2
    # the workers follow their launcher (parent-death signal), so no orphan trains on
    deadline = time.time() + 30
    while not all(_dead(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert all(_dead(w) for w in workers), "workers outlived the killed launcher"
    assert not (out / "model.pt").exists(), "the run was not interrupted"

    r = run_ddp(args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"resumed from \S+ckpt_step0000000(08|10|12)\.pt", r.stdout), r.stdout
    assert max_weight_diff(reference / "model.pt", out / "model.pt") == 0.0
    strip = ("wall_time_s", "tokens_per_s", "epoch_time_s")
    assert [{k: v for k, v in x.items() if k not in strip} for x in read_csv(
        reference / "training_metrics.csv")] == [{k: v for k, v in x.items() if k not in strip}
                                                 for x in read_csv(out / "training_metrics.csv")]
    assert load_checkpoint(reference / "model.pt")["pair_threshold"] == load_checkpoint(
        out / "model.pt")["pair_threshold"]


@pytest.mark.slow
@needs_gloo
@pytest.mark.parametrize("selection", ["threshold", "importance"])
def test_ast_under_ddp_holds_target_with_one_controller_state(tmp_path, selection):
    data = make_splits(tmp_path / "d", n_train=160, n_val=8, seed=3)
    out = tmp_path / "out"
    r = run_ddp(["--data_path", str(data), "--output_dir", str(out), *TINY_ARGS,
                 "--num_epochs", "3", "--ast_target_activation", "0.4",  # batch 8 per rank
                 "--ast_selection", selection])
    assert r.returncode == 0, r.stderr[-3000:]
    train = [row for row in read_csv(out / "training_metrics.csv") if row["phase"] == "train"]
    assert len(train) == 3
    for row in train:  # global activation over both ranks' samples
        assert abs(float(row["activation_rate"]) - 0.4) < 0.12, row
        assert int(row["samples_skipped"]) > 160 * 0.45
    # each rank prints its controller after every epoch: the two must agree exactly
    lines = re.findall(r"\[rank (\d)\] AST controller: (.*)", r.stdout)
    by_rank = {rank: [s for k, s in lines if k == rank] for rank in ("0", "1")}
    assert len(by_rank["0"]) == 3 and by_rank["0"] == by_rank["1"], lines
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["world_size"] == 2
    assert torch.isfinite(ckpt["ast"]["memory"]).sum() > 160 * 0.6  # both ranks' samples recorded
    # one draw key per global batch, on every rank; with AST a global batch holds
    # 2 ranks x 8 / 0.4 = 40 candidates, so an epoch of 160 samples has 4 of them
    assert ckpt["ast"]["draws"] == 3 * math.ceil(160 / math.ceil(2 * 8 / 0.4))
