"""Multi-process training through PyTorch's own machinery: torchrun + torch.distributed + DDP.

One node, N GPUs (``batch_size`` is per process, so the global batch is N x batch_size)::

    torchrun --standalone --nproc_per_node N -m genesis_rna.train_pretrain --config FILE ...

CPU-only (gloo; how the tests run it)::

    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        -m genesis_rna.train_pretrain --device cpu --threads 1 ...

SLURM, several nodes: one ``srun`` task per node starts one torchrun, which starts the per-GPU
workers; c10d rendezvous on the first node of the allocation::

    head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    srun --ntasks-per-node 1 torchrun --nnodes $SLURM_NNODES --nproc_per_node N \\
        --rdzv_id $SLURM_JOB_ID --rdzv_backend c10d --rdzv_endpoint $head:29500 \\
        -m genesis_rna.train_pretrain --config FILE ...

(request the GPUs with ``--gpus-per-node N`` / ``--gres gpu:N`` in the job). torchrun sets
RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; without them (plain ``python -m``) training is
single-process and none of this module does anything. A torchrun launch with one process is
the single-process run too: no process group, no DDP wrapper.

Every collective here is called by all ranks in the same order; the trainer's control flow is
a pure function of the step count and of reduced values, so no rank can take a path that
another does not.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from genesis_rna.errors import ConfigError
from genesis_rna.runtime import DDP_BACKENDS

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job, plus the few collectives the trainer needs.

    With ``world_size == 1`` every method is the identity (no process group exists), so the
    trainer calls them unconditionally and the single-process path stays exactly as it was.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _comm_device(self) -> torch.device:
        # NCCL only moves CUDA tensors; gloo moves CPU ones.
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def all_reduce(self, values: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Element-wise sum/max/min over ranks of a 1-D tensor; returns a new float64 CPU tensor."""
        out = values.detach().to(torch.float64).cpu().clone()
        if not self.enabled:
            return out
        t = out.to(self._comm_device())
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        dist.all_reduce(t, op=ops[op])
        return t.cpu()

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """The same-shaped tensor from every rank, in rank order (CPU copies)."""
        if not self.enabled:
            return [t.detach().cpu().clone()]
        x = t.detach().contiguous().to(self._comm_device())
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x)
        return [p.cpu() for p in parts]

    def all_gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """[n_r, k] float64 rows from every rank (n_r may differ) -> [sum n_r, k], rank order."""
        rows = rows.detach().to(torch.float64).cpu()
        if not self.enabled:
            return rows.clone()
        counts = [int(c) for c in self.all_gather(torch.tensor([rows.shape[0]]))]
        width = max(max(counts), 1)
        padded = torch.zeros((width, rows.shape[1]), dtype=torch.float64)
        padded[: rows.shape[0]] = rows
        parts = self.all_gather(padded)
        return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)])

    def barrier(self) -> None:
        if self.enabled:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()


def _env_int(key: str) -> int:
    raw = os.environ[key]
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(key, f"environment variable must be an integer, got {raw!r}") from None


def _die_with_launcher() -> None:
    """Ask Linux to SIGKILL this worker when its parent (the torchrun agent) dies.

    torchrun starts workers in their own sessions, so killing the launcher (SIGKILL, OOM
    killer, a job scheduler that signals only the top process) would otherwise leave workers
    training on as orphans, still writing checkpoints while a rerun starts beside them. If the
    launcher died before this request (the import of torch takes seconds), the parent is
    already the reaper, not a torch launcher: exit now.
    """
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" not in os.environ:
        return  # not started by torchrun: the parent is not ours to follow
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    parent = os.getppid()
    try:
        cmdline = Path(f"/proc/{parent}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    if parent == 1 or b"torch" not in cmdline:
        print(f"rank {os.environ.get('RANK')}: the torchrun launcher is gone; exiting",
              file=sys.stderr, flush=True)
        os._exit(1)


def init_from_env(backend: str = "auto", device: str = "auto") -> Distributed:
    """Join the process group torchrun describes in the environment (or run single-process).

    ``backend`` auto: nccl when training on CUDA, gloo on CPU. ``device`` is the trainer's
    device setting ("auto", "cpu", "cuda"); each rank uses cuda:LOCAL_RANK.
    """
    if backend not in DDP_BACKENDS:
        raise ConfigError("ddp_backend", f"{backend!r} not in {DDP_BACKENDS}")
    if not all(k in os.environ for k in _ENV):
        return Distributed()
    rank, world, local_rank = (_env_int(k) for k in _ENV)
    local_world = _env_int("LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in os.environ else world
    if world <= 1:
        return Distributed()
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError("device", f"LOCAL_RANK {local_rank} but torch sees only "
                              f"{torch.cuda.device_count()} CUDA device(s); lower --nproc_per_node")
        torch.cuda.set_device(local_rank)
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if backend == "nccl" and not use_cuda:
        raise ConfigError("ddp_backend", "nccl needs CUDA devices; use gloo for CPU training")
    _die_with_launcher()
    kwargs = {"device_id": torch.device("cuda", local_rank)} if backend == "nccl" else {}
    dist.init_process_group(backend=backend, **kwargs)
    return Distributed(rank, world, local_rank, local_world, backend)


def shutdown(ctx: Distributed) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
