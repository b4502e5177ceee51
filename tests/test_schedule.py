import math

import pytest
import torch

from genesis_rna.schedule import get_lr_scheduler, lr_at


def test_cosine_warmup_peak_end():
    assert lr_at(0, "cosine", 100, 1000, 0.1) == pytest.approx(1 / 101)
    assert lr_at(49, "cosine", 100, 1000, 0.1) == pytest.approx(50 / 101)
    assert lr_at(100, "cosine", 100, 1000, 0.1) == 1.0
    assert lr_at(550, "cosine", 100, 1000, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(1000, "cosine", 100, 1000, 0.1) == pytest.approx(0.1)
    assert lr_at(5000, "cosine", 100, 1000, 0.1) == pytest.approx(0.1)
    steps = [lr_at(s, "cosine", 100, 1000, 0.1) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(steps, steps[1:], strict=False))


def test_linear_and_constant():
    assert lr_at(550, "linear", 100, 1000, 0.0) == pytest.approx(0.5)
    assert lr_at(1000, "linear", 100, 1000, 0.2) == pytest.approx(0.2)
    assert lr_at(900, "constant", 100, 1000, 0.1) == 1.0
    with pytest.raises(ValueError, match="unknown scheduler"):
        lr_at(0, "step", 1, 2, 0.1)


def test_scheduler_drives_optimizer_and_state_is_plain():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=2e-4)
    sched = get_lr_scheduler(opt, "cosine", warmup_steps=10, total_steps=100, min_lr_ratio=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(2e-4 / 11)
    assert max(lrs) == pytest.approx(2e-4)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-5)
    state = sched.state_dict()
    buf = __import__("io").BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["last_epoch"] == 100
    assert math.isclose(lr_at(10, "cosine", 10, 100, 0.1), 1.0)
