import pytest
import torch

from genesis_rna.model import MODEL_SIZES, GenesisRNA, model_config_for


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return GenesisRNA(model_config_for("tiny", dropout=0.0)).eval()


def test_sizes():
    assert MODEL_SIZES["small"]["d_model"] == 256 and MODEL_SIZES["small"]["n_layers"] == 4
    assert (MODEL_SIZES["base"]["d_model"], MODEL_SIZES["base"]["n_heads"]) == (512, 8)
    assert (MODEL_SIZES["large"]["d_model"], MODEL_SIZES["large"]["d_ff"]) == (768, 3072)
    with pytest.raises(ValueError, match="unknown model size"):
        model_config_for("huge")
    n = GenesisRNA(model_config_for("small")).num_parameters()
    assert 2_500_000 < n < 4_500_000


def test_output_shapes_and_symmetry(tiny):
    tokens = torch.randint(4, 9, (3, 40))
    mask = torch.ones(3, 40, dtype=torch.bool)
    out = tiny(tokens, mask)
    assert out["mlm_logits"].shape == (3, 40, 9)
    assert out["struct_logits"].shape == (3, 40, 6)
    assert out["pair_logits"].shape == (3, 40, 40)
    assert torch.equal(out["pair_logits"], out["pair_logits"].transpose(1, 2))


def test_padding_invariance(tiny):
    torch.manual_seed(1)
    tokens = torch.randint(4, 9, (1, 30))
    short = tiny(tokens, torch.ones(1, 30, dtype=torch.bool))
    padded_tokens = torch.cat([tokens, torch.zeros(1, 34, dtype=torch.long)], 1)
    mask = torch.zeros(1, 64, dtype=torch.bool)
    mask[0, :30] = True
    long = tiny(padded_tokens, mask)
    for key in ("mlm_logits", "struct_logits"):
        torch.testing.assert_close(long[key][:, :30], short[key], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(long["pair_logits"][:, :30, :30], short["pair_logits"],
                               atol=1e-5, rtol=1e-4)


def test_bf16_autocast_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = GenesisRNA(model_config_for("tiny", pair_conv_layers=2, pair_conv_channels=4))
    tokens = torch.randint(4, 9, (2, 24))
    mask = torch.ones(2, 24, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(tokens, mask)
    loss = sum(out[k].float().mean() for k in ("mlm_logits", "struct_logits", "pair_logits"))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_long_input_beyond_training_length(tiny):
    out = tiny.predict(torch.randint(4, 9, (1, 1024)), torch.ones(1, 1024, dtype=torch.bool))
    assert out["pair_probs"].shape == (1, 1024, 1024)
    assert torch.isfinite(out["pair_probs"]).all()
