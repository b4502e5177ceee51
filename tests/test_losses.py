import math

import pytest
import torch

from genesis_rna.data import IGNORE_INDEX
from genesis_rna.losses import BinaryFocalLoss, MultiTaskLoss, pair_loss_mask


def _mask(n_real: int, width: int) -> torch.Tensor:
    """Nucleotide mask of one sample: CLS at 0, nucleotides 1..n_real, SEP, padding."""
    m = torch.zeros(1, width, dtype=torch.bool)
    m[0, 1 : n_real + 1] = True
    return m


def _focal(p: float, y: int, alpha=0.75, gamma=2.0) -> float:
    pt = p if y else 1 - p
    a = alpha if y else 1 - alpha
    return -a * (1 - pt) ** gamma * math.log(pt)


def test_focal_matches_hand_computation():
    # 6 nucleotides at token positions 1..6: valid cells j - i >= 4: (1,5) (1,6) (2,6)
    width = 10
    logits = torch.zeros(1, width, width)
    target = torch.zeros(1, width, width, dtype=torch.bool)
    logits[0, 1, 5] = logits[0, 5, 1] = 0.3
    logits[0, 2, 6] = logits[0, 6, 2] = -1.2
    target[0, 1, 5] = target[0, 5, 1] = True
    loss = BinaryFocalLoss(0.75, 2.0)(logits, target, _mask(6, width))
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = (_focal(s(0.3), 1) + _focal(0.5, 0) + _focal(s(-1.2), 0)) / 6  # sum / length
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_padding_specials_and_near_diagonal_never_count():
    width = 12
    nm = _mask(6, width)
    target = torch.zeros(1, width, width, dtype=torch.bool)
    base = torch.zeros(1, width, width)
    ref = BinaryFocalLoss()(base, target, nm)
    wild = base.clone()
    wild[0, 0, :] = 50.0  # CLS row
    wild[0, :, 7] = -50.0  # SEP column
    wild[0, 8:, 8:] = 30.0  # padding
    wild[0, 2, 4] = 40.0  # |i - j| < 4
    wild[0, 5, 1] = 40.0  # lower triangle
    assert float(BinaryFocalLoss()(wild, target, nm)) == pytest.approx(float(ref))
    cells = pair_loss_mask(nm, 4)
    assert int(cells.sum()) == 3


def test_scale_does_not_depend_on_length():
    # a hairpin stem of L/4 pairs, non-pairs already learned (logit -20), pairs at logit 0.5:
    # the loss per sample is the same at every length (a mean over the L^2 cells would not be)
    fl = BinaryFocalLoss()
    values = []
    for n in (16, 64, 256):
        w = n + 2
        logits = torch.full((1, w, w), -20.0)
        target = torch.zeros(1, w, w, dtype=torch.bool)
        for k in range(n // 4):
            i, j = 1 + k, n - k  # token coordinates
            target[0, i, j] = target[0, j, i] = True
            logits[0, i, j] = logits[0, j, i] = 0.5
        values.append(float(fl(logits, target, _mask(n, w))))
    s = 1 / (1 + math.exp(-0.5))
    assert values == pytest.approx([_focal(s, 1) / 4] * 3, rel=1e-4)


def test_multitask_weights_and_ignored_positions():
    b, t, v = 2, 9, 9
    torch.manual_seed(0)
    out = {"mlm_logits": torch.randn(b, t, v), "struct_logits": torch.randn(b, t, 6),
           "pair_logits": torch.randn(b, t, t)}
    mlm = torch.full((b, t), IGNORE_INDEX)
    mlm[0, 2] = 5
    mlm[1, 3] = 6
    st = torch.full((b, t), IGNORE_INDEX)
    st[:, 1:6] = 2
    nm = torch.zeros(b, t, dtype=torch.bool)
    nm[:, 1:6] = True
    batch = {"mlm_labels": mlm, "struct_labels": st, "nucleotide_mask": nm,
             "tokens": torch.zeros(b, t, dtype=torch.long),
             "pair_index": torch.zeros(0, 3, dtype=torch.long)}
    crit = MultiTaskLoss(weights={"mlm": 1.0, "struct": 0.8, "pair": 1.5})
    res = crit(out, batch)
    ce = torch.nn.functional.cross_entropy
    exp_mlm = (ce(out["mlm_logits"][0, 2:3], mlm[0, 2:3]) + ce(out["mlm_logits"][1, 3:4],
                                                                mlm[1, 3:4])) / 2
    exp_st = ce(out["struct_logits"][:, 1:6].reshape(-1, 6), st[:, 1:6].reshape(-1))
    assert float(res.value("mlm")) == pytest.approx(float(exp_mlm), rel=1e-5)
    assert float(res.value("struct")) == pytest.approx(float(exp_st), rel=1e-5)
    assert float(res.total) == pytest.approx(
        float(res.value("mlm") + 0.8 * res.value("struct") + 1.5 * res.value("pair")), rel=1e-6)
    # changing logits at padding positions changes nothing
    out2 = {k: v.clone() for k, v in out.items()}
    out2["struct_logits"][:, 6:] = 100.0
    out2["mlm_logits"][:, 6:] = 100.0
    assert float(crit(out2, batch).total) == pytest.approx(float(res.total))
    assert res.per_sample.shape == (2,)


def test_every_task_has_its_head_term_weight_and_column():
    """A task in tasks.TASKS is wired everywhere its name is used (see genesis_rna/README.md)."""
    from genesis_rna.metrics_logger import COLUMNS
    from genesis_rna.model import GenesisRNA, model_config_for
    from genesis_rna.tasks import LOSS_COLUMNS, TASK_NAMES, TASKS
    from genesis_rna.train_config import HELP, TrainConfig

    b, t = 2, 12
    torch.manual_seed(0)
    model = GenesisRNA(model_config_for("tiny", max_len=16, pair_conv_layers=1,
                                        pair_conv_channels=4))
    out = model(torch.randint(4, 9, (b, t)), torch.ones(b, t, dtype=torch.bool))
    nm = torch.zeros(b, t, dtype=torch.bool)
    nm[:, 1:11] = True
    labels = torch.full((b, t), IGNORE_INDEX)
    labels[:, 2] = 1
    batch = {"mlm_labels": labels, "struct_labels": labels, "nucleotide_mask": nm,
             "tokens": torch.zeros(b, t, dtype=torch.long),
             "pair_index": torch.tensor([[0, 1, 9]])}
    cfg = TrainConfig()
    crit = MultiTaskLoss(weights=cfg.loss_weights())
    loss = crit(out, batch)
    assert tuple(term.name for term in loss.terms) == TASK_NAMES
    assert list(loss.values()) == ["loss", *LOSS_COLUMNS]
    assert COLUMNS[COLUMNS.index("loss") + 1:][:len(TASKS)] == LOSS_COLUMNS
    assert torch.equal(crit.counts(batch), torch.stack([term.count for term in loss.terms]).double())
    for task in TASKS:
        assert isinstance(getattr(model, task.head), torch.nn.Module), task
        assert f"{task.name}_logits" in out, task
        assert task.weight_key in HELP and getattr(cfg, task.weight_key) >= 0, task
    with pytest.raises(ValueError, match="the tasks are"):
        MultiTaskLoss(weights={"mlm": 1.0})


def _two_sample_batch():
    b, t, v = 2, 9, 9
    torch.manual_seed(0)
    out = {"mlm_logits": torch.randn(b, t, v), "struct_logits": torch.randn(b, t, 6),
           "pair_logits": torch.randn(b, t, t)}
    mlm = torch.full((b, t), IGNORE_INDEX)
    mlm[0, 2] = 5
    mlm[1, 3] = 6
    mlm[1, 4] = 7
    st = torch.full((b, t), IGNORE_INDEX)
    st[0, 1:6] = 2
    st[1, 1:8] = 3
    nm = torch.zeros(b, t, dtype=torch.bool)
    nm[0, 1:6] = True
    nm[1, 1:8] = True
    batch = {"mlm_labels": mlm, "struct_labels": st, "nucleotide_mask": nm,
             "tokens": torch.zeros(b, t, dtype=torch.long),
             "pair_index": torch.tensor([[1, 1, 6]])}
    return out, batch


def test_sample_weights_scale_sums_and_units_alike():
    out, batch = _two_sample_batch()
    crit = MultiTaskLoss()
    w = torch.tensor([0.5, 1.5])
    res = crit(out, batch, sample_weight=w)
    ce = torch.nn.functional.cross_entropy
    mlm0 = ce(out["mlm_logits"][0, 2:3], batch["mlm_labels"][0, 2:3], reduction="sum")
    mlm1 = ce(out["mlm_logits"][1, 3:5], batch["mlm_labels"][1, 3:5], reduction="sum")
    # sample 0: 1 masked token, sample 1: 2; weights count in numerator and denominator
    assert float(res.value("mlm")) == pytest.approx(float((0.5 * mlm0 + 1.5 * mlm1) / (0.5 + 3.0)),
                                                    rel=1e-6)
    st0 = ce(out["struct_logits"][0, 1:6], batch["struct_labels"][0, 1:6], reduction="sum")
    st1 = ce(out["struct_logits"][1, 1:8], batch["struct_labels"][1, 1:8], reduction="sum")
    assert float(res.value("struct")) == pytest.approx(
        float((0.5 * st0 + 1.5 * st1) / (0.5 * 5 + 1.5 * 7)), rel=1e-6)
    plain = crit(out, batch)
    pair_sums = plain.terms[2].sums  # per-sample focal sum / length; one unit per sample
    assert float(res.value("pair")) == pytest.approx(
        float((0.5 * pair_sums[0] + 1.5 * pair_sums[1]) / 2.0), rel=1e-6)
    assert [float(t.count) for t in res.terms] == [3.5, 13.0, 2.0]
    assert torch.equal(crit.counts(batch, w), torch.stack([t.count for t in res.terms]).double())
    assert torch.equal(res.per_sample, plain.per_sample)  # AST's memory stays unweighted
    # the ratio estimate: a common factor on the weights changes nothing
    assert float(crit(out, batch, sample_weight=3 * w).total) == pytest.approx(float(res.total))
    # a weighted denominator below 1 is used as it is (only an empty one is replaced)
    only = {**batch, "mlm_labels": batch["mlm_labels"].clone()}
    only["mlm_labels"][1] = IGNORE_INDEX
    one = crit(out, only, sample_weight=torch.tensor([0.5, 1.5]))
    assert float(one.value("mlm")) == pytest.approx(float(mlm0), rel=1e-6)


def test_no_sample_weight_gives_the_unweighted_numbers_exactly():
    out, batch = _two_sample_batch()
    crit = MultiTaskLoss()
    res = crit(out, batch)
    # the formula before sample weights existed: sum of sums / clamped sum of units
    for term, (name, loss) in zip(res.terms, crit.terms.items(), strict=True):
        sums, units = loss.sums(out, batch), loss.units(batch)
        assert torch.equal(term.value, sums.sum() / units.sum().clamp(min=1)), name
        assert torch.equal(term.count, units.sum()), name
    assert torch.equal(crit.counts(batch), torch.stack([t.count for t in res.terms]).double())
    ones = crit(out, batch, sample_weight=torch.ones(2))
    assert float(ones.total) == pytest.approx(float(res.total), rel=1e-6)
