"""CUDA-only checks (marker ``cuda``; skipped without a CUDA device): bf16 training, the
on-device data path (pinned loader batches, pair targets and thermodynamic maps built on the
device), a CUDA step against the CPU step, micro-batches on CUDA, and inference on CUDA. fp16 +
GradScaler is ``test_train_pretrain.test_fp16_gradscaler_on_cuda``. Run them all with
``python -m pytest -m cuda`` (``python -m genesis_rna.device_check`` does)."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest
import torch
import yaml

from genesis_rna.checkpoint import load_model
from genesis_rna.data import dense_pair_target, thermo_maps
from genesis_rna.inference import predict_structures
from genesis_rna.train_config import config_from_args
from genesis_rna.train_pretrain import Trainer
from tests.helpers import random_rna
from tests.test_evaluate import tiny_checkpoint
from tests.train_fixtures import TINY_ARGS, make_splits, run_cli

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture
def exact_fp32():
    """fp32 on CUDA without TF32 (cuDNN convolutions default to it), so CUDA and CPU agree to
    float rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _args(device: str, precision: str = "fp32") -> list[str]:
    args = list(TINY_ARGS)
    args[args.index("--device") + 1] = device
    args[args.index("--mixed_precision") + 1] = precision
    return args


def test_bf16_training_on_cuda(tmp_path):
    data = make_splits(tmp_path / "d", n_train=48, n_val=16)
    out = tmp_path / "out"
    r = run_cli(["--data_path", str(data), "--output_dir", str(out), "--num_epochs", "2",
                 *_args("cuda", "bf16")])
    assert r.returncode == 0, r.stderr
    used = yaml.safe_load((out / "run_config.yaml").read_text())["resolved"]
    assert used["precision_used"] == "bf16" and used["device_used"] == "cuda"
    with open(out / "training_metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and all(np.isfinite(float(row["loss"])) for row in rows)
    model, *_ = load_model(out / "model.pt")  # loads on CPU from a CUDA run
    assert next(model.parameters()).device.type == "cpu"


def _step(data, out, device: str, extra: list[str], batch: dict | None = None):
    """One train_step of a fresh tiny trainer on ``device``; the batch and the clipped
    gradients (on CPU)."""
    cfg = config_from_args(["--data_path", str(data), "--output_dir", str(out),
                            "--num_epochs", "1", *_args(device), "--dropout", "0", *extra])
    trainer = Trainer(cfg)
    if batch is None:
        trainer.train_sampler.set_epoch(0)
        batch = next(iter(trainer.train_loader))
    grads = {}

    def before_step(optimizer, args, kwargs):
        grads.update({k: p.grad.detach().cpu().clone()
                      for k, p in trainer.model.named_parameters() if p.grad is not None})

    trainer.optimizer.register_step_pre_hook(before_step)
    trainer.train_step(batch)
    return trainer, batch, grads


def test_loader_batches_are_pinned_and_a_cuda_step_equals_the_cpu_step(tmp_path, exact_fp32):
    data = make_splits(tmp_path / "d", n_train=64, n_val=8, seed=5)
    trainer, batch, on_cuda = _step(data, tmp_path / "a", "cuda", ["--no-use_ast"])
    assert trainer.device.type == "cuda"
    assert all(v.is_pinned() for v in batch.values())  # host-to-device copies can overlap
    assert next(trainer.model.parameters()).device.type == "cuda"
    _, _, on_cpu = _step(data, tmp_path / "b", "cpu", ["--no-use_ast"], batch)
    assert on_cuda.keys() == on_cpu.keys() and on_cuda
    for name, g in on_cpu.items():
        torch.testing.assert_close(on_cuda[name], g, rtol=1e-3, atol=1e-5, msg=name)


def test_micro_batches_on_cuda_equal_the_whole_batch(tmp_path, exact_fp32):
    data = make_splits(tmp_path / "d", n_train=64, n_val=8, seed=6, max_len=60)
    _, batch, whole = _step(data, tmp_path / "a", "cuda", ["--no-use_ast"])
    _, _, split = _step(data, tmp_path / "b", "cuda",
                        ["--no-use_ast", "--max_step_cells", str(2 * 64 * 64)], batch)
    for name, g in whole.items():
        torch.testing.assert_close(split[name], g, rtol=1e-3, atol=1e-5, msg=name)


def test_pair_targets_and_thermo_maps_are_built_on_the_device():
    batch = {"tokens": torch.zeros(2, 12, dtype=torch.long),
             "pair_index": torch.tensor([[0, 1, 9], [1, 2, 7]]),
             "bpp_index": torch.tensor([[0, 1, 9], [0, 3, 8], [1, 2, 7]]),
             "bpp_prob": torch.tensor([0.9, 0.2, 0.6]),
             "mfe_index": torch.tensor([[0, 1, 9], [1, 2, 7]])}
    on_cuda = {k: v.cuda() for k, v in batch.items()}
    for build in (dense_pair_target, thermo_maps):
        got = build(on_cuda)
        assert got.device.type == "cuda"
        assert torch.equal(got.cpu(), build(batch))
    maps = thermo_maps(batch)
    assert maps[0, 0, 1, 9] == maps[0, 0, 9, 1] == pytest.approx(0.9) and maps[1, 1, 7, 2] == 1


def test_inference_on_cuda_matches_cpu(tmp_path_factory, exact_fp32):
    path = tiny_checkpoint(tmp_path_factory)
    rng = random.Random(4)
    seqs = [random_rna(rng, n) for n in (20, 45, 62, 150)]  # the last one is windowed
    preds = {}
    for device in ("cpu", "cuda"):
        model, tok, _, thr, dec = load_model(path, device=device)
        preds[device] = predict_structures(model, seqs, thr, tokenizer=tok, device=device,
                                           precision="fp32", min_sep=4, decoder=dec,
                                           keep_pair_probs=True, prob_floor=0.0, progress=False)
    for cpu, cuda in zip(preds["cpu"], preds["cuda"], strict=True):
        np.testing.assert_allclose(cuda.pair_probs[2], cpu.pair_probs[2], atol=1e-5)
        assert cuda.elements == cpu.elements and cuda.windowed == cpu.windowed
