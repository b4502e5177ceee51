"""Model FLOP utilisation: FLOPs of a training step (counted, not estimated) and this
machine's measured matmul peak, for ``bench train``.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts the matmuls,
convolutions and attention kernels that autograd runs in forward and backward; element-wise
work is not counted, so MFU says how much of the machine the useful math gets.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def counted_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of ``step`` (forward and backward), counted op by op."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """FLOP/s of an [n, n] @ [n, n] matmul at the current thread count: the best of the
    timed repetitions after one warm-up, repeated for about ``seconds``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best
