"""Throughput benchmarks for the data stages (prints a table, writes JSON). Not a test.

    python -m genesis_rna.bench parse annotate [--fasta FILE] [--json results/bench.json]
    python -m genesis_rna.bench scale [--scale_sizes 1,10,50] [--annotations FILE]

parse     FASTA records/s and peak RSS for FILE and for a 10x larger file made from it
          (peak RSS must not grow with corpus size: the stage streams).
annotate  sequences/s of the annotate stage (1 shard, 1 process) against raw ``RNA.fold`` on
          the same sequences (the stage's overhead), and 2 shards on 2 cores against 1.
train     real (non-padding) nucleotides/s of forward+backward+step for a model size on a split
          (``--split_dir``, e.g. results/realdata/split): this model (bf16 where native, length buckets)
          against the earlier design (``baseline_model``: same dimensions, fp32, padded to
          512) on the same batches, in ``--train_rounds`` alternating rounds of
          ``--train_steps`` steps; the speedup per round, counted GFLOP/s and MFU against the
          faster of a bf16 and an fp32 matmul measured on the same device (``--device``: CPU
          at the same thread count, or CUDA). ``--train_ast off,on`` also times the trainer
          CLI itself (``--train_config``: its loader workers, pinned memory, AST selection,
          micro-batches, GradScaler) for ``--train_steps`` steps after ``--train_warmup``,
          AST off and on: trained nt/s (loader waits included), the AST activation, and MFU
          against the measured bf16 matmul from the FLOPs per trained nt of a few more steps.
ast       the trainer CLI (``--train_config``, ``--model_size``) on ``--ast_train_rows``
          sequences of the split: AST off for ``--ast_epochs`` epochs and AST on in each
          selection mode (threshold, importance) for about the same wall-clock budget
          (``--ast_on_epochs``, default ast_epochs / target activation), all started at once
          with ``--ast_threads`` threads each (the same machine load for every run). Per run:
          val (held-out) pair F1 and MLM accuracy after every epoch against cumulative
          training seconds (plotted to ``--plot``, default ast_curves.png beside the JSON),
          epoch time against AST off, when each AST run reaches AST off's final val pair F1
          and MLM accuracy (fraction of AST off's time), the tuned-threshold F1, peak RSS.
decode    nested MEA against greedy decoding of one model's pair probabilities
          (``--checkpoint``): each decoder's threshold tuned on the val split (``--split_dir``),
          then mean per-sequence pair F1 and decoding wall time on each ``--benchmark
          NAME=PATH`` (sequences <= ``--decode_max_length`` nt). The model runs once per set;
          only decoding is timed.
scale     how memory and time grow with the corpus (the sections of SCALE_SECTIONS, each also
          runnable alone, e.g. ``bench scale_parse``), on corpora made on the fly in a temp
          folder from the Rfam seed file: ``--scale_sizes`` copies (default 1, 10, 50), every
          copy after the first with seeded point mutations so records are neither duplicate
          ids nor exact duplicates.
  scale_parse   parse records/s and peak RSS per size (must stay flat: duplicates are found
                on disk, ``genesis_rna.dedup``)
  scale_mmseqs  peak RSS of MMseqs2 (its process tree) for clustering and the decontamination
                search on the real-data corpus (``--annotations``), without and with each
                ``--mmseqs_limits`` value of ``split.memory_limit``
  scale_pack    pack_split time, size on disk and peak RSS per size (split tables built from
                the seed file's comparative structures, ``--structures``), and packing a
                ``--loader_sequences`` synthetic split directly
  scale_loader  loader peak RSS per process (main + 2 workers) on the packed real-data train
                split and on that synthetic split (``genesis_rna.loader_memory``)
  scale_train   the trainer's peak RSS (``--model_size``, tcmalloc when installed, as the
                workflow runs it) for one epoch on ``--scale_train_rows`` rows of the split,
                and over ``--scale_train_steps`` steps on the real-data train split against
                the same split tiled to ``--loader_sequences`` rows
Each measurement runs in a fresh Python process so peak RSS is its own (decode: in-process).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genesis_rna.atomic import write_json
from genesis_rna.seqio import read_fasta
from genesis_rna.tables import SEQUENCES, SPLITS, ParquetStreamWriter

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_FASTA = SHARED_DATA / "rfam14.9_seed.fasta.gz"
DEFAULT_STRUCTURES = SHARED_DATA / "rfam14.9_seed_structures.tsv.gz"
DEFAULT_BENCHMARKS = (SHARED_DATA / "archiveII_bpseq.tar.gz", SHARED_DATA / "bprna_vl0.csv.gz")
SCALE_SECTIONS = ("scale_parse", "scale_mmseqs", "scale_pack", "scale_loader", "scale_train")


def _child(argv: list[str]) -> None:
    """Run one measurement in this process and print its JSON result."""
    kind, *rest = argv
    extra: dict = {}
    t0 = time.perf_counter()
    if kind == "parse":
        from genesis_rna.fasta import parse_fasta

        src, out = Path(rest[0]), Path(rest[1])
        stats = parse_fasta(src, out / "s.parquet", out / "r.parquet", out / "s.json",
                            min_length=1, max_length=100_000, progress=False)
        n = stats["records_read"]
    elif kind == "rawfold":
        import RNA

        seqs = pq.read_table(rest[0], columns=["sequence"]).column(0).to_pylist()
        for s in seqs:
            RNA.fold(s)
        n = len(seqs)
    elif kind == "annotate":
        from genesis_rna.annotate import annotate_shard

        shard, out = Path(rest[0]), Path(rest[1])
        annotate_shard(shard, out / f"{shard.stem}.ann.parquet", out / f"{shard.stem}.rej.parquet",
                       threads=1, progress=False)
        n = pq.ParquetFile(shard).metadata.num_rows
    elif kind == "pack":
        from genesis_rna.packed import pack_table

        meta = pack_table(rest[0], rest[1])
        n = meta["n"]
        extra["size_on_disk_mb"] = _folder_mb(Path(rest[1]))
    elif kind == "mmseqs":
        n, extra = _mmseqs_child(json.loads(rest[0]))
    elif kind == "trainer_steps":
        n, extra = _trainer_steps_child(rest[0], rest[1], rest[2], rest[3], int(rest[4]))
    elif kind == "trainer_rate":
        n, extra = _trainer_rate_child(json.loads(rest[0]))
    else:
        raise SystemExit(f"unknown measurement {kind}")
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"records": n, "seconds": seconds, "peak_rss_mb": rss_mb, **extra}))


def _mmseqs_child(job: dict) -> tuple[int, dict]:
    """One MMseqs2 step of the split stage, as split_dataset runs it; the peak RSS of its
    process tree (RUSAGE_CHILDREN: the largest waited-for descendant) and what it found."""
    from genesis_rna import split
    from genesis_rna.errors import ConfigError

    annotations = Path(job["annotations"])
    n = pq.ParquetFile(annotations).metadata.num_rows
    out: dict = {"step": job["step"], "memory_limit": job["limit"]}
    with tempfile.TemporaryDirectory(prefix="genesis_bench_mmseqs_") as tmp:
        try:
            if job["step"] == "easy-linclust":
                members = split.mmseqs_clusters(
                    annotations, Path(tmp), mode="linclust", min_seq_id=0.8, coverage=0.8,
                    threads=job["threads"], memory_limit=job["limit"])
                out["clusters"] = len(set(members.values()))
            else:
                args = split.decontamination_search_args("sequence", 0.8, 0.5, 1e-3)
                hits = split.benchmark_hits(annotations, job["benchmarks"], Path(tmp),
                                            search_args=args, threads=job["threads"],
                                            memory_limit=job["limit"])
                out["sequences_with_hits"] = len(hits)
        except ConfigError as exc:
            out["error"] = str(exc)
    out["mmseqs_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return n, out


def _trainer_steps_child(config: str, data: str, out: str, model_size: str, steps: int
                         ) -> tuple[int, dict]:
    """The trainer as the CLI builds it (loader in this process with ``num_workers`` 0, AST
    controller, optimizer), then ``steps`` training steps of epoch 1: what a process of a
    run on this split holds, without waiting for an epoch of tens of millions of sequences."""
    from genesis_rna.train_config import config_from_args
    from genesis_rna.train_pretrain import Trainer

    cfg = config_from_args(["--config", config, "--data_path", data, "--output_dir", out,
                            "--model_size", model_size, "--no-progress", "--no-resume"])
    trainer = Trainer(cfg)
    trainer.train_sampler.set_epoch(0, 0)
    batches = iter(trainer.train_loader)
    nt = 0
    for _ in range(steps):
        batch = next(batches)
        nt += int(batch["lengths"].sum())
        trainer.train_step(batch)
    return len(trainer.train_data), {"steps": steps, "candidate_nt": nt}


def _trainer_rate_child(job: dict) -> tuple[int, dict]:
    """Trained nucleotides per second of the trainer as the CLI builds it (its loader with
    ``num_workers`` workers and pinned memory on CUDA, AST selection, micro-batches, GradScaler
    or bf16, on-device pair targets), loader waits included: ``warmup`` steps (untimed; AST's
    controller settles), ``steps`` timed steps, then ``flop_steps`` more under the FLOP counter
    for the FLOPs per trained nt (the MFU estimate: the timed steps' trained nt/s times that)."""
    import torch

    from genesis_rna.flops import counted_flops
    from genesis_rna.train_config import config_from_args
    from genesis_rna.train_pretrain import Trainer

    cfg = config_from_args(["--config", job["config"], "--data_path", job["data"],
                            "--output_dir", job["out"], "--model_size", job["model_size"],
                            "--use_ast" if job["ast"] else "--no-use_ast",
                            "--device", job["device"], "--no-progress", "--no-resume",
                            "--save_every_steps", "1000000000", *job["extra"]])
    trainer = Trainer(cfg)
    trainer.model.train()
    trainer.train_sampler.set_epoch(0, 0)
    cuda = trainer.device.type == "cuda"
    need = job["warmup"] + job["steps"] + job["flop_steps"]
    if trainer.steps_per_epoch < need:
        raise SystemExit(f"{job['data']}: {trainer.steps_per_epoch} steps per epoch; need {need}")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(trainer.device)

    batches = iter(trainer.train_loader)
    for _ in range(job["warmup"]):
        trainer.train_step(next(batches))
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    trained0, selected0 = trainer.stats.v["tokens"], trainer.ast.epoch_selected if trainer.ast else 0
    samples0 = trainer.ast.epoch_samples if trainer.ast else 0
    candidate_nt = 0
    t0 = time.perf_counter()
    for _ in range(job["steps"]):
        batch = next(batches)
        candidate_nt += int(batch["lengths"].sum())
        trainer.train_step(batch)
    sync()
    seconds = time.perf_counter() - t0
    trained = trainer.stats.v["tokens"] - trained0
    activation = ((trainer.ast.epoch_selected - selected0) / (trainer.ast.epoch_samples - samples0)
                  if trainer.ast else 1.0)
    flops = counted_tokens = 0
    for _ in range(job["flop_steps"]):
        batch = next(batches)
        before = trainer.stats.v["tokens"]
        flops += counted_flops(lambda b=batch: trainer.train_step(b))
        counted_tokens += trainer.stats.v["tokens"] - before
    extra = {"steps": job["steps"], "trained_nt": trained, "candidate_nt": candidate_nt,
             "trained_nt_per_s": trained / seconds, "candidate_nt_per_s": candidate_nt / seconds,
             "activation": activation, "precision": trainer.precision,
             "device": str(trainer.device), "batch_size": cfg.batch_size,
             "num_workers": cfg.num_workers,
             "flop_per_trained_nt": flops / counted_tokens if counted_tokens else 0.0,
             "timed_seconds": seconds}
    if cuda:
        extra["peak_gpu_mb"] = torch.cuda.max_memory_allocated(trainer.device) / 2**20
    return len(trainer.train_data), extra


def bench_train_trainer(split_dir: Path, train_config: Path, model_size: str, ast_modes: list[bool],
                        steps: int, warmup: int, device: str, work: Path, peak: float | None,
                        extra: tuple[str, ...] = (), flop_steps: int = 2) -> list[dict]:
    """The trainer's trained nt/s with AST on and off (``_trainer_rate_child``, one fresh
    process each, the same packed split), MFU against ``peak`` (FLOP/s, e.g. the measured
    bf16 matmul) when given."""
    rows = []
    for ast in ast_modes:
        job = {"config": str(train_config), "data": str(split_dir), "out": str(work / "trainer"),
               "model_size": model_size, "ast": ast, "device": device, "steps": steps,
               "warmup": warmup, "flop_steps": flop_steps, "extra": list(extra)}
        r = _measure("trainer_rate", json.dumps(job))
        mfu = (r["trained_nt_per_s"] * r["flop_per_trained_nt"] / peak) if peak else None
        rows.append({"bench": "train_trainer",
                     "mode": f"{model_size}, trainer CLI ({train_config.name}), AST "
                             f"{'on' if ast else 'off'}, {r['precision']}, {r['device']}",
                     "records": int(r["trained_nt"]), "seconds": r["timed_seconds"],
                     "records_per_s": r["trained_nt_per_s"],
                     **{k: v for k, v in r.items() if k not in ("records", "seconds")},
                     **({"mfu_vs_bf16_matmul": mfu} if mfu is not None else {})})
    return rows


def _folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def _measure(*args: str, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-m", "genesis_rna.bench", "_child", *args],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:  # say why: the child's last lines
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"measurement {args[0]} failed (exit {out.returncode}):\n{tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_parse(fasta: Path, work: Path) -> list[dict]:
    big = work / "x10.fasta.gz"
    with gzip.open(big, "wt", encoding="utf-8", compresslevel=1) as fout:
        for rep in range(10):
            # Rename records so the copies are not merged as duplicate ids; sequences stay the
            # same, so the 10x file also exercises exact-duplicate bookkeeping at scale.
            for rec in read_fasta(fasta):
                fout.write(f">r{rep}_{rec.title}\n{rec.sequence}\n")
    rows = []
    for label, path in (("1x", fasta), ("10x", big)):
        d = work / f"parse_{label}"
        d.mkdir()
        m = _measure("parse", str(path), str(d))
        rows.append({"bench": "parse", "input": label, **m, "records_per_s": m["records"] / m["seconds"]})
    return rows


def bench_annotate(fasta: Path, work: Path, n: int = 1200, max_len: int = 400) -> list[dict]:
    from genesis_rna.annotate import scatter_sequences
    from genesis_rna.fasta import parse_fasta

    d = work / "ann"
    d.mkdir()
    parse_fasta(fasta, d / "all.parquet", d / "rej.parquet", d / "stats.json",
                max_length=max_len, progress=False)
    table = pq.read_table(d / "all.parquet")
    step = max(1, table.num_rows // n)
    sample = table.take(pa.array(range(0, table.num_rows, step))[:n]).cast(SEQUENCES)
    pq.write_table(sample, d / "sample.parquet")
    raw = _measure("rawfold", str(d / "sample.parquet"))
    one = _measure("annotate", str(d / "sample.parquet"), str(d))
    halves = [d / "h1.parquet", d / "h2.parquet"]
    scatter_sequences(d / "sample.parquet", halves)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "genesis_rna.bench", "_child", "annotate",
                               str(h), str(d)], stdout=subprocess.PIPE) for h in halves]
    for p in procs:
        p.communicate()
    two_wall = time.perf_counter() - t0
    nseq = raw["records"]
    return [
        {"bench": "annotate", "mode": "raw RNA.fold, 1 core", "records": nseq, "seconds": raw["seconds"],
         "records_per_s": nseq / raw["seconds"]},
        {"bench": "annotate", "mode": "annotate stage, 1 shard", "records": nseq, "seconds": one["seconds"],
         "records_per_s": nseq / one["seconds"], "overhead_vs_raw": one["seconds"] / raw["seconds"] - 1},
        {"bench": "annotate", "mode": "annotate stage, 2 shards on 2 cores", "records": nseq,
         "seconds": two_wall, "records_per_s": nseq / two_wall, "speedup_vs_1": one["seconds"] / two_wall},
    ]


def bench_train(split_dir: Path, model_size: str, steps: int, rounds: int = 3,
                batch: int = 32, bucket_multiple: int = 8, profile_rows: int = 0,
                device: str = "cpu") -> list[dict]:
    """Training throughput against the earlier design, in alternating rounds, with MFU.

    Two setups train on the same batches of the split (epoch 0 of the length-bucketed
    sampler) on ``device`` (``cpu``, ``cuda``, ``auto``): this package's model (bf16 autocast
    where the device has native bf16, else fp32, as the trainer resolves it; widths a multiple
    of ``bucket_multiple``) and
    ``baseline_model.PaddedBaseline`` (the earlier design: same dimensions, fp32, every batch
    padded to 512). Each round runs ``steps`` steps of one setup, then the same batches on the
    other, so both see the same machine load; the ratio is reported per round (each width is
    run once before, untimed: a long run has its kernels cached by then). FLOPs per step
    are counted (``flops.counted_flops``) on the batches that were timed and divided by the
    time: MFU against the faster of a bf16 and an fp32 matmul (this CPU's limit) and against
    a matmul of the setup's own dtype, measured here at the same thread count. With
    ``profile_rows``, this model's first round of batches runs once more under
    ``torch.profiler`` and the top ops by self CPU time are printed.
    """
    import statistics

    import torch

    from genesis_rna.baseline_model import PaddedBaseline
    from genesis_rna.data import BucketBatchSampler, RNADataset, collate, load_split
    from genesis_rna.flops import counted_flops, matmul_peak
    from genesis_rna.losses import MultiTaskLoss
    from genesis_rna.model import GenesisRNA, model_config_for
    from genesis_rna.runtime import autocast_for, resolve_device, resolve_precision

    threads = torch.get_num_threads()
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    precision = resolve_precision("bf16", dev)
    data = load_split(split_dir / "train.parquet")
    dataset = RNADataset(data, 512, 0.15, seed=0, train=True)
    order = BucketBatchSampler(data.lengths, batch, seed=0, shuffle=True).epoch_batches(0)
    need = 2 + rounds * steps
    if len(order) < need:
        raise ValueError(f"{split_dir} gives {len(order)} batches of {batch}; need {need}")
    loss_fn = MultiTaskLoss()
    cfg = model_config_for(model_size, max_len=512)
    setups = {  # name: (model, autocast bf16, bucket multiple)
        f"genesis_rna, {precision}, length buckets of {bucket_multiple}": (
            GenesisRNA(cfg).to(dev), precision == "bf16", bucket_multiple),
        "earlier design, fp32, padded to 512": (PaddedBaseline(cfg).to(dev), False, 512),
    }

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    def make_step(model, opt, bf16, multiple, idx):
        b = {k: v.to(dev) for k, v in collate([dataset[(0, i)] for i in idx], 512,
                                               multiple).items()}

        def step():
            with autocast_for(dev, "bf16" if bf16 else "fp32"):
                out = model(b["tokens"], b["attention_mask"])
            loss_fn(out, b).total.backward()
            if opt is not None:
                opt.step()
            model.zero_grad(set_to_none=True)
        return step, int(b["lengths"].sum())

    torch.manual_seed(0)
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    state = {name: (m, torch.optim.AdamW(m.parameters(), lr=1e-4), bf16, mult)
             for name, (m, bf16, mult) in setups.items()}
    timed: dict[str, list[tuple[float, int]]] = {name: [] for name in setups}
    for m, opt, bf16, mult in state.values():  # two warm-up steps each
        for idx in order[:2]:
            make_step(m, opt, bf16, mult, idx)[0]()
        if mult != 512:  # and each width once (no update): the kernel caches of a long run
            for idx in order[2 : need]:
                make_step(m, None, bf16, mult, idx)[0]()
    for r in range(rounds):
        chunk = order[2 + r * steps : 2 + (r + 1) * steps]
        for name, (m, opt, bf16, mult) in (state.items() if r % 2 == 0
                                           else reversed(state.items())):
            steps_nt = [make_step(m, opt, bf16, mult, idx) for idx in chunk]  # collate untimed
            sync()
            t0 = time.perf_counter()
            for step, _ in steps_nt:
                step()
            sync()
            timed[name].append((time.perf_counter() - t0, sum(nt for _, nt in steps_nt)))
    # FLOPs of the timed batches (no optimizer step; the counts do not depend on the values)
    # per round, as the timing (a round's MFU is its FLOPs over its own seconds)
    flops: dict[str, list[int]] = {}
    for name, (m, _, bf16, mult) in state.items():
        per_batch = None
        flops[name] = []
        for r in range(rounds):
            total = 0
            for idx in order[2 + r * steps : 2 + (r + 1) * steps]:
                if per_batch is None or mult != 512:  # padded batches all count the same
                    per_batch = counted_flops(make_step(m, None, bf16, mult, idx)[0])
                total += per_batch
            flops[name].append(total)
    peak_bf16 = matmul_peak(torch.bfloat16, device=dev)
    peak_fp32 = matmul_peak(torch.float32, device=dev)
    best = max(peak_bf16, peak_fp32)  # the device's limit: bf16 where native, else fp32
    where = f"{torch.cuda.get_device_name(dev)}" if cuda else f"{threads} threads"
    rows = []
    for name, runs in timed.items():
        rates = [n / t for t, n in runs]
        mid = sorted(range(rounds), key=lambda k: rates[k])[rounds // 2]  # the median round
        peak = peak_bf16 if state[name][2] else peak_fp32
        t, n = runs[mid]
        rows.append({"bench": "train", "mode": f"{model_size}, {name}, batch {batch}, "
                     f"{where} (median of {rounds} rounds)", "records": n,
                     "seconds": t, "records_per_s": n / t,
                     "round_nt_per_s": [round(x) for x in rates],
                     "gflop_per_s": flops[name][mid] / t / 1e9,
                     "mfu_vs_best_matmul": flops[name][mid] / t / best,
                     "mfu_vs_own_dtype_matmul": flops[name][mid] / t / peak,
                     "round_mfu_vs_best": [round(f / t / best, 3)
                                           for f, (t, _) in zip(flops[name], runs, strict=True)],
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                     **({"peak_gpu_mb": torch.cuda.max_memory_allocated(dev) / 2**20}
                        if cuda else {})})
    if profile_rows:
        from torch.profiler import ProfilerActivity, profile

        m, opt, bf16, mult = next(iter(state.values()))
        steps_nt = [make_step(m, opt, bf16, mult, idx) for idx in order[2 : 2 + steps]]
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for step, _ in steps_nt:
                step()
            sync()
        print(f"torch.profiler: {next(iter(state))}, {steps} steps, {where}")
        print(prof.key_averages().table(
            sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
            row_limit=profile_rows))
    ours, old = timed.values()
    ratios = [(n1 / t1) / (n2 / t2) for (t1, n1), (t2, n2) in zip(ours, old, strict=True)]
    rows[0]["speedup_vs_earlier_design"] = statistics.median(ratios)
    # all rounds together: total real nt over total seconds of each (rounds differ in length mix)
    rows[0]["speedup_all_rounds"] = ((sum(n for _, n in ours) / sum(t for t, _ in ours))
                                     / (sum(n for _, n in old) / sum(t for t, _ in old)))
    rows[0]["round_speedups"] = [round(x, 2) for x in ratios]
    rows.append({"bench": "train", "mode": f"matmul peak, {8192 if cuda else 2048}^3, {where}",
                 "records": 0, "seconds": 0.0, "records_per_s": 0.0,
                 "bf16_gflop_per_s": peak_bf16 / 1e9, "fp32_gflop_per_s": peak_fp32 / 1e9})
    return rows


def _start_trainer(args: list[str], log: Path, env: dict | None = None
                   ) -> tuple[subprocess.Popen, object]:
    fh = open(log, "w")  # noqa: SIM115 - closed by _wait_trainer
    proc = subprocess.Popen([sys.executable, "-m", "genesis_rna.train_pretrain", *args],
                            stdout=fh, stderr=subprocess.STDOUT, env=env)
    return proc, fh


def _wait_trainer(proc: subprocess.Popen, fh, log: Path) -> float:
    """Wait for a trainer started by ``_start_trainer``; return its peak RSS (MB)."""
    _, status, usage = os.wait4(proc.pid, 0)
    fh.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"trainer exited with {proc.returncode}; see {log}:\n"
                           + "".join(log.read_text().splitlines(True)[-15:]))
    return usage.ru_maxrss / 1024


def _run_trainer(args: list[str], log: Path, env: dict | None = None) -> float:
    """Run the trainer CLI to completion; return the peak RSS (MB) of that process."""
    return _wait_trainer(*_start_trainer(args, log, env), log)


def _subset_split(split_dir: Path, rows: dict[str, int], out: Path) -> dict[str, int]:
    """A seeded sample of each split table (kept in file order) under ``out``; rows per split."""
    out.mkdir(parents=True)
    kept = {}
    for name, n in rows.items():
        table = pq.read_table(split_dir / f"{name}.parquet")
        if n < table.num_rows:
            table = table.take(np.sort(np.random.default_rng(0).permutation(table.num_rows)[:n]))
        pq.write_table(table, out / f"{name}.parquet")
        kept[name] = table.num_rows
    return kept


def time_to_reach(seconds: list[float], values: list[float], goal: float) -> float | None:
    """The first cumulative time at which ``values`` reaches ``goal`` (epoch granularity:
    the end of the first epoch at or above it), or None if it never does."""
    return next((t for t, v in zip(seconds, values, strict=True) if v >= goal), None)


def plot_ast_curves(runs: dict[str, dict], path: Path) -> Path:
    """Val pair F1 and val MLM accuracy against cumulative training seconds, one line per run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for name, run in runs.items():
        for ax, key in zip(axes, ("val_pair_f1", "val_mlm_acc"), strict=True):
            ax.plot(run["cum_seconds"], run[key], marker="o", label=name)
    for ax, title in zip(axes, ("val pair F1 (per-epoch threshold)", "val MLM accuracy"),
                         strict=True):
        ax.set_xlabel("cumulative training time (s)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


AST_RUNS = {"off": (), "threshold": ("--ast_selection", "threshold"),
            "importance": ("--ast_selection", "importance")}


def bench_ast(split_dir: Path, train_config: Path, model_size: str, train_rows: int,
              val_rows: int, tmp: Path, log_dir: Path, epochs_off: int = 3,
              epochs_on: int | None = None, modes: tuple[str, ...] = ("threshold", "importance"),
              parallel: bool = True, threads: int = 1, extra: tuple[str, ...] = (),
              plot: Path | None = None) -> list[dict]:
    """AST off against each AST selection mode: val pair F1 and MLM accuracy after every
    epoch against cumulative training time, all runs started at once (``parallel``, each with
    ``threads`` threads) so they see the same machine load. AST runs get ``epochs_on`` epochs
    (default: epochs_off / the config's target activation, about the same wall budget).
    Each AST run's row says when it reached AST off's final val pair F1, as a fraction of AST
    off's time."""
    import yaml

    from genesis_rna.checkpoint import load_checkpoint
    from genesis_rna.plot_metrics import read_metrics

    data = tmp / "ast_data"
    n_train = _subset_split(split_dir, {"train": train_rows, "val": val_rows}, data)["train"]
    if epochs_on is None:
        target = float((yaml.safe_load(train_config.read_text()) or {}).get(
            "ast_target_activation", 0.4))
        epochs_on = max(epochs_off, round(epochs_off / target))
    log_dir.mkdir(parents=True, exist_ok=True)
    common = ["--config", str(train_config), "--data_path", str(data), "--model_size", model_size,
              "--no-progress", "--no-resume", "--threads", str(threads), *extra]
    names = ["off", *modes]

    def args(name: str) -> list[str]:
        epochs = epochs_off if name == "off" else epochs_on
        return [*common, "--output_dir", str(tmp / f"ast_{name}"), "--num_epochs", str(epochs),
                "--no-use_ast" if name == "off" else "--use_ast", *AST_RUNS[name]]

    rss = {}
    if parallel:
        started = {n: _start_trainer(args(n), log_dir / f"ast_{n}.log") for n in names}
        for n, (proc, fh) in started.items():
            rss[n] = _wait_trainer(proc, fh, log_dir / f"ast_{n}.log")
    else:
        for n in names:
            rss[n] = _run_trainer(args(n), log_dir / f"ast_{n}.log")

    runs = {}
    for n in names:
        out = tmp / f"ast_{n}"
        m = read_metrics(out / "training_metrics.csv")
        train, val = m.train, m.val
        cum = np.cumsum(train["epoch_time_s"]).tolist()
        runs[n] = {"cum_seconds": cum, "val_pair_f1": [float(x) for x in val["pair_f1"]],
                   "val_mlm_acc": [float(x) for x in val["mlm_accuracy"]],
                   "val_struct_acc": [float(x) for x in val["structure_accuracy"]],
                   "activation": [float(x) for x in train["activation_rate"]],
                   "val_pair_f1_tuned": float(
                       load_checkpoint(out / "model.pt")["pair_threshold_val_f1"]),
                   "epochs": len(cum), "peak_rss_mb": rss[n]}
    off = runs["off"]
    t_off, f1_off, mlm_off = off["cum_seconds"][-1], off["val_pair_f1"][-1], off["val_mlm_acc"][-1]
    rows = []
    for n in names:
        r = runs[n]
        row = {"bench": "ast", "mode": f"{model_size}, AST {n}, {r['epochs']} epochs"
               f"{', parallel' if parallel else ''}, {threads} thread(s)",
               "records": n_train * r["epochs"], "seconds": r["cum_seconds"][-1],
               "records_per_s": n_train * r["epochs"] / r["cum_seconds"][-1],
               "epoch_time_vs_off": (r["cum_seconds"][-1] / r["epochs"]) / (t_off / off["epochs"]),
               "activation": r["activation"][-1], "val_pair_f1": r["val_pair_f1"][-1],
               "val_mlm_acc": r["val_mlm_acc"][-1], "val_struct_acc": r["val_struct_acc"][-1],
               "val_pair_f1_tuned": r["val_pair_f1_tuned"], "peak_rss_mb": r["peak_rss_mb"],
               "curve": {k: r[k] for k in ("cum_seconds", "val_pair_f1", "val_mlm_acc")}}
        if n != "off":
            for key, goal in (("pair_f1", f1_off), ("mlm_acc", mlm_off)):
                t = time_to_reach(r["cum_seconds"], r[f"val_{key}"], goal)
                row[f"reach_off_{key}_time_frac"] = None if t is None else t / t_off
        rows.append(row)
    for row, n in zip(rows[1:], names[1:], strict=True):
        for key, goal in (("pair_f1", f1_off), ("mlm_acc", mlm_off)):
            frac = row[f"reach_off_{key}_time_frac"]
            print(f"AST {n}: reaches AST off's final val {key} ({goal:.4f}, {t_off:.0f} s) "
                  + ("never" if frac is None else f"at {frac:.2f}x its time")
                  + f"; its own final {row[f'val_{key}']:.4f} at "
                  f"{row['seconds'] / t_off:.2f}x")
    if plot is not None:
        plot_ast_curves({f"AST {n}": runs[n] for n in names}, plot)
    return rows


def bench_decode(checkpoint: Path, split_dir: Path, benchmarks: dict[str, str],
                 max_length: int) -> list[dict]:
    """Both decoders on the same probabilities; thresholds tuned on val for each."""
    from genesis_rna.decoding import (
        DECODERS,
        TUNE_THRESHOLDS,
        decode_candidates,
        sparse_candidates,
        tune_threshold,
    )
    from genesis_rna.eval_metrics import score_pairs
    from genesis_rna.evaluate import load_benchmark, load_test_split
    from genesis_rna.inference import load_for_inference, predict_structures

    loaded = load_for_inference(checkpoint)
    min_sep = int(loaded.config.get("pair_min_sep", 4))
    floor = min(min(t) for t in TUNE_THRESHOLDS.values())

    def candidates(records) -> list:
        preds = predict_structures(loaded.model, [r.sequence for r in records], 0.5,
                                   device=loaded.device, precision=loaded.precision,
                                   min_sep=min_sep, keep_pair_probs=True, prob_floor=floor,
                                   progress=True, desc="model")
        return [sparse_candidates(r.sequence, *p.pair_probs, min_sep)
                for r, p in zip(records, preds, strict=True)]

    val_records = load_test_split(split_dir / "val.parquet", max_length=max_length)[0]
    val_cands = candidates(val_records)
    tuned = {d: tune_threshold(val_cands, [r.pairs for r in val_records], d) for d in DECODERS}
    sets = {name: load_benchmark(name, path, max_length=max_length)[0]
            for name, path in benchmarks.items()}
    cands = {name: candidates(recs) for name, recs in sets.items()}
    rows = []
    for decoder in DECODERS:
        thr, val_f1 = tuned[decoder]
        for name, recs in sets.items():
            t0 = time.perf_counter()
            preds = [decode_candidates(c, thr, decoder) for c in cands[name]]
            seconds = time.perf_counter() - t0
            f1 = float(np.mean([score_pairs(p, r.pairs, len(r.sequence))["f1"]
                                for p, r in zip(preds, recs, strict=True)]))
            rows.append({"bench": f"decode-{decoder}", "records": len(recs), "seconds": seconds,
                         "records_per_s": len(recs) / seconds if seconds else 0.0,
                         "set": name, "threshold": thr, "val_f1": val_f1, "f1": f1})
    return rows


# -- scale: how memory and time grow with the corpus -------------------------------------------

_BASES = np.frombuffer(b"ACGU", np.uint8)
_BASE_INDEX = np.zeros(256, np.int64)  # a byte's index in ACGU (T as U); other letters: 0
_BASE_INDEX[np.frombuffer(b"CcGgUuTt", np.uint8)] = [1, 1, 2, 2, 3, 3, 3, 3]


def mutate_sequences(seqs: list[str], rng: np.random.Generator, rate: float = 0.02) -> list[str]:
    """Point mutations (each base with probability ``rate``, and at least one per non-empty
    sequence) to another of A, C, G, U, so a copy is not an exact duplicate of its source."""
    lengths = np.fromiter(map(len, seqs), np.int64, len(seqs))
    starts = np.cumsum(lengths) - lengths
    arr = np.frombuffer("".join(seqs).encode("ascii"), np.uint8).copy()
    hit = rng.random(arr.size) < rate
    some = lengths > 0
    hit[starts[some] + (rng.random(int(some.sum())) * lengths[some]).astype(np.int64)] = True
    arr[hit] = _BASES[(_BASE_INDEX[arr[hit]] + rng.integers(1, 4, int(hit.sum()))) % 4]
    text = arr.tobytes().decode("ascii")
    return [text[a:a + n] for a, n in zip(starts.tolist(), lengths.tolist(), strict=True)]


def synthetic_corpus(fasta: Path, copies: int, out: Path, seed: int = 0) -> int:
    """``copies`` x the records of ``fasta`` as a gzip FASTA: the originals, then mutated copies
    with ids ``m<k>_<id>``. Returns the records written."""
    titles, seqs = [], []
    for rec in read_fasta(fasta):
        titles.append(rec.title)
        seqs.append(rec.sequence)
    rng = np.random.default_rng(seed)
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=1) as fh:
        for k in range(copies):
            body = seqs if k == 0 else mutate_sequences(seqs, rng)
            prefix = f"m{k}_" if k else ""
            fh.write("".join(f">{prefix}{t}\n{q}\n" for t, q in zip(titles, body, strict=True)))
    return copies * len(titles)


def synthetic_split_table(structures_tsv: Path, copies: int, out: Path, seed: int = 0) -> int:
    """A split table (schema SPLITS) of ``copies`` x the rows of a structures TSV (id,
    sequence, structure: the Rfam seed comparative structures), mutated as in
    ``synthetic_corpus``, each copy keeping its source's structure. Returns the rows."""
    import csv

    from genesis_rna.seqio import open_input
    from genesis_rna.structures import element_labels, parse_dot_bracket

    ids, seqs, dbs, pis, pjs, els = [], [], [], [], [], []
    with open_input(structures_tsv, text=True) as fh:
        for line, row in enumerate(csv.DictReader(fh, delimiter="\t"), start=2):
            pairs = parse_dot_bracket(row["structure"], source=str(structures_tsv), line=line)
            ids.append(row["id"])
            seqs.append(row["sequence"])
            dbs.append(row["structure"])
            pis.append([i for i, _ in pairs])
            pjs.append([j for _, j in pairs])
            els.append(element_labels(pairs, len(row["sequence"])))
    rng = np.random.default_rng(seed)
    lengths = [len(q) for q in seqs]
    with ParquetStreamWriter(out, SPLITS) as writer:  # row groups as split_dataset writes them
        for k in range(copies):
            body = seqs if k == 0 else mutate_sequences(seqs, rng)
            names = ids if k == 0 else [f"m{k}_{i}" for i in ids]
            writer.write_table(pa.table({
                "id": names, "description": [""] * len(ids), "sequence": body, "length": lengths,
                "structure": dbs, "pair_i": pis, "pair_j": pjs, "elements": els,
                "energy": [None] * len(ids), "label_source": ["Rfam SS_cons"] * len(ids),
                "cluster": names, "split": ["train"] * len(ids)}, schema=SPLITS))
    return copies * len(ids)


def bench_scale_parse(fasta: Path, sizes: list[int], work: Path) -> list[dict]:
    rows = []
    for size in sizes:
        src = fasta if size == 1 else work / f"corpus_{size}x.fasta.gz"
        if size != 1:
            synthetic_corpus(fasta, size, src)
        d = work / f"parse_{size}x"
        d.mkdir()
        m = _measure("parse", str(src), str(d))
        stats = json.loads((d / "s.json").read_text())
        rows.append({"bench": "scale-parse", "input": f"{size}x", **m,
                     "records_per_s": m["records"] / m["seconds"], "kept": stats["kept"],
                     "duplicates_merged": stats["duplicates_merged"],
                     "input_mb": src.stat().st_size / 1e6})
        shutil.rmtree(d)
        if src != fasta:
            src.unlink()
    for r in rows:
        r["peak_rss_vs_1x"] = r["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    return rows


def bench_scale_mmseqs(annotations: Path, benchmarks: list[str], limits: list[str | None],
                       threads: int) -> list[dict]:
    rows = []
    for step in ("easy-linclust", "easy-search"):
        for limit in limits:
            m = _measure("mmseqs", json.dumps({"step": step, "limit": limit, "threads": threads,
                                               "annotations": str(annotations),
                                               "benchmarks": benchmarks}))
            m.pop("peak_rss_mb")  # the Python parent's, not MMseqs2's
            rows.append({"bench": "scale-mmseqs", **m, "records_per_s": m["records"] / m["seconds"]})
    return rows


def bench_scale_pack(structures: Path, sizes: list[int], loader_sequences: int,
                     work: Path) -> tuple[list[dict], Path]:
    """pack_split per size; then the synthetic split for the loader, packed directly."""
    from genesis_rna.loader_memory import synthetic_split

    rows = []
    for size in sizes:
        table = work / f"split_{size}x.parquet"
        synthetic_split_table(structures, size, table)
        m = _measure("pack", str(table), str(work / f"packed_{size}x"))
        rows.append({"bench": "scale-pack", "input": f"{size}x", **m,
                     "records_per_s": m["records"] / m["seconds"],
                     "table_mb": table.stat().st_size / 1e6})
        table.unlink()
        shutil.rmtree(work / f"packed_{size}x")
    syn = work / "synthetic_packed"
    t0 = time.perf_counter()
    meta = synthetic_split(syn, loader_sequences)
    seconds = time.perf_counter() - t0
    rows.append({"bench": "scale-pack", "input": f"synthetic {loader_sequences:,} (numpy, direct)",
                 "records": meta["n"], "seconds": seconds, "records_per_s": meta["n"] / seconds,
                 "size_on_disk_mb": _folder_mb(syn)})
    return rows, syn


def bench_scale_loader(split_dir: Path, synthetic: Path, work: Path) -> list[dict]:
    from genesis_rna.loader_memory import loader_memory_benchmark
    from genesis_rna.packed import pack_table

    real = work / "real_train_packed"
    if not real.exists():
        pack_table(split_dir / "train.parquet", real)
    rows = []
    results = loader_memory_benchmark({"real-data train": real, "synthetic": synthetic},
                                      num_workers=2)
    for name, r in results.items():
        procs = [("main", r["main"])] + [(f"worker {k}", w) for k, w in enumerate(r["workers"])]
        for proc, mem in procs:
            rows.append({"bench": "scale-loader", "mode": f"{name}, {proc}",
                         "records": r["sequences"], "seconds": r["order_s"] + r["iterate_s"],
                         "records_per_s": r["sequences"] / (r["order_s"] + r["iterate_s"]),
                         "batches": r["batches"], "peak_rss_mb": mem["peak_rss_mib"],
                         "uss_mb": mem["uss_mib"], "pss_mb": mem["pss_mib"]})
    return rows


def bench_scale_train(split_dir: Path, train_config: Path, model_size: str, train_rows: int,
                      val_rows: int, work: Path, log_dir: Path, big_sequences: int = 0,
                      steps: int = 0) -> list[dict]:
    """Peak RSS of the trainer process for one epoch, on the allocator the workflow uses; with
    ``big_sequences`` and ``steps`` also the trainer's peak RSS over ``steps`` steps on the
    real-data train split and on that split tiled to ``big_sequences`` rows (same lengths and
    labels, so only the split's size differs)."""
    from genesis_rna.allocator import tcmalloc_library
    from genesis_rna.loader_memory import tiled_split
    from genesis_rna.packed import pack_table

    data = work / "train_rss_data"
    n = _subset_split(split_dir, {"train": train_rows, "val": val_rows}, data)
    env = dict(os.environ)
    tcmalloc = tcmalloc_library()
    if tcmalloc:
        env["LD_PRELOAD"] = tcmalloc
    malloc = "tcmalloc" if tcmalloc else "glibc malloc"
    log_dir.mkdir(parents=True, exist_ok=True)
    out = work / "train_rss"
    t0 = time.perf_counter()
    rss = _run_trainer(["--config", str(train_config), "--data_path", str(data), "--model_size",
                        model_size, "--no-progress", "--no-resume", "--num_epochs", "1",
                        "--output_dir", str(out)], log_dir / "scale_train.log", env)
    seconds = time.perf_counter() - t0
    rows = [{"bench": "scale-train", "mode": f"{model_size}, 1 epoch, {n['train']} train / "
             f"{n['val']} val rows, {malloc}", "records": n["train"], "seconds": seconds,
             "records_per_s": n["train"] / seconds, "peak_rss_mb": rss}]
    if not (big_sequences and steps):
        return rows
    real, big = work / "steps_real", work / "steps_big"
    for name in ("train", "val"):
        pack_table(split_dir / f"{name}.parquet", real / name)
    tiled_split(real / "train", big / "train", big_sequences)
    shutil.copytree(real / "val", big / "val")
    for label, folder in (("real-data train split", real), (f"tiled to {big_sequences:,}", big)):
        m = _measure("trainer_steps", str(train_config), str(folder),
                     str(work / f"steps_out_{folder.name}"), model_size, str(steps), env=env)
        rows.append({"bench": "scale-train", "mode": f"{model_size}, {steps} steps, {label} "
                     f"({m['records']:,} rows), {malloc}", **m,
                     "records_per_s": m["records"] / m["seconds"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"]:
        _child(argv[1:])
        return 0
    ap = argparse.ArgumentParser(prog="python -m genesis_rna.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="+",
                    choices=["parse", "annotate", "train", "ast", "decode", "scale", *SCALE_SECTIONS])
    ap.add_argument("--split_dir", type=Path, default=Path("results/realdata/split"))
    ap.add_argument("--model_size", default="small")
    ap.add_argument("--train_steps", type=int, default=4, help="train: steps per round")
    ap.add_argument("--train_rounds", type=int, default=3)
    ap.add_argument("--train_batch", type=int, default=32,
                    help="train: batch of the model loop against the earlier design")
    ap.add_argument("--bucket_multiple", type=int, default=8, help="train: this model's widths")
    ap.add_argument("--device", default="auto",
                    help="train: cpu, cuda or auto (CUDA when present)")
    ap.add_argument("--train_ast", default="", metavar="MODES",
                    help="train: also time the trainer CLI (--train_config, loader and all) "
                         "with AST in each of these modes, e.g. off,on (default: none)")
    ap.add_argument("--train_warmup", type=int, default=3,
                    help="train: untimed trainer steps before --train_steps timed ones")
    ap.add_argument("--train_skip_baseline", action="store_true",
                    help="train: only the trainer rows (--train_ast), not the model loop "
                         "against the earlier design")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="train: print the top N ops of this model's steps (torch.profiler)")
    ap.add_argument("--fasta", type=Path, default=DEFAULT_FASTA)
    ap.add_argument("--json", type=Path, default=Path("results/bench/bench.json"))
    ap.add_argument("--annotate_n", type=int, default=1200)
    ap.add_argument("--train_config", type=Path, default=Path("config/train_cpu_realdata.yaml"))
    ap.add_argument("--ast_train_rows", type=int, default=4000)
    ap.add_argument("--ast_val_rows", type=int, default=1294)
    ap.add_argument("--ast_epochs", type=int, default=3, help="ast: epochs of the AST-off run")
    ap.add_argument("--ast_on_epochs", type=int, default=None,
                    help="ast: epochs of each AST-on run (default ast_epochs / target)")
    ap.add_argument("--ast_threads", type=int, default=1, help="ast: threads per trainer")
    ap.add_argument("--ast_sequential", action="store_true",
                    help="ast: run the trainers one after another instead of at once")
    ap.add_argument("--ast_trainer_arg", action="append", default=[], metavar="ARG",
                    help="ast: extra trainer flag for every run (repeat; e.g. "
                         "--ast_trainer_arg=--pair_threshold --ast_trainer_arg=0.1)")
    ap.add_argument("--plot", type=Path, default=None,
                    help="ast: curves PNG (default ast_curves.png beside --json)")
    ap.add_argument("--checkpoint", type=Path, help="model.pt for decode")
    ap.add_argument("--benchmark", action="append", default=[], metavar="NAME=PATH",
                    help="curated set for decode (repeat)")
    ap.add_argument("--decode_max_length", type=int, default=512)
    ap.add_argument("--scale_sizes", default="1,10,50",
                    help="corpus sizes, in copies of --fasta (scale_parse, scale_pack)")
    ap.add_argument("--structures", type=Path, default=DEFAULT_STRUCTURES,
                    help="id/sequence/structure TSV the scale_pack tables are made from")
    ap.add_argument("--annotations", type=Path,
                    default=Path("results/realdata/annotate/annotations.parquet"),
                    help="the real-data corpus MMseqs2 runs on (scale_mmseqs)")
    ap.add_argument("--decontaminate", type=Path, action="append",
                    help="benchmark file for the scale_mmseqs search (repeat; default: "
                         "ArchiveII and bpRNA VL0 from ../shared/data)")
    ap.add_argument("--mmseqs_limits", default="none,2G,9G,10G",
                    help="split.memory_limit values to compare ('none': no limit)")
    ap.add_argument("--mmseqs_threads", type=int, default=2)
    ap.add_argument("--loader_sequences", type=int, default=10_000_000,
                    help="sequences of the synthetic packed split (scale_pack, scale_loader)")
    ap.add_argument("--scale_train_rows", type=int, default=4000)
    ap.add_argument("--scale_val_rows", type=int, default=500)
    ap.add_argument("--scale_train_steps", type=int, default=150,
                    help="scale_train: steps of the trainer on the real-data train split and "
                         "on it tiled to --loader_sequences rows (0: skip)")
    args = ap.parse_args(argv)
    if "scale" in args.what:
        args.what = [w for w in args.what if w != "scale"] + [
            s for s in SCALE_SECTIONS if s not in args.what]
    sizes = [int(x) for x in args.scale_sizes.split(",")]
    benchmarks = [str(p) for p in (args.decontaminate or DEFAULT_BENCHMARKS)]
    if "scale_mmseqs" in args.what and not args.annotations.exists():
        ap.error(f"--annotations {args.annotations} not found (run the workflow with --configfile "
                 "config/realdata.yaml up to the split, or point it at an annotations table)")
    if {"scale_pack", "scale_loader"} & set(args.what) and not args.structures.exists():
        ap.error(f"--structures {args.structures} not found")
    if "decode" in args.what and (args.checkpoint is None or not args.checkpoint.is_file()):
        ap.error("decode needs --checkpoint pointing at a trained model.pt")
    if {"parse", "annotate", "scale_parse"} & set(args.what) and not args.fasta.exists():
        ap.error(f"--fasta {args.fasta} not found (default is ../shared/data/rfam14.9_seed.fasta.gz)")
    if ({"train", "ast", "decode", "scale_loader", "scale_train"} & set(args.what)
            and not (args.split_dir / "train.parquet").exists()):
        ap.error(f"--split_dir {args.split_dir} has no train.parquet (run the workflow first, e.g. "
                 "with --configfile config/realdata.yaml)")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="genesis_bench_") as tmp:
        if "parse" in args.what:
            rows += bench_parse(args.fasta, Path(tmp))
        if "annotate" in args.what:
            rows += bench_annotate(args.fasta, Path(tmp), n=args.annotate_n)
        if "train" in args.what:
            modes = [m.strip() for m in args.train_ast.split(",") if m.strip()]
            if bad := [m for m in modes if m not in ("on", "off")]:
                ap.error(f"--train_ast: {bad[0]!r} is not on or off")
            if not args.train_skip_baseline:
                rows += bench_train(args.split_dir, args.model_size, args.train_steps,
                                    args.train_rounds, batch=args.train_batch,
                                    bucket_multiple=args.bucket_multiple,
                                    profile_rows=args.profile, device=args.device)
            if modes:
                peak = next((r["bf16_gflop_per_s"] * 1e9 for r in rows
                             if "bf16_gflop_per_s" in r), None)
                if peak is None:
                    import torch

                    from genesis_rna.flops import matmul_peak
                    from genesis_rna.runtime import resolve_device

                    peak = matmul_peak(torch.bfloat16, device=resolve_device(args.device))
                rows += bench_train_trainer(args.split_dir, args.train_config, args.model_size,
                                            [m == "on" for m in modes], args.train_steps,
                                            args.train_warmup, args.device, Path(tmp), peak)
        if "ast" in args.what:
            rows += bench_ast(args.split_dir, args.train_config, args.model_size,
                              args.ast_train_rows, args.ast_val_rows, Path(tmp),
                              args.json.parent / "ast_logs", epochs_off=args.ast_epochs,
                              epochs_on=args.ast_on_epochs, parallel=not args.ast_sequential,
                              threads=args.ast_threads, extra=tuple(args.ast_trainer_arg),
                              plot=args.plot or args.json.parent / "ast_curves.png")
            print(f"wrote {args.plot or args.json.parent / 'ast_curves.png'}")
        if "decode" in args.what:
            rows += bench_decode(args.checkpoint, args.split_dir,
                                 dict(b.split("=", 1) for b in args.benchmark),
                                 args.decode_max_length)
        if "scale_parse" in args.what:
            rows += bench_scale_parse(args.fasta, sizes, Path(tmp))
        if "scale_mmseqs" in args.what:
            limits = [None if x == "none" else x for x in args.mmseqs_limits.split(",")]
            rows += bench_scale_mmseqs(args.annotations, benchmarks, limits, args.mmseqs_threads)
        synthetic = None
        if {"scale_pack", "scale_loader"} & set(args.what):
            pack_sizes = sizes if "scale_pack" in args.what else []
            pack_rows, synthetic = bench_scale_pack(args.structures, pack_sizes,
                                                    args.loader_sequences, Path(tmp))
            rows += pack_rows
        if "scale_loader" in args.what:
            rows += bench_scale_loader(args.split_dir, synthetic, Path(tmp))
        if "scale_train" in args.what:
            rows += bench_scale_train(args.split_dir, args.train_config, args.model_size,
                                      args.scale_train_rows, args.scale_val_rows, Path(tmp),
                                      args.json.parent / "scale_logs", args.loader_sequences,
                                      args.scale_train_steps)
    for r in rows:
        extra = {k: v for k, v in r.items()
                 if k not in ("bench", "records", "seconds", "records_per_s", "curve")}
        print(f"{r['bench']:12s} {r['records']:>9d} rec {r['seconds']:8.2f} s "
              f"{r['records_per_s']:10.1f} rec/s  " + "  ".join(
                  f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items()))
    write_json(args.json, {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                       "python": platform.python_version()},
                           "fasta": str(args.fasta), "results": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
