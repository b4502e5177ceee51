"""Adaptive Sparse Training (AST): train each batch only on its most significant samples.

Significance is the loss last seen for that sample (its weighted multi-task loss from the
last time it was trained), divided by a running mean of recent losses so that the threshold is
dimensionless and does not drift as the loss falls. A sample never seen yet has no memory:
its significance is a deterministic pseudo-random draw, uniform on [0, 2) (mean 1, the
running-mean loss), from a hash of its index and a per-controller draw counter. So the first
epoch is already a target-rate subsample chosen without bias, not a full pass, and unseen
samples keep competing fairly (on average) with seen ones until they are trained. The draw
counter is part of the state, so a resumed run draws exactly what an uninterrupted one would.

Why loss memory rather than a no-grad scoring forward: a forward pass costs about a third of
forward+backward, so scoring every sample would spend ~0.33 of the full cost before training
the selected 40%, leaving ~0.73 of the AST-off cost instead of ~0.4. The memory costs nothing
(the loss comes out of the training forward anyway), and a stale memory is itself a useful
signal: samples not trained for a while keep the higher loss they had earlier and come back.

Two selection modes decide which samples of a batch train (``selection``):
- ``threshold``: the samples with significance >= threshold, each at weight 1. Biased: the
  gradient is that of the high-loss part of the batch only.
- ``importance``: the same number of samples (the threshold's count, so the controller still
  holds the target rate), drawn with inclusion probability pi_i = k * p_i, where
  p_i = (1 - mix) * sig_i / sum(sig) + mix / N over the N candidates (an unseen sample counts
  as the batch's mean seen significance; the uniform part keeps every p_i >= mix / N), by
  systematic sampling (exactly k samples, each included with probability exactly pi_i; pi_i
  capped at 1 and the rest redistributed). Each trained sample's loss is weighted by 1 / pi_i
  (proportional to 1 / (N p_i), Katharopoulos & Fleuret 2018), normalised to mean 1 over the
  trained samples: the weighted loss (sums and units scaled alike, ``MultiTaskLoss``) is the
  ratio estimate of the whole candidate batch's loss, so the gradient aims at the full data
  while the compute stays on the samples likely to matter. The one uniform draw of the
  systematic sample is a hash of the draw counter, so every rank and a resumed run draw alike.

The threshold is set by a PI controller on the log scale. The measured activation rate of
each batch is smoothed by an EMA; error = target - ema; the integral is clamped
(anti-windup), so a long saturated stretch (e.g. every loss equal) cannot wind it up;
log threshold = -(kp * error + ki * integral).

Multi-process training (DDP): each rank chooses among its own samples with ``choose`` (the
same memory, scale, threshold and draw counter on every rank, so a sample gets the choice a
single process would give it), the ranks sum their counts, and every rank feeds the global
counts to ``observe``; the ranks then exchange the losses of the samples they trained and all
``record`` the same merged list. Controller and memory stay identical on every rank, which
``fingerprint`` lets the trainer check. One process: ``choose``, ``observe`` its own counts
(``batch_counts``), ``record`` the trained samples' losses.
"""

from __future__ import annotations

import math

import torch

SELECTIONS = ("threshold", "importance")


def _hash_uniform(keys: torch.Tensor, draws: int) -> torch.Tensor:
    """[B] deterministic uniform [0, 1) values from int64 keys and a draw counter."""
    x = (keys.to(torch.int64) * 2654435761 + draws * 40503 + 12345) % 4294967296
    x = (x ^ (x >> 13)) * 1274126177 % 4294967296
    return x.to(torch.float64).div(4294967296.0)


def inclusion_probabilities(weights: torch.Tensor, k: int) -> torch.Tensor:
    """[N] float64 pi_i proportional to ``weights`` (> 0), capped at 1, summing to k."""
    w = weights.double()
    pi = torch.zeros_like(w)
    certain = torch.zeros(len(w), dtype=torch.bool)
    for _ in range(len(w)):  # each pass caps at least one more sample, or ends
        rest = k - int(certain.sum())
        free = ~certain
        pi[free] = w[free] * (rest / w[free].sum())
        over = free & (pi >= 1)
        if not over.any():
            break
        certain |= over
        pi[certain] = 1.0
    return pi


def systematic_sample(pi: torch.Tensor, u: float) -> torch.Tensor:
    """[N] bool: Madow's systematic sample for inclusion probabilities ``pi`` (each <= 1,
    summing to an integer k): exactly k samples, sample i included with probability pi_i over
    u ~ U[0, 1). Samples with pi_i = 1 are always included (exactly, despite rounding)."""
    certain = pi >= 1
    chosen = certain.clone()
    rest = ~certain
    k = round(float(pi[rest].sum()))
    if k > 0:
        cum = torch.cumsum(pi[rest], 0)
        cum = cum * (k / float(cum[-1]))  # exactly k at the end, despite rounding
        cum[-1] = k
        hits = torch.ceil(cum - u) - torch.ceil(torch.cat([cum.new_zeros(1), cum[:-1]]) - u)
        chosen[rest] = hits > 0
    return chosen


class ASTController:
    def __init__(self, n_samples: int, target: float = 0.4, kp: float = 2.0, ki: float = 0.2,
                 smoothing: float = 0.8, integral_limit: float | None = None,
                 selection: str = "threshold", importance_mix: float = 0.2):
        if not 0 < target <= 1:
            raise ValueError(f"target activation must be in (0, 1], got {target}")
        if selection not in SELECTIONS:
            raise ValueError(f"AST selection {selection!r} not in {SELECTIONS}")
        if not 0 < importance_mix <= 1:
            raise ValueError(f"importance mix must be in (0, 1], got {importance_mix}")
        self.target = target
        self.selection, self.importance_mix = selection, importance_mix
        self.kp, self.ki, self.smoothing = kp, ki, smoothing
        # the integral alone may move the threshold by at most a factor e^4 either way
        self.integral_limit = integral_limit if integral_limit is not None else 4.0 / ki
        self.memory = torch.full((n_samples,), float("nan"), dtype=torch.float32)
        self.log_threshold = 0.0
        self.integral = 0.0
        self.ema_rate = target
        self.scale = float("nan")  # running mean of recorded per-sample losses
        self.draws = 0  # counter that keys the pseudo-random draws for unseen samples
        self.reset_epoch()

    @property
    def threshold(self) -> float:
        return math.exp(self.log_threshold)

    def reset_epoch(self) -> None:
        self.epoch_samples = 0
        self.epoch_selected = 0
        self.epoch_tokens = 0
        self.epoch_tokens_skipped = 0

    def _unseen_draw(self, indices: torch.Tensor) -> torch.Tensor:
        """[B] deterministic uniform [0, 2) draws for samples without a loss memory."""
        return (2.0 * _hash_uniform(indices, self.draws)).to(torch.float32)

    def significance(self, indices: torch.Tensor) -> torch.Tensor:
        """[B] loss memory / running mean loss; a uniform [0, 2) draw for unseen samples."""
        indices = indices.cpu()
        sig = self.memory[indices] / self.scale
        unseen = torch.isnan(sig)
        if unseen.any():
            sig[unseen] = self._unseen_draw(indices[unseen])
        return sig

    def _threshold_choice(self, sig: torch.Tensor) -> torch.Tensor:
        chosen = sig >= self.threshold
        if not chosen.any():  # every batch trains on at least one sample: the most significant
            chosen[int(torch.argmax(sig))] = True
        return chosen

    def inclusion(self, indices: torch.Tensor) -> torch.Tensor:
        """[B] float64 inclusion probabilities of importance selection (they sum to the
        threshold's count); changes no state."""
        indices = indices.cpu()
        sig = self.significance(indices)
        k = int(self._threshold_choice(sig).sum())
        # p ~ significance, where a sample without memory is assumed average (its draw in
        # ``significance`` is for the threshold's count only: as a probability it is noise)
        seen = torch.isfinite(self.memory[indices])
        known = sig.double().clamp(min=0)
        fill = float(known[seen].mean()) if seen.any() else 1.0
        known[~seen] = fill
        total = float(known.sum())
        n = len(indices)
        p = (1 - self.importance_mix) * known / total + self.importance_mix / n if total > 0 \
            else torch.full((n,), 1.0 / n, dtype=torch.float64)
        return inclusion_probabilities(p, k)

    def choose(self, indices: torch.Tensor) -> torch.Tensor:
        """[B] bool mask of samples to train (at least one); changes no state."""
        if self.selection == "threshold":
            return self._threshold_choice(self.significance(indices))
        u = float(_hash_uniform(torch.tensor([-1]), self.draws)[0])  # one draw per batch
        return systematic_sample(self.inclusion(indices), u)

    def sample_weights(self, indices: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor | None:
        """[chosen.sum()] float32 loss weights of the chosen samples: 1 / pi_i normalised to
        mean 1 (importance selection); None for threshold selection (all weigh 1)."""
        if self.selection == "threshold":
            return None
        inv = 1.0 / self.inclusion(indices)[chosen.cpu()]
        return (inv / inv.mean()).to(torch.float32)

    def observe(self, samples: int, selected: int, tokens: int, tokens_skipped: int) -> None:
        """One controller step from a batch's counts (summed over ranks under DDP)."""
        self._control(selected / samples)
        self.draws += 1  # once per batch, so the draws of the next batch are fresh
        self.epoch_samples += samples
        self.epoch_selected += selected
        self.epoch_tokens += tokens
        self.epoch_tokens_skipped += tokens_skipped

    @staticmethod
    def batch_counts(chosen: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[4] float64 counts of a batch's choice, what ``observe`` takes: samples, selected,
        nucleotides, nucleotides skipped (under DDP summed over ranks first)."""
        lengths = lengths.cpu()
        return torch.tensor([len(chosen), int(chosen.sum()), int(lengths.sum()),
                             int(lengths[~chosen].sum())], dtype=torch.float64)

    def _control(self, rate: float) -> None:
        self.ema_rate = self.smoothing * self.ema_rate + (1 - self.smoothing) * rate
        error = self.target - self.ema_rate
        self.integral = min(max(self.integral + error, -self.integral_limit), self.integral_limit)
        self.log_threshold = -(self.kp * error + self.ki * self.integral)

    def record(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Remember the per-sample losses of the samples just trained (finite ones only)."""
        losses = losses.detach().float().cpu()
        ok = torch.isfinite(losses)
        if not ok.any():
            return
        self.memory[indices.cpu()[ok]] = losses[ok]
        batch_mean = float(losses[ok].mean())
        self.scale = batch_mean if math.isnan(self.scale) else 0.95 * self.scale + 0.05 * batch_mean

    def epoch_activation_rate(self) -> float:
        return self.epoch_selected / self.epoch_samples if self.epoch_samples else 0.0

    def fingerprint(self) -> torch.Tensor:
        """[8] float64 summary of the whole state: equal on every rank when in sync."""
        mem = torch.nan_to_num(self.memory.double(), nan=-1.0)
        weights = torch.arange(len(mem), dtype=torch.float64) % 1009 + 1
        return torch.tensor([self.log_threshold, self.integral, self.ema_rate,
                             -1.0 if math.isnan(self.scale) else self.scale, float(self.draws),
                             float(self.epoch_selected), float(mem.sum()),
                             float((mem * weights).sum())], dtype=torch.float64)

    def state_dict(self) -> dict:
        return {
            "memory": self.memory.clone(),
            "log_threshold": self.log_threshold,
            "integral": self.integral,
            "ema_rate": self.ema_rate,
            "scale": self.scale,
            "draws": self.draws,
            "epoch": [self.epoch_samples, self.epoch_selected, self.epoch_tokens,
                      self.epoch_tokens_skipped],
        }

    def load_state_dict(self, state: dict) -> None:
        if state["memory"].shape != self.memory.shape:
            raise ValueError(
                f"AST memory holds {state['memory'].shape[0]} samples, data has {self.memory.shape[0]}")
        self.memory = state["memory"].clone()
        self.log_threshold = float(state["log_threshold"])
        self.integral = float(state["integral"])
        self.ema_rate = float(state["ema_rate"])
        self.scale = float(state["scale"])
        self.draws = int(state["draws"])
        (self.epoch_samples, self.epoch_selected, self.epoch_tokens,
         self.epoch_tokens_skipped) = (int(x) for x in state["epoch"])

    def summary(self) -> str:
        return (f"AST: activation {self.epoch_activation_rate():.3f} (target {self.target:.2f}), "
                f"skipped {self.epoch_samples - self.epoch_selected}/{self.epoch_samples} samples, "
                f"{self.epoch_tokens_skipped}/{self.epoch_tokens} nt; threshold "
                f"{self.threshold:.3f} x mean loss, integral {self.integral:.2f}")
