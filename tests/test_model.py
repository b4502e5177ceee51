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


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(2)
    tokens = torch.randint(4, 9, (2, 24))
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[1, 18:] = False
    grads = []
    for flag in (False, True):
        torch.manual_seed(3)
        model = GenesisRNA(model_config_for("tiny", dropout=0.0))
        model.pair_head.checkpointing = flag
        out = model(tokens, mask)
        loss = sum(out[k].square().mean() for k in ("pair_logits", "struct_logits", "mlm_logits"))
        loss.backward()
        grads.append((float(loss), [p.grad.clone() for p in model.parameters()]))
    assert grads[0][0] == grads[1][0]
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_pair_type_channels_see_which_nucleotides_meet():
    torch.manual_seed(4)
    model = GenesisRNA(model_config_for("tiny", dropout=0.0)).eval()
    a = torch.tensor([[4, 4, 4, 4, 4, 4, 4, 4, 4, 7]])  # A...U
    b = torch.tensor([[4, 4, 4, 4, 4, 4, 4, 4, 4, 5]])  # A...C
    mask = torch.ones(1, 10, dtype=torch.bool)
    with torch.no_grad():
        model.pair_head.pair_type.zero_()
        model.pair_head.pair_type[:, 4, 7] = 1.0  # a channel for A-U
        model.pair_head.pair_type[:, 7, 4] = 1.0
        la = model(a, mask)["pair_logits"][0, 0, 9]
        lb = model(b, mask)["pair_logits"][0, 0, 9]
        model.pair_head.pair_type.zero_()
        la0 = model(a, mask)["pair_logits"][0, 0, 9]
    assert la != lb and la != la0


def test_cpu_attention_matches_sdpa_in_fp32():
    """CPU runs use matmul_attention; it must compute what SDPA computes (no dropout)."""
    import torch.nn.functional as F

    from genesis_rna.model import matmul_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 17, 8, generator=g) for _ in range(3))
    mask = torch.ones(3, 1, 1, 17, dtype=torch.bool)
    mask[1, ..., 9:] = False
    mask[2, ..., 3:] = False
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(matmul_attention(q, k, v, mask, 0.0), want, atol=1e-6, rtol=1e-5)
    # dropout: training-mode output differs, is finite, and the expectation is kept (scaled)
    torch.manual_seed(1)
    dropped = torch.stack([matmul_attention(q, k, v, mask, 0.5) for _ in range(4000)]).mean(0)
    assert torch.isfinite(dropped).all()
    torch.testing.assert_close(dropped, want, atol=0.1, rtol=0.0)


def test_pair_stack_fused_ops_equal_the_plain_formulas():
    """The one-pass forms in the pair head give what the textbook forms give (fp32, bf16)."""
    import torch.nn.functional as F

    from genesis_rna.model import _conv_layer, pool_pair_rows

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2)
    key_mask = torch.ones(2, 11, dtype=torch.bool)
    key_mask[1, 6:] = False
    cell = (key_mask[:, :, None] & key_mask[:, None, :])[:, None].float()
    x = torch.randn(2, 4, 11, 11) * cell  # the stack's invariant: zero outside the cells
    for dtype in (torch.float32, torch.bfloat16):
        xd, cd = x.to(dtype), cell.to(dtype)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            torch.testing.assert_close(_conv_layer(conv, xd, cd), (xd + conv(F.gelu(xd))) * cd)
    peak = x.masked_fill(~key_mask[:, None, None, :], float("-inf")).amax(-1)
    peak = torch.where(key_mask[:, None, :], peak, torch.zeros_like(peak))
    mean = x.sum(-1) / key_mask.sum(1)[:, None, None]
    torch.testing.assert_close(pool_pair_rows(x, key_mask), torch.cat([mean, peak], 1).transpose(1, 2))


def test_cpu_dropout_keeps_the_rate_and_the_expectation():
    from genesis_rna.model import Dropout

    torch.manual_seed(0)
    x = torch.ones(200, 500)
    layer = Dropout(0.1)
    y = layer(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.9) < 0.005  # 100k draws: the std is ~0.001
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.9))
    layer.eval()
    assert layer(x) is x
    x.requires_grad_(True)
    layer.train()
    out = layer(x)
    out.sum().backward()
    torch.testing.assert_close(x.grad, (out != 0).float() / 0.9)


def test_pair_map_input_channels_equal_the_sum_of_their_terms():
    """The augmented matmul that builds the pair map's input channels gives the textbook sum
    W_prod (a_i * a_j) + W_sum a_i + W_sum a_j + E[tok_i, tok_j] + dist(|i - j|), masked to the
    real cells (fp32; checked through the first conv layer's input)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    cfg = model_config_for("tiny", pair_conv_channels=4)
    head = GenesisRNA(cfg).pair_head.eval()
    seen = {}
    head.convs[0].register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    h = torch.randn(2, 13, cfg.d_model)
    tokens = torch.randint(4, 9, (2, 13))
    key_mask = torch.ones(2, 13, dtype=torch.bool)
    key_mask[1, 8:] = False
    with torch.no_grad():
        head(h, tokens, key_mask)
        a = head.proj(h)
        want = torch.einsum("cp,bip,bjp->bcij", head.w_prod, a, a)
        s = head.w_sum(a).permute(0, 2, 1)
        want = want + s[:, :, :, None] + s[:, :, None, :]
        one_hot = F.one_hot(tokens, head.vocab).float()
        want = want + torch.einsum("biv,cvw,bjw->bcij", one_hot, head.pair_type, one_hot)
        want = want + head.dist(head.distance_bucket(13, h.device)).permute(2, 0, 1)[None]
        cell = (key_mask[:, :, None] & key_mask[:, None, :])[:, None]
        want = want * cell
    got = F.gelu(want)  # the hook sees the layer's input after the conv's gelu is applied
    torch.testing.assert_close(seen["x"], got, atol=1e-5, rtol=1e-4)
