"""Where and in which precision a model runs: device and autocast-precision resolution and the
autocast context, one implementation for training, inference, evaluation and prediction.

It sits at the bottom of the package (torch and ``errors`` only), so the inference side never
has to import the trainer to run a forward pass the way training did.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from genesis_rna.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")  # autocast dtypes; fp32 is no autocast
DEVICES = ("auto", "cpu", "cuda")  # the trainer's device setting (inference also takes cuda:N)
DDP_BACKENDS = ("auto", "nccl", "gloo")  # torch.distributed backends; auto picks by device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when torch sees one, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given.
    Asking for CUDA where torch sees none is a ConfigError on ``device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError("device", f"{device!r} is not a device ({exc})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{str(device)!r} requested but torch sees no CUDA device")
    return resolved


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls and convolutions in oneDNN's kernels (AVX-512 or AMX;
    PyTorch's own check). Without them bf16 falls back to reference loops: on an AVX2-only
    AMD EPYC (Zen 2) a 2048^3 bf16 matmul ran at 0.29 GFLOP/s against 152 GFLOP/s in fp32,
    and one training step of the small model took 27 s instead of 1.1 s in fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the check: go by the ISA
        return "AVX512" in torch.backends.cpu.get_cpu_capability()


def resolve_precision(requested: str, device: torch.device, *, warn: bool = False) -> str:
    """Autocast precision actually used on ``device`` for a requested one.

    fp16 autocast (and the GradScaler training pairs with it) is a CUDA feature, so CPU runs
    use bf16 instead, and fp32 on a CPU without native bf16 (``cpu_has_fast_bf16``), where
    bf16 would be hundreds of times slower; GPUs without bf16 use fp16. ``warn``: say so
    (training does, since the run's numbers change; prediction substitutes quietly).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if device.type == "cpu" and requested in ("fp16", "bf16"):
        used = "bf16" if cpu_has_fast_bf16() else "fp32"
        if warn and requested == "fp16":
            warnings.warn(f"mixed_precision fp16 needs CUDA; no CUDA device found, using {used} "
                          + ("autocast " if used == "bf16" else "") + "on CPU instead",
                          stacklevel=3)
        elif warn and used != requested:
            warnings.warn("mixed_precision bf16: this CPU has no native bf16 (oneDNN needs "
                          "AVX-512 or AMX; here bf16 matmuls run hundreds of times slower "
                          "than fp32), using fp32", stacklevel=3)
        return used
    if device.type == "cuda" and requested == "bf16" and not torch.cuda.is_bf16_supported():
        if warn:
            warnings.warn("this GPU does not support bf16; using fp16 with GradScaler",
                          stacklevel=3)
        return "fp16"
    return requested


def resolve_runtime(device: str, precision: str) -> tuple[torch.device, str]:
    """The trainer's device and precision settings -> what is actually used; substitutions
    are explained with a warning."""
    resolved = resolve_device(device)
    return resolved, resolve_precision(precision, resolved, warn=True)


def autocast_for(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def add_inference_arguments(parser) -> None:
    """``--device`` and ``--precision`` of the inference CLIs (evaluate, predict), one wording."""
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="autocast dtype (default: the one the model was trained with)")
