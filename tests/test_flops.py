"""FLOP counting, the matmul peak, and the earlier design used as bench train's baseline."""

import pytest
import torch

from genesis_rna.baseline_model import PaddedBaseline
from genesis_rna.flops import counted_flops, matmul_peak
from genesis_rna.losses import MultiTaskLoss
from genesis_rna.model import model_config_for


def test_counted_flops_of_a_linear_layer_forward_and_backward():
    m, k, n = 8, 16, 32
    layer = torch.nn.Linear(k, n, bias=False)
    x = torch.randn(m, k, requires_grad=True)
    # forward 2mkn; backward: grad of input and of weight, 2mkn each
    assert counted_flops(lambda: layer(x).sum().backward()) == 6 * m * k * n


def test_matmul_peak_is_a_rate():
    rate = matmul_peak(torch.float32, n=128, seconds=0.05)
    assert 1e6 < rate < 1e15


def test_padded_baseline_trains_with_the_package_loss():
    from genesis_rna.data import collate

    cfg = model_config_for("tiny", max_len=64)
    model = PaddedBaseline(cfg)
    samples = [{"index": k, "input": torch.randint(5, 9, (n,)).numpy(), "seq": None,
                "mlm": torch.full((n,), -100).numpy(), "struct": torch.zeros(n, dtype=torch.long).numpy(),
                "pairs": torch.tensor([[0, n - 1]], dtype=torch.int32).numpy()}
               for k, n in enumerate((20, 37))]
    for s in samples:
        s["seq"] = s["input"]
        s["mlm"][3] = s["seq"][3]
    batch = collate(samples, 64, 64)
    assert batch["tokens"].shape == (2, 64)
    out = model(batch["tokens"], batch["attention_mask"])
    assert out["pair_logits"].shape == (2, 64, 64)
    MultiTaskLoss()(out, batch).total.backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="padded to 64"):
        model(batch["tokens"][:, :32], batch["attention_mask"][:, :32])
