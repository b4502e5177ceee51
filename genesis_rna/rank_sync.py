"""What the trainer's ranks exchange under DDP, beside the collectives in ``distributed``:
each rank's share of the global batch loss, the AST losses of all ranks' samples, the per-rank
state a checkpoint carries (RNG streams, partial epoch sums), and the validation candidates
gathered back into the global order for threshold tuning.

Every function here that takes a ``Distributed`` is a collective: all ranks call it, in the
same order. Single-process, each is the identity (or returns None).
"""

from __future__ import annotations

import numpy as np
import torch

from genesis_rna.ast_controller import ASTController
from genesis_rna.decoding import Candidates
from genesis_rna.distributed import Distributed
from genesis_rna.epoch_stats import EpochStats
from genesis_rna.losses import LossOutput
from genesis_rna.pair_metrics import Pair
from genesis_rna.tasks import LOSS_COLUMN


def rank_share(loss: LossOutput, local: torch.Tensor, total: torch.Tensor
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """This rank's part of the global batch loss, and its parts of the logged loss values.

    ``local`` and ``total``: this rank's and the global unit counts of each term
    (``MultiTaskLoss.counts``, in task order; weighted by the AST sample weights when the
    loss is). Each term is this rank's mean times its share of
    the global count, i.e. its sum over the global count; summed over ranks that is exactly
    the single-process loss of the global batch (up to float rounding). A rank with no count
    (placeholder) contributes zero.
    """
    # only an empty total is replaced: AST's weighted counts may be fractions below 1
    share = local / torch.where(total > 0, total, torch.ones_like(total))
    parts = [term.value * float(s) for term, s in zip(loss.terms, share, strict=True)]
    part = sum(term.weight * p for term, p in zip(loss.terms, parts, strict=True))
    values = {"loss": float(part.detach()),
              **{LOSS_COLUMN[term.name]: float(p.detach())
                 for term, p in zip(loss.terms, parts, strict=True)}}
    return part, values


def merged_sample_losses(dist: Distributed, index: torch.Tensor, per_sample: torch.Tensor,
                         placeholder: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(sample indices, per-sample losses) of the samples every rank just trained, so each
    rank's AST memory records the same list (a placeholder rank adds nothing)."""
    rows = torch.stack([index.double().cpu(), per_sample.double().cpu()], 1)
    merged = dist.all_gather_rows(rows[:0] if placeholder else rows)
    return merged[:, 0].long(), merged[:, 1].float()


def rank_states(dist: Distributed, stats: EpochStats, ast: ASTController | None,
                device: torch.device) -> list[dict] | None:
    """Per-rank parts of the training state: RNG streams and partial epoch sums (None
    single-process). Also checks that the AST controllers agree."""
    if not dist.enabled:
        return None
    if ast:  # the controller must be the same everywhere; cheap to check here
        prints = dist.all_gather(ast.fingerprint())
        assert all(torch.equal(p, prints[0]) for p in prints), f"AST state diverged: {prints}"
    all_stats = dist.all_gather(stats.vector())
    rngs = dist.all_gather(torch.get_rng_state())
    cuda = (dist.all_gather(torch.cuda.get_rng_state(device))
            if device.type == "cuda" else [None] * dist.world_size)
    out = []
    for st, rng, crng in zip(all_stats, rngs, cuda, strict=True):
        entry = {"epoch_stats": dict(zip(EpochStats.KEYS, st.tolist(), strict=True)),
                 "torch_rng": rng}
        if crng is not None:
            entry["cuda_rng"] = crng
        out.append(entry)
    return out


def restore_rank_state(entry: dict, device: torch.device) -> EpochStats:
    """Set this rank's RNG streams from its ``rank_states`` entry; returns its epoch sums."""
    torch.set_rng_state(entry["torch_rng"])
    if "cuda_rng" in entry and device.type == "cuda":
        torch.cuda.set_rng_state(entry["cuda_rng"], device)
    return EpochStats(entry["epoch_stats"])


def candidate_rows(positions: list[int], cands: list[Candidates], truths: list[list[Pair]]
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """A shard's candidates and true pairs as float64 rows tagged with their position in the
    global validation order: (pos, i, j, p) and (pos, i, j)."""
    cand_rows, truth_rows = [], []
    for pos, (i, j, p), pairs in zip(positions, cands, truths, strict=True):
        cand_rows.append(torch.from_numpy(np.stack(
            [np.full(len(i), pos), i, j, p], 1).astype(np.float64)))
        truth_rows.append(torch.tensor([(pos, a, b) for a, b in pairs],
                                       dtype=torch.float64).reshape(-1, 3))
    return cand_rows, truth_rows


def gather_candidates(dist: Distributed, cand_rows: list[torch.Tensor],
                      truth_rows: list[torch.Tensor], n: int
                      ) -> tuple[list[Candidates], list[list[Pair]]]:
    """Per-sequence candidates and true pairs of all ranks, rebuilt in validation order
    (``n`` sequences)."""
    c = dist.all_gather_rows(torch.cat(cand_rows) if cand_rows else torch.zeros(0, 4))
    t = dist.all_gather_rows(torch.cat(truth_rows) if truth_rows else torch.zeros(0, 3))
    c = c[torch.argsort(c[:, 0], stable=True)].numpy()
    t = t[torch.argsort(t[:, 0], stable=True)].numpy()
    c_pos, t_pos = c[:, 0].astype(np.int64), t[:, 0].astype(np.int64)
    c_cut = np.searchsorted(c_pos, np.arange(n + 1))
    t_cut = np.searchsorted(t_pos, np.arange(n + 1))
    cands = [(c[a:b, 1].astype(np.int64), c[a:b, 2].astype(np.int64), c[a:b, 3])
             for a, b in zip(c_cut[:-1], c_cut[1:], strict=True)]
    truths = [[(int(x), int(y)) for x, y in t[a:b, 1:3]]
              for a, b in zip(t_cut[:-1], t_cut[1:], strict=True)]
    return cands, truths
