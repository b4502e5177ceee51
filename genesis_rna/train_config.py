"""Training configuration: one typed dataclass, YAML loading, command-line overrides.

Precedence: dataclass defaults < YAML file (``--config``) < flags given on the command line.
Every argparse flag defaults to None, so a flag that was not typed cannot mask the file's
value, and a flag that was typed always wins (the replaced project silently ignored flags
whenever a config file was given).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from genesis_rna.decoding import DECODERS
from genesis_rna.errors import ConfigError
from genesis_rna.model import MODEL_SIZES
from genesis_rna.schedule import SCHEDULERS

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
DDP_BACKENDS = ("auto", "nccl", "gloo")
RESOLVED_SECTION = "resolved"


@dataclass
class TrainConfig:
    # paths
    data_path: str | None = None  # folder with train.parquet and val.parquet
    output_dir: str | None = None  # receives model.pt, training_metrics.csv, run_config.yaml
    checkpoint_dir: str | None = None  # default: <output_dir>/checkpoints
    # fine-tuning: start from this model's weights only (fresh optimizer, schedule, AST); the
    # architecture keys below must match it (max_len and dropout may differ)
    init_from: str | None = None
    # model
    model_size: str = "small"
    dropout: float = 0.1
    pair_conv_layers: int = 4  # residual 3x3 conv layers refining the pair map (0 = none)
    pair_conv_channels: int = 16
    pair_conv_max_dilation: int = 8  # conv dilations cycle 1, 2, 4, ... up to this (power of 2)
    pair_type_channels: bool = True  # pair map starts with learned (nucleotide_i, nucleotide_j) channels
    struct_from_pairs: bool = True  # structure head also reads the pair map pooled per position
    max_len: int = 512  # tokens per sequence incl. CLS and SEP; longer sequences are cropped
    # data
    bucket_multiple: int = 32  # batch widths are rounded up to a multiple of this
    mask_prob: float = 0.15
    num_workers: int = 0
    # optimization
    num_epochs: int = 10
    batch_size: int = 32  # per process: under torchrun the global batch is this x processes
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    scheduler: str = "cosine"
    warmup_steps: int = 500
    min_lr_ratio: float = 0.1
    # losses
    loss_weight_mlm: float = 1.0
    loss_weight_struct: float = 0.8
    loss_weight_pair: float = 1.5
    focal_alpha: float = 0.75
    focal_gamma: float = 2.0
    pair_min_sep: int = 4  # |i - j| below this is never a pair (loss, metrics, post-processing)
    pair_threshold: float = 0.5  # pair-probability cut for the per-epoch metrics (final: tuned)
    pair_decoder: str = "mea"  # probabilities -> structure: mea (nested) or greedy (may cross)
    # adaptive sparse training
    use_ast: bool = True
    ast_target_activation: float = 0.4
    ast_kp: float = 2.0
    ast_ki: float = 0.2
    ast_smoothing: float = 0.8
    # runtime
    mixed_precision: str = "bf16"
    device: str = "auto"
    seed: int = 42
    activation_checkpointing: bool = False  # recompute pair-map activations in backward (less RAM)
    threads: int | None = None  # torch intra-op threads per process; default: cores / processes
    ddp_backend: str = "auto"  # under torchrun: auto = nccl on CUDA, gloo on CPU
    save_every_steps: int = 500
    resume: bool = True
    max_nonfinite_steps: int = 20  # abort after this many consecutive non-finite steps
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        positive = ("pair_conv_channels", "max_len", "bucket_multiple", "num_epochs", "batch_size",
                    "save_every_steps", "max_nonfinite_steps")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(key, f"must be positive, got {getattr(self, key)}")
        non_negative = ("pair_conv_layers", "num_workers", "warmup_steps", "weight_decay",
                        "grad_clip", "loss_weight_mlm", "loss_weight_struct", "loss_weight_pair",
                        "focal_gamma", "pair_min_sep", "ast_kp", "ast_ki")
        for key in non_negative:
            if getattr(self, key) < 0:
                raise ConfigError(key, f"must not be negative, got {getattr(self, key)}")
        d = self.pair_conv_max_dilation
        if d < 1 or d & (d - 1):
            raise ConfigError("pair_conv_max_dilation", f"must be a power of 2 (1, 2, 4, ...), got {d}")
        if self.threads is not None and self.threads <= 0:
            raise ConfigError("threads", f"must be positive, got {self.threads}")
        if self.max_len < 8:
            raise ConfigError("max_len", f"must be at least 8 tokens, got {self.max_len}")
        if self.learning_rate <= 0:
            raise ConfigError("learning_rate", f"must be positive, got {self.learning_rate}")
        for key in ("dropout", "mask_prob", "focal_alpha", "min_lr_ratio", "ast_smoothing"):
            v = getattr(self, key)
            if not 0 <= v <= 1:
                raise ConfigError(key, f"must be in [0, 1], got {v}")
        if not 0 < self.mask_prob:
            raise ConfigError("mask_prob", "must be positive (MLM needs masked positions)")
        if not 0 < self.pair_threshold < 1:
            raise ConfigError("pair_threshold", f"must be in (0, 1), got {self.pair_threshold}")
        if not 0 < self.ast_target_activation <= 1:
            raise ConfigError("ast_target_activation",
                              f"must be in (0, 1], got {self.ast_target_activation}")
        if self.model_size not in MODEL_SIZES:
            raise ConfigError("model_size", f"unknown size {self.model_size!r}; "
                              f"choose from {sorted(MODEL_SIZES)}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError("scheduler", f"unknown scheduler {self.scheduler!r}; "
                              f"choose from {list(SCHEDULERS)}")
        if self.mixed_precision not in PRECISIONS:
            raise ConfigError("mixed_precision", f"{self.mixed_precision!r} not in {PRECISIONS}")
        if self.pair_decoder not in DECODERS:
            raise ConfigError("pair_decoder", f"{self.pair_decoder!r} not in {DECODERS}")
        if self.device not in DEVICES:
            raise ConfigError("device", f"{self.device!r} not in {DEVICES}")
        if self.ddp_backend not in DDP_BACKENDS:
            raise ConfigError("ddp_backend", f"{self.ddp_backend!r} not in {DDP_BACKENDS}")
        if self.device == "cpu" and self.mixed_precision == "fp16":
            raise ConfigError("mixed_precision",
                              "fp16 needs CUDA (GradScaler); with device 'cpu' use bf16 or fp32")

    def pair_conv_dilations(self) -> tuple[int, ...]:
        return tuple(2 ** k for k in range(self.pair_conv_max_dilation.bit_length()))

    def resolved_checkpoint_dir(self) -> Path:
        if self.checkpoint_dir:
            return Path(self.checkpoint_dir)
        if not self.output_dir:
            raise ConfigError("output_dir", "is required")
        return Path(self.output_dir) / "checkpoints"

    def resolved_threads(self, processes_per_node: int = 1) -> int:
        """Threads per process: the setting, else the cores shared among this node's ranks."""
        return self.threads or max(1, len(os.sched_getaffinity(0)) // processes_per_node)

    def to_dict(self) -> dict:
        return asdict(self)


# Keys that change how a run is executed but not what it computes: a checkpoint or a finished
# model made under other values of these is still the same run.
RUNTIME_KEYS = frozenset({"data_path", "output_dir", "checkpoint_dir", "num_workers", "threads",
                          "save_every_steps", "resume", "progress", "ddp_backend",
                          "activation_checkpointing"})


def semantic_config(cfg: dict) -> dict:
    """The part of a config dict that determines the trained weights (for resume matching)."""
    return {k: v for k, v in cfg.items() if k not in RUNTIME_KEYS}


def _field_type(f: dataclasses.Field) -> type:
    hints = typing.get_type_hints(TrainConfig)
    t = hints[f.name]
    if isinstance(t, types.UnionType):  # "X | None"
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t


def load_yaml_config(path: str | Path) -> dict:
    """Read a flat YAML mapping; unknown keys and wrong types raise ConfigError naming them."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"{path} is not valid YAML text: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of keys to values")
    # A run's run_config.yaml can be passed back as --config: its "resolved" section is a
    # record of what the run used (device, precision, sizes), not a setting.
    data = {k: v for k, v in data.items() if k != RESOLVED_SECTION}
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(str(k) for k in set(data) - set(known))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key(s) {unknown} in {path}")
    out = {}
    for key, val in data.items():
        if val is None:
            # only "X | None" fields may be left empty in the file
            hint = typing.get_type_hints(TrainConfig)[key]
            if not (isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)):
                raise ConfigError(key, f"needs a value in {path}")
            out[key] = None
            continue
        t = _field_type(known[key])
        if t is float and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if not isinstance(val, t) or (t is int and isinstance(val, bool)):
            raise ConfigError(key, f"expected {t.__name__}, got {val!r} in {path}")
        out[key] = val
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m genesis_rna.train_pretrain",
        description="Pretrain the Genesis RNA multi-task model. Flags override --config.",
    )
    parser.add_argument("--config", help="YAML file with any of the options below")
    for f in fields(TrainConfig):
        t = _field_type(f)
        flag = f"--{f.name}"
        default = f.default
        help_text = f"(default: {default})"
        if t is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(flag, type=t, default=None, help=help_text)
    return parser


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    values: dict = {}
    if args.config:
        values.update(load_yaml_config(args.config))
    for f in fields(TrainConfig):
        v = getattr(args, f.name)
        if v is not None:
            values[f.name] = v
    cfg = TrainConfig(**values)
    for key in ("data_path", "output_dir"):
        if not getattr(cfg, key):
            raise ConfigError(key, "is required (--" + key + " or in the config file)")
    return cfg
