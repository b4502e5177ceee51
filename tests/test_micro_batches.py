"""Micro-batches (``max_step_cells``): a wide batch split by pair-map cells trains the same
step as the whole batch (gradients accumulated, each part weighted by its share of the batch's
units), single-process and with AST importance weights; DDP is in tests/test_ddp.py."""

from __future__ import annotations

import pytest
import torch

from genesis_rna.data import bucket_length, micro_batch_rows
from genesis_rna.train_config import config_from_args
from genesis_rna.train_pretrain import Trainer
from tests.train_fixtures import TINY_ARGS, make_splits


@pytest.mark.parametrize("seed", range(5))
def test_groups_cover_every_row_once_within_the_cell_budget(seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, 200, (37,), generator=g)
    width = bucket_length(int(lengths.max()) + 2, 512, 8)
    cap = 3 * 120 * 120
    groups = micro_batch_rows(lengths, width, cap, 8)
    rows = torch.cat(groups)
    assert sorted(rows.tolist()) == list(range(37))
    assert len(groups) > 1
    previous = None
    for group in groups:
        w = bucket_length(int(lengths[group].max()) + 2, width, 8)
        assert len(group) == 1 or len(group) * w * w <= cap, (len(group), w)
        if previous is not None:  # longest first: a group never holds a row longer than before
            assert int(lengths[group].max()) <= previous
        previous = int(lengths[group].min())


def test_no_budget_or_a_batch_that_fits_is_one_group_in_order():
    lengths = torch.tensor([30, 10, 20])
    for cap in (0, 3 * 40 * 40):
        (group,) = micro_batch_rows(lengths, 40, cap, 8)
        assert group.tolist() == [0, 1, 2]
    # one row wider than the budget still trains, alone
    assert [g.tolist() for g in micro_batch_rows(lengths, 40, 10, 8)] == [[0], [2], [1]]


def _one_step(data, out, extra: list[str], batch: dict | None = None):
    cfg = config_from_args(["--data_path", str(data), "--output_dir", str(out),
                            "--num_epochs", "1", *TINY_ARGS, "--dropout", "0", *extra])
    trainer = Trainer(cfg)
    if batch is None:
        trainer.train_sampler.set_epoch(0)
        batch = next(iter(trainer.train_loader))
    forwards = []
    forward = trainer.model.forward

    def spy(tokens, attention_mask):
        forwards.append(tuple(tokens.shape))
        return forward(tokens, attention_mask)

    grads = {}

    def before_step(optimizer, args, kwargs):  # the clipped gradients the optimizer is given
        grads.update({k: p.grad.clone() for k, p in trainer.model.named_parameters()
                      if p.grad is not None})

    trainer.model.forward = spy
    trainer.optimizer.register_step_pre_hook(before_step)
    trainer.stats.v["compute_s"] = 1.0
    trainer.train_step(batch)
    return batch, grads, forwards, trainer.stats.row()


@pytest.mark.parametrize("ast", [["--no-use_ast"],
                                 ["--ast_selection", "importance",
                                  "--ast_target_activation", "0.5"]],
                         ids=["ast_off", "ast_importance"])
def test_micro_batched_step_equals_the_whole_batch_step(tmp_path, ast):
    data = make_splits(tmp_path / "d", n_train=64, n_val=8, seed=5, min_len=20, max_len=60)
    batch, whole, f_whole, row_whole = _one_step(data, tmp_path / "a", ast)
    _, split, f_split, row_split = _one_step(
        data, tmp_path / "b", [*ast, "--max_step_cells", str(2 * 64 * 64)], batch)
    assert len(f_whole) == 1 and len(f_split) > 1, (f_whole, f_split)
    assert sum(shape[0] for shape in f_split) == f_whole[0][0]  # every trained row, once
    assert max(b * w * w for b, w in f_split) <= 2 * 64 * 64
    assert whole.keys() == split.keys() and len(whole) > 10
    scale = max(float(g.abs().max()) for g in whole.values())
    diff = max(float((whole[k] - split[k]).abs().max()) for k in whole)
    # float rounding only; weighting each part by its own mean instead of its share of the
    # batch's units differs by orders of magnitude more
    assert scale > 0 and diff < 1e-5 * scale, (diff, scale)
    for key in ("loss", "mlm_loss", "structure_loss", "pair_loss", "mlm_accuracy",
                "structure_accuracy", "pair_f1"):
        assert row_split[key] == pytest.approx(row_whole[key], abs=1e-6), key
