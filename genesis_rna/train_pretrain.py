"""Multi-task pretraining: ``python -m genesis_rna.train_pretrain --config FILE --output_dir DIR
--data_path DIR --num_epochs N`` (every TrainConfig field is also a flag; flags beat the file).

Outputs in ``output_dir``: model.pt (weights, config, vocabulary, model hyperparameters, tuned
pair threshold, training summary), training_metrics.csv (see metrics_logger), run_config.yaml
(resolved config plus the device and precision actually used). Checkpoints in
``checkpoint_dir`` every ``save_every_steps`` optimizer steps and at each epoch end; a rerun
resumes from the newest readable one and ends exactly where an uninterrupted run would.

Several GPUs: ``torchrun --standalone --nproc_per_node N -m genesis_rna.train_pretrain ...``
with the same flags (SLURM multi-node: see ``genesis_rna.distributed``). The model is wrapped
in DistributedDataParallel; ``batch_size`` is per process, so N processes with batch b train
on the global batches of one process with batch N*b, split across the ranks (see
``BucketBatchSampler``). Each rank's loss terms are normalized by the global counts of the
batch (masked tokens, labelled nucleotides, samples with pair cells), all-reduced before the
forward, and scaled by N, so DDP's gradient average is the gradient of the single-process
loss of the global batch, not a mean of per-rank means. Metrics are sums reduced over ranks,
validation runs sharded the same way, AST chooses per rank with a shared controller, and only
rank 0 writes files; checkpoints carry every rank's RNG state and partial epoch sums.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import shutil
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from genesis_rna.allocator import active_allocator, tcmalloc_library
from genesis_rna.ast_controller import ASTController
from genesis_rna.atomic import atomic_open, atomic_path
from genesis_rna.checkpoint import (
    CheckpointManager,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from genesis_rna.data import (
    BucketBatchSampler,
    RNADataset,
    make_loader,
    micro_batch_rows,
    model_inputs,
    subset_batch,
)
from genesis_rna.decoding import TUNE_THRESHOLDS, batch_candidates, tune_threshold
from genesis_rna.distributed import Distributed, init_from_env, shutdown
from genesis_rna.epoch_stats import EpochStats, true_pairs
from genesis_rna.errors import ConfigError, GenesisError
from genesis_rna.losses import MultiTaskLoss
from genesis_rna.metrics_logger import MetricsLogger
from genesis_rna.model import GenesisRNA
from genesis_rna.packed import PackedSplit, prepare_split
from genesis_rna.rank_sync import (
    candidate_rows,
    gather_candidates,
    merged_sample_losses,
    rank_share,
    rank_states,
    restore_rank_state,
)
from genesis_rna.runtime import autocast_for, resolve_runtime
from genesis_rna.schedule import get_lr_scheduler
from genesis_rna.tasks import TASKS
from genesis_rna.tokenization import Tokenizer
from genesis_rna.train_config import TrainConfig, config_from_args, semantic_config

CHECKPOINT_FORMAT = 1
# lowest pair probability considered when tuning the threshold: the lowest of any decoder's grid
TUNE_MIN_PROB = min(min(grid) for grid in TUNE_THRESHOLDS.values())


def file_sha1(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TrainingDivergedError(GenesisError, RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient."""


class TrainingInterrupted(GenesisError, RuntimeError):
    """SIGINT or SIGTERM arrived; a checkpoint was saved at the next step boundary."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def _flat(cfg: dict) -> dict:
    """A config dict with the model's keys as model.<key>, for naming what changed."""
    model = cfg.get("model") or {}
    return {**{k: v for k, v in cfg.items() if k != "model"},
            **{f"model.{k}": v for k, v in model.items()}}


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class Trainer:
    def __init__(self, cfg: TrainConfig, dist: Distributed | None = None):
        self.cfg = cfg
        self.dist = dist or Distributed()
        world, rank = self.dist.world_size, self.dist.rank
        self.out_dir = Path(cfg.output_dir)
        self.device, self.precision = resolve_runtime(cfg.device, cfg.mixed_precision)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        torch.set_num_threads(cfg.resolved_threads(self.dist.local_world_size))
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)

        data_dir = Path(cfg.data_path)
        # packed splits (memory maps shared by ranks and loader workers); a folder of tables is
        # packed once into output_dir/packed_data, by rank 0 while the others wait
        packs = [prepare_split(data_dir, split, self.out_dir / "packed_data",
                               write=self.dist.is_main, log=self.log) for split in ("train", "val")]
        self.dist.barrier()
        self.train_data, self.val_data = (PackedSplit(p) for p in packs)
        self.data_fingerprint = f"{self.train_data.fingerprint()}:{self.val_data.fingerprint()}"
        if len(self.train_data) == 0:
            raise ConfigError("data_path", f"{packs[0]} (train) has no rows")
        if len(self.val_data) == 0:
            raise ConfigError("data_path", f"{packs[1]} (val) has no rows")
        self.tokenizer = Tokenizer()
        self.model_config = cfg.model
        self.model = GenesisRNA(self.model_config).to(self.device)  # identical init on all ranks
        if cfg.init_from:  # a fine-tune resumes only from the same starting weights
            self.data_fingerprint += f":init={self._load_init_weights()}"
        self.frozen_heads = self._freeze_unweighted_heads()
        self.model.pair_head.checkpointing = cfg.activation_checkpointing
        self.ddp_model: torch.nn.Module = self.model  # what the training forward goes through
        if self.dist.enabled:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            # dropout masks must differ between ranks (they see different samples)
            torch.manual_seed(cfg.seed + 1_000_003 * (rank + 1))

        # global batches: batch_size per rank x ranks, built as one process would build them
        global_batch = cfg.batch_size * world
        # With AST, each step draws batch_size / target candidates and trains the ~batch_size
        # selected ones: the trained batch keeps its configured size (small sub-batches waste
        # per-step overhead and would eat the savings) and an epoch takes `target` as many steps.
        train_batch = (math.ceil(global_batch / cfg.ast_target_activation) if cfg.use_ast
                       else global_batch)
        self.train_sampler = BucketBatchSampler(self.train_data.lengths, train_batch, cfg.seed,
                                                shuffle=True, rank=rank, world_size=world)
        self.val_sampler = BucketBatchSampler(self.val_data.lengths, global_batch, cfg.seed,
                                              shuffle=False, rank=rank, world_size=world)
        pin = self.device.type == "cuda"
        max_len = self.model_config.max_len
        self.train_loader = make_loader(
            RNADataset(self.train_data, max_len, cfg.mask_prob, cfg.seed, train=True),
            self.train_sampler, max_len, cfg.bucket_multiple, cfg.num_workers, cfg.seed, pin)
        self.val_loader = make_loader(
            RNADataset(self.val_data, max_len, cfg.mask_prob, cfg.seed, train=False),
            self.val_sampler, max_len, cfg.bucket_multiple, cfg.num_workers, cfg.seed, pin)
        self.steps_per_epoch = self.train_sampler.num_batches()
        self.total_steps = self.steps_per_epoch * cfg.num_epochs

        trainable = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in trainable if p.dim() >= 2]
        no_decay = [p for p in trainable if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.learning_rate, betas=(0.9, 0.98), eps=1e-8)
        self.scheduler = get_lr_scheduler(self.optimizer, cfg.scheduler, cfg.warmup_steps,
                                          self.total_steps, cfg.min_lr_ratio)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.criterion = MultiTaskLoss(
            weights=cfg.loss_weights(), focal_alpha=cfg.focal_alpha, focal_gamma=cfg.focal_gamma,
            min_sep=cfg.pair_min_sep, use_focal=cfg.use_focal_loss_for_pairs)
        self.ast = (ASTController(len(self.train_data), cfg.ast_target_activation, cfg.ast_kp,
                                  cfg.ast_ki, cfg.ast_smoothing, selection=cfg.ast_selection,
                                  importance_mix=cfg.ast_importance_mix)
                    if cfg.use_ast else None)
        self.checkpoints = CheckpointManager(cfg.resolved_checkpoint_dir(), keep=2)

        # progress
        self.global_step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.epochs_completed = 0
        self.metrics_rows: list[dict[str, str]] = []  # the CSV rows so far (rank 0)
        self.wall_time = 0.0
        self.consecutive_nonfinite = 0
        self.stats = EpochStats()
        self.best_val_f1 = -1.0  # val pair F1 after decoding: model_best.pt is that epoch's
        self.best_epoch = 0
        self.stop_signal: int | None = None  # set by the SIGINT/SIGTERM handler

    # ----------------------------------------------------------------- fine-tuning
    def _load_init_weights(self) -> str:
        """Copy the weights (only) of ``init_from`` into the model; its architecture must
        match this config's. Optimizer, schedule, AST and RNG start fresh."""
        path = Path(self.cfg.init_from)
        if not path.is_file():
            raise ConfigError("init_from", f"{path} not found")
        try:
            state = load_checkpoint(path)
            theirs, weights = dict(state["model_config"]), state["model"]
        except (KeyError, TypeError) as exc:  # loadable, but not a model (load errors: typed)
            raise ConfigError("init_from", f"{path} is not a Genesis RNA model ({exc})") from None
        ours = self.model_config.to_dict()
        # RoPE and the distance buckets do not depend on max_len; thermodynamic input layers
        # start at zero in a model that adds them (GenesisRNA.load_pretrained)
        free = {"dropout", "max_len", "thermo_features", "thermo_parameter_sets"}
        differ = sorted(k for k in ours if k not in free and list(np.atleast_1d(ours[k]))
                        != list(np.atleast_1d(theirs.get(k))))
        if differ:
            detail = ", ".join(f"{k}: {theirs.get(k)} there, {ours[k]} here" for k in differ)
            raise ConfigError("init_from", f"{path} has another architecture ({detail}); set "
                              "model_size and the model keys to the pretrained model's")
        fresh = self.model.load_pretrained(weights)
        self.log(f"initialized from the weights of {path} (fresh optimizer, schedule and AST)"
                 + (f"; new at zero: {', '.join(fresh)}" if fresh else ""))
        return file_sha1(path)

    def _freeze_unweighted_heads(self) -> list[str]:
        """A head whose loss weight is 0 does not train (fine-tuning chooses heads this way)."""
        weights = self.cfg.loss_weights()
        frozen = [task.head for task in TASKS if weights[task.name] == 0]
        for name in frozen:
            getattr(self.model, name).requires_grad_(False)
        return frozen

    # ----------------------------------------------------------------- output (rank 0 only)
    def log(self, message: str) -> None:
        if self.dist.is_main:
            tqdm.write(message)

    def warn(self, message: str) -> None:
        if self.dist.is_main:
            warnings.warn(message, stacklevel=2)

    # ----------------------------------------------------------------- state
    def resolved_config(self) -> dict:
        return self.cfg.to_dict()

    def state_dict(self) -> dict:
        """The full training state; a collective under DDP (every rank must call it)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.resolved_config(),
            "data_fingerprint": self.data_fingerprint,
            "world_size": self.dist.world_size,
            "model_config": self.model_config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "rank_states": rank_states(self.dist, self.stats, self.ast, self.device),
            "ast": self.ast.state_dict() if self.ast else None,
            "progress": {
                "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "global_step": self.global_step, "epochs_completed": self.epochs_completed,
                "wall_time_s": self.wall_time, "consecutive_nonfinite": self.consecutive_nonfinite,
                "best_val_f1": self.best_val_f1, "best_epoch": self.best_epoch,
            },
            "epoch_stats": self.stats.state(),
            # the metrics rows so far, so a resumed run can rewrite training_metrics.csv
            "metrics_rows": list(self.metrics_rows),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ast:
            self.ast.load_state_dict(state["ast"])
        p = state["progress"]
        self.epoch, self.batch_in_epoch = int(p["epoch"]), int(p["batch_in_epoch"])
        self.global_step, self.epochs_completed = int(p["global_step"]), int(p["epochs_completed"])
        self.wall_time = float(p["wall_time_s"])
        self.consecutive_nonfinite = int(p["consecutive_nonfinite"])
        self.best_val_f1 = float(p.get("best_val_f1", -1.0))
        self.best_epoch = int(p.get("best_epoch", 0))
        restore_rng_state(state["rng"])
        if self.dist.enabled:
            self.stats = restore_rank_state(state["rank_states"][self.dist.rank], self.device)
        else:
            self.stats = EpochStats(state["epoch_stats"])
        self.metrics_rows = [dict(r) for r in state.get("metrics_rows", [])]

    def save(self) -> Path:
        state = self.state_dict()
        path = self.checkpoints.path_for(self.global_step)
        if self.dist.is_main:
            path = self.checkpoints.save(self.global_step, state)
            tqdm.write(f"checkpoint: {path} (epoch {self.epoch + 1}, batch {self.batch_in_epoch})")
        return path

    # ----------------------------------------------------------------- stopping on a signal
    def _on_signal(self, signum: int, frame) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            self.log(f"received {signal.Signals(signum).name}: saving a checkpoint at the end of "
                     "this step, then stopping (send it again to stop at once)")
        else:  # a second signal: the user insists
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def _stop_requested(self) -> bool:
        """Whether any rank got a signal (collective under DDP: all ranks stop together)."""
        local = 0 if self.stop_signal is None else int(self.stop_signal)
        if not self.dist.enabled:
            return bool(local)
        agreed = int(self.dist.all_reduce(torch.tensor([local], dtype=torch.float64), op="max")[0])
        if agreed and self.stop_signal is None:
            self.stop_signal = agreed
        return bool(agreed)

    def _stop(self) -> None:
        path = self.save()
        name = signal.Signals(self.stop_signal).name
        raise TrainingInterrupted(
            self.stop_signal, f"stopped by {name} at step {self.global_step} (epoch "
            f"{self.epoch + 1}, batch {self.batch_in_epoch}); checkpoint saved to {path}. Run "
            "the same command again to resume exactly from it.")

    def _progress_line(self, t_start: float, start_batch: int) -> str:
        done = self.batch_in_epoch - start_batch
        left_epoch = self.steps_per_epoch - self.batch_in_epoch
        left = left_epoch + self.steps_per_epoch * (self.cfg.num_epochs - self.epoch - 1)
        elapsed = time.perf_counter() - t_start
        eta = elapsed / max(done, 1) * left
        loss = self.stats.v["loss"] * self.dist.world_size / self.stats.finite_steps()
        act = f"{self.ast.epoch_activation_rate():.2f}" if self.ast else "1 (AST off)"
        rate = self.stats.v["tokens"] / self.stats.v["compute_s"] if self.stats.v["compute_s"] else 0
        return (f"[progress] epoch {self.epoch + 1}/{self.cfg.num_epochs} step "
                f"{self.batch_in_epoch}/{self.steps_per_epoch} (global {self.global_step}/"
                f"{self.total_steps}) | loss {loss:.4f} | activation {act} | lr "
                f"{self.scheduler.get_last_lr()[0]:.2e} | {rate:.0f} nt/s | elapsed "
                f"{_duration(elapsed)} | ETA {_duration(eta)}")

    def _mismatch(self, path: Path, state: dict) -> str | None:
        """Why a checkpoint (or finished model) does not continue this run; None if it does."""
        if state.get("data_fingerprint") != self.data_fingerprint:
            return f"checkpoint {path} was made on different train/val data"
        if state.get("world_size", 1) != self.dist.world_size:
            return (f"checkpoint {path} was made with {state.get('world_size', 1)} process(es), "
                    f"this run has {self.dist.world_size} (the global batch differs)")
        if state.get("format") != CHECKPOINT_FORMAT:
            return f"checkpoint {path} has format {state.get('format')}, not {CHECKPOINT_FORMAT}"
        try:
            theirs = semantic_config(state["config"])
        except ConfigError as exc:  # a config this code no longer reads
            return f"checkpoint {path} was made with a config this version cannot read ({exc})"
        ours = semantic_config(self.resolved_config())
        if theirs != ours:
            changed = sorted(k for k, v in _flat(ours).items() if _flat(theirs).get(k) != v)
            return f"checkpoint {path} was made with a different config (changed: {changed})"
        return None

    def try_resume(self) -> bool:
        if not self.cfg.resume:
            if self.dist.is_main and self.checkpoints.list():
                print(f"--no-resume: removing old checkpoints in {self.checkpoints.directory}")
                self.checkpoints.clear()
            return False
        found = self.checkpoints.load_latest()  # every rank reads the same file
        reason = None if found is None else self._mismatch(*found)
        self.dist.barrier()  # no rank is still reading when rank 0 deletes
        resumed = False
        if found is not None and reason is not None:
            self.warn(f"{reason}; starting from scratch and removing old checkpoints")
            if self.dist.is_main:
                self.checkpoints.clear()
        elif found is not None:
            self.load_state_dict(found[1])
            resumed = True
        where = self.dist.all_gather(torch.tensor([self.global_step if resumed else -1]))
        if any(int(w) != int(where[0]) for w in where):
            raise RuntimeError(f"ranks disagree on the checkpoint to resume from: {where}")
        if resumed:
            self.log(f"resumed from {found[0]}: epoch {self.epoch + 1}, batch "
                     f"{self.batch_in_epoch}/{self.steps_per_epoch}, step {self.global_step}")
        return resumed

    # ----------------------------------------------------------------- training
    def _select(self, batch: dict, placeholder: bool
                ) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
        """AST's choice: the batch cut to the samples to train, this rank's counts for the
        controller (samples, selected, nt, nt skipped; zeros without AST or on a placeholder)
        and the trained samples' loss weights (importance selection; else None).
        The skipped samples get no forward or backward at all."""
        if not self.ast or placeholder:
            return batch, torch.zeros(4, dtype=torch.float64), None
        chosen = self.ast.choose(batch["index"])
        counts = ASTController.batch_counts(chosen, batch["lengths"])
        weights = self.ast.sample_weights(batch["index"], chosen)
        if not chosen.all():
            rows = torch.nonzero(chosen).squeeze(1)
            batch = subset_batch(batch, rows, self.cfg.bucket_multiple)
        return batch, counts, weights

    def _micro_batches(self, batch: dict, weights: torch.Tensor | None
                       ) -> list[tuple[dict, torch.Tensor | None]]:
        """The batch as micro-batches of at most ``max_step_cells`` pair-map cells each (one:
        the batch itself), with their rows' AST weights."""
        groups = micro_batch_rows(batch["lengths"], batch["tokens"].shape[1],
                                  self.cfg.max_step_cells, self.cfg.bucket_multiple)
        if len(groups) == 1:
            return [(batch, weights)]
        return [(subset_batch(batch, rows, self.cfg.bucket_multiple),
                 None if weights is None else weights[rows]) for rows in groups]

    def train_step(self, batch: dict) -> None:
        cfg, dist = self.cfg, self.dist
        # a rank left without samples by a short last batch trains a stand-in at zero weight
        placeholder = dist.enabled and self.train_sampler.is_placeholder(self.batch_in_epoch)
        batch, ast_counts, weights = self._select(batch, placeholder)
        parts = self._micro_batches(batch, weights)
        no_counts = torch.zeros(len(TASKS), dtype=torch.float64)
        local = total = None
        if dist.enabled or len(parts) > 1:
            local = no_counts if placeholder else self.criterion.counts(batch, weights)
            total = local
        if dist.enabled:
            summed = dist.all_reduce(torch.cat([ast_counts, local]))
            ast_counts, total = summed[:4], summed[4:]
        if self.ast:  # every rank steps the controller with the global counts
            self.ast.observe(*(int(x) for x in ast_counts))
        # Each micro-batch's loss is its share of the batch loss (rank_share: its sums over the
        # whole batch's units, all ranks' under DDP), so the gradients accumulated over the
        # micro-batches are the batch's. Under DDP only the last backward all-reduces.
        done, finite = [], True
        for k, (part_batch, part_weights) in enumerate(parts):
            last = k == len(parts) - 1
            part_batch = _to(part_batch, self.device)
            if part_weights is not None:
                part_weights = part_weights.to(self.device)
            sync = (self.ddp_model.no_sync() if dist.enabled and not last
                    else contextlib.nullcontext())
            with sync:
                with autocast_for(self.device, self.precision):
                    out = self.ddp_model(**model_inputs(part_batch, self.model_config))
                loss = self.criterion(out, part_batch, part_weights)
                if total is None:
                    objective, values = loss.total, None
                else:
                    counts = (no_counts if placeholder
                              else self.criterion.counts(part_batch, part_weights))
                    objective, values = rank_share(loss, counts, total)
                    objective = objective * dist.world_size  # DDP averages gradients over ranks
                finite = finite and bool(torch.isfinite(objective))
                if last and dist.enabled:
                    # one rank's non-finite loss skips the step everywhere (no rank may skip
                    # the synced backward alone: DDP's all-reduce would wait for it forever)
                    finite = bool(dist.all_reduce(torch.tensor([finite]), op="min")[0])
                if finite:
                    self.scaler.scale(objective).backward()
            # what the statistics and AST need, without the graph (freed by backward, or now)
            done.append((part_batch, {key: v.detach() for key, v in out.items()},
                         values or loss.values(), loss.per_sample))
            del out, loss, objective
        if finite:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            if self.precision == "fp16":
                self.scaler.step(self.optimizer)  # skips the step itself on inf gradients
                self.scaler.update()
            elif torch.isfinite(grad_norm):  # gradients are all-reduced: same verdict everywhere
                self.optimizer.step()
            else:
                finite = False
        self.optimizer.zero_grad(set_to_none=True)
        if finite:
            self.consecutive_nonfinite = 0
            if self.ast:
                self._record_ast(done, placeholder)
            if placeholder:
                self.stats.v["steps"] += 1
            else:
                for k, (part_batch, out, values, _) in enumerate(done):
                    self.stats.add_batch(out, values, part_batch,
                                         cfg.pair_threshold, cfg.pair_min_sep, cfg.pair_decoder,
                                         new_step=k == 0)
        else:
            self.stats.v["steps"] += 1
            self.stats.v["nonfinite"] += 1
            self.consecutive_nonfinite += 1
            self.log(f"warning: non-finite loss or gradient at step {self.global_step}; "
                     f"step skipped ({self.consecutive_nonfinite} in a row)")
            if self.consecutive_nonfinite >= cfg.max_nonfinite_steps:
                raise TrainingDivergedError(
                    f"{self.consecutive_nonfinite} consecutive non-finite steps (limit "
                    f"max_nonfinite_steps={cfg.max_nonfinite_steps}); training diverged. Try a "
                    "lower learning_rate, more warmup_steps, or mixed_precision fp32/bf16.")
        self.scheduler.step()
        self.global_step += 1
        self.batch_in_epoch += 1

    def _record_ast(self, done: list, placeholder: bool) -> None:
        """Loss memory update from the step's micro-batches (batch, out, values, per-sample
        losses); under DDP every rank records the losses of all ranks' samples."""
        index = torch.cat([part_batch["index"] for part_batch, *_ in done])
        per_sample = torch.cat([losses for *_, losses in done])
        if not self.dist.enabled:
            self.ast.record(index, per_sample)
            return
        self.ast.record(*merged_sample_losses(self.dist, index, per_sample, placeholder))

    def train_epoch(self) -> dict:
        cfg = self.cfg
        if self.batch_in_epoch == 0:
            self.stats = EpochStats()
            if self.ast:
                self.ast.reset_epoch()
        self.model.train()
        self.train_sampler.set_epoch(self.epoch, self.batch_in_epoch)
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch_in_epoch,
                   desc=f"epoch {self.epoch + 1}/{cfg.num_epochs}",
                   disable=not (cfg.progress and self.dist.is_main), dynamic_ncols=True)
        with bar:
            # wall time per step includes waiting for the loader: a loader-bound run shows
            # it in tokens_per_s and wall_time_s instead of hiding it
            t0 = t_start = last_line = time.perf_counter()
            start_batch = self.batch_in_epoch
            lines = not cfg.progress and self.dist.is_main  # no bar: lines in the log instead
            for batch in self.train_loader:
                self.train_step(batch)
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                t1 = time.perf_counter()
                dt, t0 = t1 - t0, t1
                self.stats.v["compute_s"] += dt
                self.wall_time += dt
                bar.update(1)
                # under DDP rank 0 holds its share of each global-batch loss: scaled, an estimate
                shown = self.stats.v["loss"] * self.dist.world_size / self.stats.finite_steps()
                bar.set_postfix(loss=f"{shown:.3f}",
                                act=f"{self.ast.epoch_activation_rate():.2f}" if self.ast else "1",
                                lr=f"{self.scheduler.get_last_lr()[0]:.2e}", refresh=False)
                if self.global_step % cfg.save_every_steps == 0:
                    self.save()
                if lines and (t1 - last_line >= cfg.log_every_s or
                              self.batch_in_epoch in (start_batch + 1, self.steps_per_epoch)):
                    last_line = t1
                    self.log(self._progress_line(t_start, start_batch))
                if self._stop_requested():
                    self._stop()
        row = self.stats.reduced(self.dist).row()
        act = self.ast.epoch_activation_rate() if self.ast else 1.0
        skipped = self.ast.epoch_samples - self.ast.epoch_selected if self.ast else 0
        return {**row, "activation_rate": act, "samples_skipped": skipped,
                "nonfinite_steps": int(self.stats.v["nonfinite"])}

    @torch.no_grad()
    def evaluate(self, collect: bool = False) -> tuple[dict, list, list]:
        """Validation metrics (sharded over ranks, then reduced); with ``collect`` also the
        candidates for threshold tuning, in the global validation order (complete on rank 0)."""
        dist = self.dist
        self.model.eval()
        stats = EpochStats()
        cands, truths = [], []
        cand_rows, truth_rows = [], []
        t0 = time.perf_counter()
        self.val_sampler.set_epoch(0)
        for k, batch in enumerate(self.val_loader):
            batch = _to(batch, self.device)
            values = None
            if dist.enabled:
                placeholder = self.val_sampler.is_placeholder(k)
                local = (torch.zeros(len(TASKS), dtype=torch.float64) if placeholder
                     else self.criterion.counts(batch))
                total = dist.all_reduce(local)
                if placeholder:
                    stats.v["steps"] += 1
                    continue
            with autocast_for(self.device, self.precision):
                out = self.model(**model_inputs(batch, self.model_config))
            loss = self.criterion(out, batch)
            if dist.enabled:
                _, values = rank_share(loss, local, total)
            stats.add_batch(out, values or loss.values(), batch, self.cfg.pair_threshold,
                            self.cfg.pair_min_sep, self.cfg.pair_decoder)
            if collect:
                # the tuned threshold serves inference, which sees unmasked sequences: tune it
                # on an unmasked forward (the masked one above serves the MLM metrics)
                with autocast_for(self.device, self.precision):
                    clean = self.model(**model_inputs(batch, self.model_config, "seq_tokens"))
                c = batch_candidates(clean["pair_logits"], batch["seq_tokens"],
                                     batch["nucleotide_mask"], TUNE_MIN_PROB,
                                     self.cfg.pair_min_sep)
                t = true_pairs(batch)
                if not dist.enabled:
                    cands.extend(c)
                    truths.extend(t)
                    continue
                rows = candidate_rows(self.val_sampler.shard_positions(k), c, t)
                cand_rows.extend(rows[0])
                truth_rows.extend(rows[1])
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        stats.v["compute_s"] = time.perf_counter() - t0
        self.model.train()
        if collect and dist.enabled:
            cands, truths = gather_candidates(dist, cand_rows, truth_rows, len(self.val_data))
        return stats.reduced(dist).row(), cands, truths

    def _print_epoch(self, train: dict, val: dict) -> None:
        for phase, r in (("train", train), ("val", val)):
            terms = ", ".join(f"{t.name} {r[t.loss_column]:.4f}" for t in TASKS)
            self.log(
                f"[epoch {self.epoch + 1} {phase}] loss {r['loss']:.4f} ({terms}) | pair F1 "
                f"{r['pair_f1']:.3f} P {r['pair_precision']:.3f} R {r['pair_recall']:.3f} | "
                f"struct acc {r['structure_accuracy']:.3f} | MLM acc {r['mlm_accuracy']:.3f} | "
                f"{r['tokens_per_s']:.0f} nt/s, {r['epoch_time_s']:.1f} s")
        self.log(self.ast.summary() if self.ast else "AST: off (all samples trained)")
        if self.ast and self.dist.enabled:  # every rank: shows the controllers agree
            print(f"[rank {self.dist.rank}] AST controller: threshold {self.ast.threshold!r} "
                  f"integral {self.ast.integral!r} draws {self.ast.draws}", flush=True)

    def write_run_config(self) -> None:
        resolved = {**self.resolved_config(),
                    "resolved": {"device_used": str(self.device), "precision_used": self.precision,
                                 "threads_used": torch.get_num_threads(),
                                 "world_size": self.dist.world_size,
                                 "global_batch_size": self.cfg.batch_size * self.dist.world_size,
                                 "ddp_backend_used": self.dist.backend,
                                 "checkpoint_dir_used": str(self.checkpoints.directory),
                                 "torch_version": str(torch.__version__),
                                 "n_parameters": self.model.num_parameters(),
                                 "frozen_heads": list(self.frozen_heads),
                                 "train_sequences": len(self.train_data),
                                 "val_sequences": len(self.val_data),
                                 "steps_per_epoch": self.steps_per_epoch}}
        with atomic_open(self.out_dir / "run_config.yaml", "w", encoding="utf-8") as fh:
            yaml.safe_dump(resolved, fh, sort_keys=False)

    def _final_model(self, val: dict, cands: list, truths: list, state: dict) -> dict:
        threshold, f1 = tune_threshold(cands, truths, self.cfg.pair_decoder)
        print(f"pair threshold tuned on validation for the {self.cfg.pair_decoder} decoder: "
              f"{threshold:.3f} (mean F1 {f1:.4f}; F1 {val['pair_f1']:.4f} at "
              f"{self.cfg.pair_threshold})")
        return {
            **state,
            "pair_threshold": threshold,
            "pair_threshold_val_f1": f1,
            "pair_decoder": self.cfg.pair_decoder,
            "precision_used": self.precision,
            "device_used": str(self.device),
            "training_state": {"global_step": self.global_step,
                               "epochs_completed": self.epochs_completed,
                               "wall_time_s": self.wall_time,
                               "val_metrics": {k: float(v) for k, v in val.items()}},
        }

    @property
    def best_weights_path(self) -> Path:
        return self.checkpoints.directory / "best_weights.pt"

    def _note_best(self, val: dict) -> None:
        """Keep the weights of the epoch with the best val pair F1 (after decoding)."""
        if not val["pair_f1"] > self.best_val_f1:
            return
        self.best_val_f1, self.best_epoch = float(val["pair_f1"]), self.epoch + 1
        if self.dist.is_main:
            self.checkpoints.directory.mkdir(parents=True, exist_ok=True)
            save_checkpoint(self.best_weights_path, {"model": self.model.state_dict(),
                                                     "epoch": self.best_epoch,
                                                     "val_pair_f1": self.best_val_f1})

    def finish(self) -> Path:
        """model.pt (the last epoch, full training state) and model_best.pt (the epoch with the
        best val pair F1, inference contents only), each with its own tuned threshold."""
        val, cands, truths = self.evaluate(collect=True)
        state = self.state_dict()  # collective: every rank takes part
        path, best_path = self.out_dir / "model.pt", self.out_dir / "model_best.pt"
        last = self.epochs_completed
        if self.dist.is_main:
            # the full training state too, so the final file alone can continue training
            # exactly (DESIGN.md, model contract)
            save_checkpoint(path, self._final_model(val, cands, truths, state))
        best_is_last = self.best_epoch in (0, last) or not self.best_weights_path.exists()
        if not best_is_last:
            self.dist.barrier()  # rank 0 wrote the best weights long ago; all ranks read them
            self.model.load_state_dict(load_checkpoint(self.best_weights_path,
                                                       map_location=self.device)["model"])
            b_val, b_cands, b_truths = self.evaluate(collect=True)
        if self.dist.is_main:
            if best_is_last:
                with atomic_path(best_path) as tmp:
                    shutil.copyfile(path, tmp)
            else:
                keep = ("format", "config", "data_fingerprint", "world_size", "model_config",
                        "tokenizer", "model")
                best = self._final_model(b_val, b_cands, b_truths,
                                         {k: state[k] for k in keep})
                best["model"] = self.model.state_dict()
                best["training_state"]["best_epoch"] = self.best_epoch
                save_checkpoint(best_path, best)
            self.log(f"{path.name}: the last epoch ({last}); {best_path.name}: epoch "
                     f"{self.best_epoch or last}, the best val pair F1 "
                     f"({max(self.best_val_f1, 0):.4f} at {self.cfg.pair_threshold})"
                     + (" - the same model" if best_is_last else ""))
        return path

    def run(self) -> Path:
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        model_path = self.out_dir / "model.pt"
        if cfg.resume and model_path.exists():
            try:
                done = load_checkpoint(model_path)
                if (self._mismatch(model_path, done) is None
                        and (self.out_dir / "model_best.pt").exists()):
                    self.log(f"training already finished: {model_path} matches this config; "
                             "nothing to do (pass --no-resume to retrain)")
                    return model_path
            except Exception as exc:
                self.warn(f"{model_path} is unreadable ({exc}); training again")
        resumed = self.try_resume()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, self._on_signal)
        metrics = None
        if self.dist.is_main:
            metrics = MetricsLogger(self.out_dir / "training_metrics.csv",
                                    rows=self.metrics_rows if resumed else None)
            self.metrics_rows = metrics.rows  # the logger appends; checkpoints save the list
            self.write_run_config()
        ranks = (f", {self.dist.world_size} processes ({self.dist.backend}), global batch "
                 f"{cfg.batch_size * self.dist.world_size}" if self.dist.enabled else "")
        ast = (f"on, target {cfg.ast_target_activation}, {cfg.ast_selection} selection"
               if cfg.use_ast else "off")
        self.log(f"device {self.device}, precision {self.precision}, threads "
                 f"{torch.get_num_threads()}{ranks}, model {cfg.model_size} "
                 f"({self.model.num_parameters() / 1e6:.2f} M parameters), "
                 f"{len(self.train_data)} train / {len(self.val_data)} val sequences, "
                 f"{self.steps_per_epoch} steps per epoch, AST "
                 f"{ast}, "
                 f"{'from ' + cfg.init_from if cfg.init_from else 'random init'}"
                 f"{', frozen ' + '/'.join(self.frozen_heads) if self.frozen_heads else ''}, "
                 f"allocator {active_allocator()}")
        if self.device.type == "cpu" and active_allocator() == "glibc malloc":
            lib = tcmalloc_library()
            self.log("note: glibc malloc fragments on the changing batch shapes (resident memory "
                     "grows); " + (f"run with LD_PRELOAD={lib} (the workflow does)" if lib else
                                   "install tcmalloc (gperftools / libtcmalloc-minimal4) and "
                                   "preload it (the workflow does when it is installed)"))
        while self.epoch < cfg.num_epochs:
            train = self.train_epoch()
            lr = self.scheduler.get_last_lr()[0]
            t_eval = time.perf_counter()
            val, _, _ = self.evaluate()
            self.wall_time += time.perf_counter() - t_eval
            common = {"epoch": self.epoch + 1, "step": self.global_step, "learning_rate": lr,
                      "wall_time_s": self.wall_time}
            if metrics is not None:
                metrics.log({**common, "phase": "train", **train})
                metrics.log({**common, "phase": "val", **val,
                             "activation_rate": train["activation_rate"], "samples_skipped": 0,
                             "nonfinite_steps": 0})
            self._print_epoch(train, val)
            self._note_best(val)
            self.epochs_completed = self.epoch + 1
            self.epoch += 1
            self.batch_in_epoch = 0
            self.stats = EpochStats()
            self.save()
            if self._stop_requested():  # arrived during validation: the checkpoint is saved
                self._stop()
        path = self.finish()
        self.log(f"wrote {path}, {self.out_dir / 'model_best.pt'}, "
                 f"{self.out_dir / 'training_metrics.csv'}, "
                 f"{self.out_dir / 'run_config.yaml'}")
        return path


def main(argv: list[str] | None = None) -> int:
    dist = Distributed()
    try:
        cfg = config_from_args(argv)
        dist = init_from_env(cfg.ddp_backend, cfg.device)
        Trainer(cfg, dist).run()
        dist.barrier()  # rank 0 has written model.pt before any rank reports success
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 128 + exc.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, file-size limit, unwritable folder
        print(f"error: cannot write training outputs: {exc}", file=sys.stderr)
        return 1
    finally:
        shutdown(dist)
    return 0


if __name__ == "__main__":
    from genesis_rna.allocator import reexec_with_tcmalloc

    reexec_with_tcmalloc("genesis_rna.train_pretrain")  # glibc malloc fragments (allocator.py)
    sys.exit(main())
