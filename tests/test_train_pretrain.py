"""Trainer end to end through the real CLI (subprocesses), on tiny tables and a tiny model."""

from __future__ import annotations

import csv
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from genesis_rna.checkpoint import CheckpointManager, load_checkpoint, load_model
from genesis_rna.metrics_logger import COLUMNS
from genesis_rna.packed import pack_table
from tests.train_fixtures import REPO, TINY_ARGS, make_splits, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_splits(tmp_path_factory.mktemp("splits"), n_train=48, n_val=16)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_trains_and_writes_outputs(data_dir, tmp_path):
    out = tmp_path / "out"
    r = run_cli(["--data_path", str(data_dir), "--output_dir", str(out), "--num_epochs", "2",
                 *TINY_ARGS])
    assert r.returncode == 0, r.stderr
    rows = read_csv(out / "training_metrics.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert [(r["epoch"], r["phase"]) for r in rows] == [
        ("1", "train"), ("1", "val"), ("2", "train"), ("2", "val")]
    for row in rows:
        assert all(row[c] not in ("", None) for c in COLUMNS), row
    assert "pair F1" in r.stdout and "AST:" in r.stdout and "MLM acc" in r.stdout
    run_cfg = yaml.safe_load((out / "run_config.yaml").read_text())
    assert run_cfg["ast_target_activation"] == 0.4
    assert run_cfg["resolved"]["precision_used"] == "fp32"
    model, tok, cfg, thr, decoder = load_model(out / "model.pt")
    assert 0 < thr < 1 and cfg["model_size"] == "tiny" and tok.vocab_size == 9
    assert model.config.pair_conv_layers == 1
    # a second run sees the finished model and does nothing
    r2 = run_cli(["--data_path", str(data_dir), "--output_dir", str(out), "--num_epochs", "2",
                  *TINY_ARGS])
    assert r2.returncode == 0 and "already finished" in r2.stdout


def test_cli_flags_override_config_file(data_dir, tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump({"batch_size": 4, "learning_rate": 1e-3, "num_epochs": 3,
                                        "model_size": "small", "use_ast": True, "seed": 1}))
    out = tmp_path / "out"
    # the file says small / 3 epochs / AST on; the command line says otherwise and must win
    r = run_cli(["--config", str(cfg_file), "--data_path", str(data_dir), "--output_dir",
                 str(out), *TINY_ARGS, "--num_epochs", "1", "--no-use_ast", "--seed", "7"])
    assert r.returncode == 0, r.stderr
    used = yaml.safe_load((out / "run_config.yaml").read_text())
    assert used["model_size"] == "tiny" and used["batch_size"] == 8
    assert used["num_epochs"] == 1 and used["use_ast"] is False and used["seed"] == 7
    assert used["learning_rate"] == 3e-3
    rows = read_csv(out / "training_metrics.csv")
    assert len(rows) == 2 and float(rows[0]["activation_rate"]) == 1.0  # AST off: all trained


def test_cli_rejects_bad_config(data_dir, tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("batch_size: 4\nbatch_sise: 8\n")
    r = run_cli(["--config", str(cfg_file), "--data_path", str(data_dir), "--output_dir",
                 str(tmp_path / "o")])
    assert r.returncode == 1 and "batch_sise" in r.stderr
    r = run_cli(["--data_path", str(data_dir), "--output_dir", str(tmp_path / "o"),
                 "--device", "cpu", "--mixed_precision", "fp16"])
    assert r.returncode == 1 and "mixed_precision" in r.stderr


@pytest.mark.parametrize("selection", ["threshold", "importance"])
def test_ast_holds_target_and_skips_backward(tmp_path, selection):
    data = make_splits(tmp_path / "d", n_train=160, n_val=8, seed=3)
    out = tmp_path / "out"
    r = run_cli(["--data_path", str(data), "--output_dir", str(out), "--num_epochs", "3",
                 *TINY_ARGS, "--batch_size", "16", "--ast_target_activation", "0.4",
                 "--ast_selection", selection])
    assert r.returncode == 0, r.stderr
    assert f"{selection} selection" in r.stdout
    train = [row for row in read_csv(out / "training_metrics.csv") if row["phase"] == "train"]
    # from the first epoch on: unseen samples compete through unbiased draws
    for row in train:
        assert abs(float(row["activation_rate"]) - 0.4) < 0.12, row
        assert int(row["samples_skipped"]) > 160 * 0.45
    ckpt = load_checkpoint(CheckpointManager(out / "checkpoints").list()[0])
    assert torch.isfinite(ckpt["ast"]["memory"]).sum() > 160 * 0.6  # most samples trained by now


def _strip_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("wall_time_s", "tokens_per_s", "epoch_time_s")} for r in rows]


@pytest.mark.parametrize(("layout", "selection"), [("tables", "threshold"),
                                                    ("packed", "threshold"),
                                                    ("tables", "importance")])
def test_exact_resume_after_sigkill(data_dir, tmp_path, layout, selection):
    if layout == "packed":  # what the workflow passes: pack_split's folders, no tables
        for split in ("train", "val"):
            pack_table(data_dir / f"{split}.parquet", tmp_path / "packed" / split)
        data_dir = tmp_path / "packed"
    args = ["--data_path", str(data_dir), "--num_epochs", "4", "--save_every_steps", "2",
            *TINY_ARGS, "--ast_selection", selection]
    a = tmp_path / "a"
    r = run_cli([*args, "--output_dir", str(a)])
    assert r.returncode == 0, r.stderr
    # tables are packed on the fly into the output folder; a packed folder is read as it is
    assert ("packing" in r.stdout) == (layout == "tables")
    assert (a / "packed_data" / "train" / "meta.json").exists() == (layout == "tables")

    b = tmp_path / "b"
    manager = CheckpointManager(b / "checkpoints")
    proc = subprocess.Popen(
        [sys.executable, "-m", "genesis_rna.train_pretrain", *args, "--output_dir", str(b)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target_step = 7  # mid epoch 3 (AST on: 20 candidates per step, 3 steps per epoch)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if any(int(p.stem.split("step")[1]) >= target_step for p in manager.list()):
                break
            if proc.poll() is not None:
                pytest.fail("run B finished before it could be killed")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (b / "model.pt").exists(), "run B was not interrupted"
    # Snakemake deletes a failed job's declared outputs before rerunning it: the metrics CSV
    # must come back whole from the checkpoint
    (b / "training_metrics.csv").unlink()
    r = run_cli([*args, "--output_dir", str(b)])
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and "packing" not in r.stdout  # the pack is reused

    wa = load_checkpoint(a / "model.pt")
    wb = load_checkpoint(b / "model.pt")
    assert wa["model"].keys() == wb["model"].keys()
    for k in wa["model"]:
        assert torch.equal(wa["model"][k], wb["model"][k]), k
    assert wa["pair_threshold"] == wb["pair_threshold"]
    assert _strip_timing(read_csv(a / "training_metrics.csv")) == _strip_timing(
        read_csv(b / "training_metrics.csv"))


def test_corrupt_newest_checkpoint_falls_back(data_dir, tmp_path):
    out = tmp_path / "out"
    args = ["--data_path", str(data_dir), "--output_dir", str(out), "--save_every_steps", "4",
            "--num_epochs", "2", *TINY_ARGS]
    r = run_cli(args)
    assert r.returncode == 0, r.stderr
    (out / "model.pt").unlink()  # as if killed right after the last checkpoint
    manager = CheckpointManager(out / "checkpoints")
    newest, previous = manager.list()
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    r = run_cli(args)
    assert r.returncode == 0, r.stderr
    assert "unreadable" in r.stderr and str(newest) in r.stderr
    assert f"resumed from {previous}" in r.stdout
    assert (out / "model.pt").exists()
    assert len(read_csv(out / "training_metrics.csv")) == 4


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def test_checkpoint_with_code_payload_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"model": _Exploit()}, fh)
    torch.save({"x": _Exploit()}, tmp_path / "evil2.pt")
    for p in (path, tmp_path / "evil2.pt"):
        with pytest.raises(Exception):  # noqa: B017 - torch raises UnpicklingError or RuntimeError
            load_checkpoint(p)
    assert not (Path.cwd() / "PWNED_BY_CHECKPOINT").exists()
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (fp16 + GradScaler)")
def test_fp16_gradscaler_on_cuda(data_dir, tmp_path):
    out = tmp_path / "out"
    args = [a for a in TINY_ARGS]
    args[args.index("--device") + 1] = "cuda"
    args[args.index("--mixed_precision") + 1] = "fp16"
    r = run_cli(["--data_path", str(data_dir), "--output_dir", str(out), "--num_epochs", "2", *args])
    assert r.returncode == 0, r.stderr
    used = yaml.safe_load((out / "run_config.yaml").read_text())["resolved"]
    assert used["precision_used"] == "fp16" and used["device_used"] == "cuda"
    rows = read_csv(out / "training_metrics.csv")
    assert all(float(r["loss"]) == float(r["loss"]) for r in rows)  # no NaN
    ckpt = load_checkpoint(CheckpointManager(out / "checkpoints").list()[0])
    assert ckpt["scaler"]["scale"] > 0


def test_checkpoint_from_other_data_is_not_resumed(tmp_path):
    out, ckpts = tmp_path / "out", tmp_path / "ckpts"
    common = ["--output_dir", str(out), "--checkpoint_dir", str(ckpts), *TINY_ARGS,
              "--num_epochs", "1", "--save_every_steps", "2"]
    first = make_splits(tmp_path / "d1", n_train=24, n_val=4, seed=1)
    assert run_cli(["--data_path", str(first), *common]).returncode == 0
    (out / "model.pt").unlink()  # as if the workflow reran training after the split changed
    second = make_splits(tmp_path / "d2", n_train=24, n_val=4, seed=2)
    r = run_cli(["--data_path", str(second), *common])
    assert r.returncode == 0, r.stderr
    assert "different train/val data" in r.stderr and "resumed from" not in r.stdout


def test_trainer_names_its_allocator_and_tcmalloc_preloads(data_dir, tmp_path):
    from genesis_rna.allocator import tcmalloc_library

    lib = tcmalloc_library()
    if lib is None:
        pytest.skip("tcmalloc not installed (apt-get install libtcmalloc-minimal4)")
    printed = subprocess.run([sys.executable, "-m", "genesis_rna.allocator"], capture_output=True,
                             text=True, cwd=REPO, check=True).stdout.strip()
    assert printed == lib and Path(lib).is_file()
    args = ["--data_path", str(data_dir), "--num_epochs", "1", *TINY_ARGS]
    plain = run_cli([*args, "--output_dir", str(tmp_path / "plain")],
                    env={**os.environ, "LD_PRELOAD": "", "GENESIS_RNA_MALLOC": "system"})
    assert plain.returncode == 0, plain.stderr
    assert "allocator glibc malloc" in plain.stdout and "LD_PRELOAD=" + lib in plain.stdout
    # started by hand without a preload, the CLI restarts itself once on tcmalloc
    by_hand = run_cli([*args, "--output_dir", str(tmp_path / "by_hand")],
                      env={k: v for k, v in os.environ.items()
                           if k not in ("LD_PRELOAD", "GENESIS_RNA_MALLOC")})
    assert by_hand.returncode == 0, by_hand.stderr
    assert "allocator tcmalloc" in by_hand.stdout
    assert by_hand.stdout.count("device cpu, precision") == 1  # one run, not two
    fast = run_cli([*args, "--output_dir", str(tmp_path / "tc")],
                   env={**os.environ, "LD_PRELOAD": lib})
    assert fast.returncode == 0, fast.stderr
    assert "allocator tcmalloc" in fast.stdout and "fragments" not in fast.stdout


def test_init_from_loads_weights_only(data_dir, tmp_path):
    """Fine-tuning: the weights come from --init_from; optimizer, schedule, AST, progress and
    metrics start fresh; a head whose loss weight is 0 stays frozen; architecture must match."""
    pre = tmp_path / "pre"
    r = run_cli(["--data_path", str(data_dir), "--output_dir", str(pre), "--num_epochs", "1",
                 *TINY_ARGS])
    assert r.returncode == 0, r.stderr
    pretrained = load_checkpoint(pre / "model.pt")
    ft = tmp_path / "ft"
    # one optimizer step at lr ~0: the fine-tuned weights must still equal the pretrained ones
    r = run_cli(["--data_path", str(data_dir), "--output_dir", str(ft), "--num_epochs", "1",
                 *TINY_ARGS, "--init_from", str(pre / "model.pt"), "--learning_rate", "1e-12",
                 "--loss_weight_mlm", "0", "--max_len", "96", "--no-use_ast"])
    assert r.returncode == 0, r.stderr
    assert "initialized from the weights of" in r.stdout and "frozen mlm_head" in r.stdout
    tuned = load_checkpoint(ft / "model.pt")
    for k, v in pretrained["model"].items():
        assert torch.allclose(tuned["model"][k], v, atol=1e-6), k
    # fresh training state: its own step count and schedule, not the pretraining run's
    assert tuned["progress"]["global_step"] == tuned["training_state"]["global_step"]
    assert tuned["progress"]["epochs_completed"] == 1
    assert tuned["ast"] is None and pretrained["ast"] is not None
    assert tuned["scheduler"]["last_epoch"] == tuned["progress"]["global_step"]
    assert len(tuned["metrics_rows"]) == 2  # this run's epoch only
    assert tuned["config"]["init_from"] == str(pre / "model.pt")
    assert tuned["pair_decoder"] == "mea"
    run_cfg = yaml.safe_load((ft / "run_config.yaml").read_text())
    assert run_cfg["resolved"]["frozen_heads"] == ["mlm_head"]
    # frozen head: no optimizer state was ever created for its parameters
    n_opt = sum(len(g["params"]) for g in tuned["optimizer"]["param_groups"])
    n_mlm = len([k for k in pretrained["model"] if k.startswith("mlm_head.")])
    assert n_opt == len(pretrained["model"]) - n_mlm
    # from random weights the same run differs from the pretrained weights
    scratch = tmp_path / "scratch"
    r = run_cli(["--data_path", str(data_dir), "--output_dir", str(scratch), "--num_epochs",
                 "1", *TINY_ARGS, "--learning_rate", "1e-12", "--seed", "5", "--no-use_ast"])
    assert r.returncode == 0, r.stderr
    other = load_checkpoint(scratch / "model.pt")["model"]
    assert not torch.allclose(other["embed.weight"], pretrained["model"]["embed.weight"])
    # another architecture is refused with the key named
    r = run_cli(["--data_path", str(data_dir), "--output_dir", str(tmp_path / "bad"),
                 "--num_epochs", "1", *TINY_ARGS, "--init_from", str(pre / "model.pt"),
                 "--pair_conv_channels", "8"])
    assert r.returncode == 1 and "init_from" in r.stderr and "pair_conv_channels" in r.stderr
    not_model = tmp_path / "x.pt"
    torch.save({"a": 1}, not_model)
    r = run_cli(["--data_path", str(data_dir), "--output_dir", str(tmp_path / "bad2"),
                 "--num_epochs", "1", *TINY_ARGS, "--init_from", str(not_model)])
    assert r.returncode == 1 and "not a Genesis RNA model" in r.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_the_rerun_resumes_exactly(data_dir, tmp_path, signum):
    """SIGTERM (what SLURM sends before a time limit) and SIGINT (Ctrl-C): the run saves a
    checkpoint at the next step boundary, says where, exits 128 + signal; the rerun resumes
    and ends exactly where an uninterrupted run ends. No checkpoint was due on its own."""
    args = ["--data_path", str(data_dir), "--num_epochs", "3", "--save_every_steps", "1000",
            "--log_every_s", "0", *TINY_ARGS]
    a = tmp_path / "a"
    assert run_cli([*args, "--output_dir", str(a)]).returncode == 0
    b = tmp_path / "b"
    proc = subprocess.Popen(
        [sys.executable, "-m", "genesis_rna.train_pretrain", *args, "--output_dir", str(b)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stdout:  # progress lines (no bar): one per step here
            seen.append(line)
            if line.startswith("[progress] epoch 2/3"):
                proc.send_signal(signum)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert "checkpoint saved to" in err and "resume" in err, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert any("ETA" in s and "loss" in s and "lr" in s for s in seen)
    left = CheckpointManager(b / "checkpoints").list()
    assert left and not (b / "model.pt").exists()
    r = run_cli([*args, "--output_dir", str(b)])
    assert r.returncode == 0, r.stderr
    assert f"resumed from {left[0]}" in r.stdout
    wa, wb = load_checkpoint(a / "model.pt"), load_checkpoint(b / "model.pt")
    for k in wa["model"]:
        assert torch.equal(wa["model"][k], wb["model"][k]), k


def test_best_validation_model_is_kept_beside_the_last(data_dir, tmp_path):
    out = tmp_path / "out"
    r = run_cli(["--data_path", str(data_dir), "--output_dir", str(out), "--num_epochs", "3",
                 *TINY_ARGS])
    assert r.returncode == 0, r.stderr
    rows = [row for row in read_csv(out / "training_metrics.csv") if row["phase"] == "val"]
    f1 = [float(row["pair_f1"]) for row in rows]
    best_epoch = 1 + max(range(len(f1)), key=lambda k: (f1[k], -k))  # first of equal bests
    assert f"model_best.pt: epoch {best_epoch}, the best val pair F1" in r.stdout
    last, best = load_checkpoint(out / "model.pt"), load_checkpoint(out / "model_best.pt")
    assert 0 < best["pair_threshold"] < 1 and best["pair_decoder"] == "mea"
    same = all(torch.equal(last["model"][k], best["model"][k]) for k in last["model"])
    assert same == (best_epoch == 3)
    if best_epoch != 3:
        assert best["training_state"]["best_epoch"] == best_epoch
    model, *_ = load_model(out / "model_best.pt")  # usable for inference
    assert model.config.max_len == 64


def test_ast_skipped_samples_get_no_forward_or_backward(tmp_path):
    """Directly: with AST on, every training forward (with grad) sees exactly the samples the
    controller chose, never the skipped ones; gradients flow only through those."""
    from genesis_rna.train_config import config_from_args
    from genesis_rna.train_pretrain import Trainer

    data = make_splits(tmp_path / "d", n_train=96, n_val=8, seed=4)
    cfg = config_from_args(["--data_path", str(data), "--output_dir", str(tmp_path / "o"),
                            "--num_epochs", "1", *TINY_ARGS, "--batch_size", "8",
                            "--ast_target_activation", "0.4"])
    trainer = Trainer(cfg)
    chosen_rows, forward_rows = [], []
    choose = trainer.ast.choose

    def spy_choose(indices):
        mask = choose(indices)
        chosen_rows.append(int(mask.sum()))
        return mask

    forward = trainer.model.forward

    def spy_forward(tokens, attention_mask):
        if torch.is_grad_enabled():
            forward_rows.append(int(tokens.shape[0]))
        return forward(tokens, attention_mask)

    trainer.ast.choose = spy_choose
    trainer.model.forward = spy_forward
    trainer.train_epoch()
    assert chosen_rows and forward_rows == chosen_rows
    candidates = math.ceil(8 / 0.4)  # drawn per step: batch_size / target
    assert sum(chosen_rows) < 0.75 * candidates * len(chosen_rows)  # most candidates skipped
