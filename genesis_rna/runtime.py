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


def resolve_precision(requested: str, device: torch.device, *, warn: bool = False) -> str:
    """Autocast precision actually used on ``device`` for a requested one.

    fp16 autocast (and the GradScaler training pairs with it) is a CUDA feature, so CPU runs
    use bf16 instead; GPUs without bf16 use fp16. ``warn``: say so (training does, since the
    run's numbers change; prediction substitutes quietly).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if device.type == "cpu" and requested == "fp16":
        if warn:
            warnings.warn("mixed_precision fp16 needs CUDA; no CUDA device found, using bf16 "
                          "autocast on CPU instead", stacklevel=3)
        return "bf16"
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
