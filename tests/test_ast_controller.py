import math

import torch

from genesis_rna.ast_controller import ASTController


def select(controller, indices, lengths=None):
    """One single-process step as the trainer takes it: choose, then observe the counts."""
    chosen = controller.choose(indices)
    lengths = torch.zeros(len(indices), dtype=torch.long) if lengths is None else lengths
    controller.observe(*(int(x) for x in ASTController.batch_counts(chosen, lengths)))
    return chosen


def _run(controller, losses, epochs, batch=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(losses)
    per_epoch = []
    for _ in range(epochs):
        controller.reset_epoch()
        perm = torch.randperm(n, generator=g)
        for k in range(0, n, batch):
            idx = perm[k : k + batch]
            chosen = select(controller, idx, torch.full((len(idx),), 50))
            losses[idx[chosen]] *= 0.98  # training lowers the loss of trained samples
            noisy = losses[idx[chosen]] * torch.exp(0.1 * torch.randn(int(chosen.sum()), generator=g))
            controller.record(idx[chosen], noisy)
        per_epoch.append(controller.epoch_activation_rate())
    return per_epoch


def test_converges_to_target_on_synthetic_stream():
    g = torch.Generator().manual_seed(1)
    losses = torch.exp(0.5 * torch.randn(4000, generator=g))
    for target in (0.2, 0.4, 0.7):
        c = ASTController(4000, target=target)
        rates = _run(c, losses.clone(), epochs=4)
        # unseen samples compete through unbiased draws, so even the first epoch holds target
        for r in rates:
            assert abs(r - target) < 0.03, (target, rates)
        assert c.epoch_tokens_skipped == 50 * (c.epoch_samples - c.epoch_selected)


def test_anti_windup_bounds_integral_and_recovers():
    c = ASTController(1000, target=0.4)
    c.record(torch.arange(1000), torch.ones(1000))  # every loss equal: rate stuck at 1 or 0
    for _ in range(2000):
        select(c, torch.arange(32))
    assert abs(c.integral) <= c.integral_limit + 1e-9
    assert abs(c.log_threshold) <= c.kp + c.ki * c.integral_limit + 1e-9
    # now a spread of losses: the controller must find the target within a few hundred batches
    g = torch.Generator().manual_seed(0)
    c.memory = torch.exp(0.5 * torch.randn(1000, generator=g))
    rates = []
    for _ in range(600):
        idx = torch.randint(0, 1000, (32,), generator=g)
        rates.append(float(select(c, idx).float().mean()))
    assert abs(sum(rates[-200:]) / 200 - 0.4) < 0.05


def test_unseen_samples_are_drawn_at_about_the_target_rate_and_state_round_trips():
    c = ASTController(5000, target=0.4)
    rates = [float(select(c, torch.arange(k, k + 50)).float().mean()) for k in range(0, 5000, 50)]
    assert abs(sum(rates[20:]) / 80 - 0.4) < 0.05, rates  # no memory at all, still near target
    c.record(torch.arange(5), torch.tensor([1.0, 2.0, float("nan"), 4.0, 5.0]))
    assert math.isnan(float(c.memory[2])) and float(c.memory[3]) == 4.0
    d = ASTController(5000, target=0.4)
    d.load_state_dict(c.state_dict())
    assert torch.equal(torch.nan_to_num(d.memory), torch.nan_to_num(c.memory))
    assert (d.log_threshold, d.integral, d.ema_rate, d.scale, d.draws) == (
        c.log_threshold, c.integral, c.ema_rate, c.scale, c.draws)
    assert d.epoch_selected == c.epoch_selected
    # the same state makes the same choices (what exact resume relies on)
    idx = torch.arange(100, 164)
    assert torch.equal(select(c, idx), select(d, idx))


def _importance(n=64, seed=0, **kw):
    """An importance-selection controller whose memory holds a spread of losses."""
    c = ASTController(n, target=0.4, selection="importance", **kw)
    g = torch.Generator().manual_seed(seed)
    c.record(torch.arange(n), torch.exp(torch.randn(n, generator=g)))
    return c


def test_importance_draws_are_deterministic_and_the_same_on_every_rank():
    a, b = _importance(), _importance()
    idx = torch.arange(40)
    # ranks hold the same controller state: the same candidates get the same draw and weights
    m = a.choose(idx)
    assert torch.equal(m, b.choose(idx)) and torch.equal(m, a.choose(idx))  # no state change
    assert torch.equal(a.sample_weights(idx, m), b.sample_weights(idx, m))
    # a resumed controller (state round trip) draws exactly what the uninterrupted one does
    c = ASTController(64, target=0.4, selection="importance")
    c.load_state_dict(a.state_dict())
    for _ in range(20):
        ma, mc = select(a, idx), select(c, idx)
        assert torch.equal(ma, mc)
    # the per-batch draw moves with the counter: not the same subset every step
    assert len({tuple(select(a, idx).tolist()) for _ in range(20)}) > 5


def test_importance_weights_are_inverse_probabilities_normalised_to_mean_one():
    c = _importance()
    idx = torch.arange(30)
    sig = (c.memory[idx] / c.scale).double()
    n, mix = len(idx), c.importance_mix
    p = (1 - mix) * sig / sig.sum() + mix / n
    k = int((sig >= c.threshold).sum()) or 1
    pi = c.inclusion(idx)
    assert abs(float(pi.sum()) - k) < 1e-9 and float(pi.max()) <= 1.0
    if float((k * p).max()) < 1:  # no capping: pi = k p exactly
        assert torch.allclose(pi, k * p)
    chosen = c.choose(idx)
    assert int(chosen.sum()) == k  # exactly the threshold's count (what the controller steers)
    w = c.sample_weights(idx, chosen)
    inv = 1.0 / (n * p[chosen])  # 1 / (N p_i), Katharopoulos & Fleuret
    assert torch.allclose(w.double(), inv / inv.mean(), rtol=1e-6)
    assert abs(float(w.mean()) - 1.0) < 1e-6
    assert ASTController(8).sample_weights(torch.arange(8), torch.ones(8, dtype=torch.bool)) is None


def test_inclusion_probabilities_cap_at_one_and_systematic_sample_hits_them():
    from genesis_rna.ast_controller import inclusion_probabilities, systematic_sample

    w = torch.tensor([50.0, 1, 1, 1, 1, 1, 0.2, 3])
    pi = inclusion_probabilities(w, 4)
    # 50 and then 3 exceed 1 once the rest is redistributed; the others stay proportional
    assert float(pi[0]) == float(pi[7]) == 1.0 and abs(float(pi.sum()) - 4) < 1e-12
    assert torch.allclose(pi[1:7] / pi[1], w[1:7].double() / w[1])
    freq = torch.zeros(8, dtype=torch.float64)
    us = torch.linspace(0, 1, 2001)[:-1]
    for u in us:
        m = systematic_sample(pi, float(u))
        assert int(m.sum()) == 4  # exactly k every draw
        freq += m
    assert torch.allclose(freq / len(us), pi, atol=2e-3)  # inclusion probability exactly pi


def test_importance_picks_high_significance_samples_more_often():
    c = ASTController(40, target=0.4, selection="importance")
    losses = torch.linspace(0.2, 4.0, 40)  # significance rises with the index
    c.record(torch.arange(40), losses)
    g = torch.Generator().manual_seed(7)
    hits, offers = torch.zeros(40), torch.zeros(40)
    for _ in range(3000):
        idx = torch.randperm(40, generator=g)[:25]
        m = c.choose(idx)
        offers[idx] += 1
        hits[idx[m]] += 1
        c.draws += 1  # a fresh draw each time, the controller otherwise fixed
    rate = hits / offers
    low, high = float(rate[:10].mean()), float(rate[-10:].mean())
    assert high > 2.5 * low, (low, high)
    assert float(rate.min()) > 0.02  # the uniform mix keeps every sample in play
    # more significant -> chosen more often, almost monotonically (sampling noise only)
    assert float(torch.corrcoef(torch.stack([rate, losses]))[0, 1]) > 0.95


def test_importance_mode_holds_the_target_rate():
    g = torch.Generator().manual_seed(1)
    losses = torch.exp(0.5 * torch.randn(4000, generator=g))
    for target in (0.2, 0.4):
        c = ASTController(4000, target=target, selection="importance")
        rates = _run(c, losses.clone(), epochs=3)
        for r in rates:
            assert abs(r - target) < 0.03, (target, rates)
