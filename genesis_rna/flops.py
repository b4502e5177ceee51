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


def matmul_peak(dtype: torch.dtype, n: int | None = None, seconds: float = 2.0,
                device: str | torch.device = "cpu") -> float:
    """FLOP/s of an [n, n] @ [n, n] matmul on random data (zeros run faster than real data
    on some GPUs) at the current thread count: the best of the timed repetitions after one
    warm-up, repeated for about ``seconds``. ``n`` defaults to 2048 on CPU and 8192 on CUDA
    (a size that fills the chip); CUDA work is synchronized around each timing."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    n = n or (8192 if cuda else 2048)
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    a @ b
    sync()
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best
