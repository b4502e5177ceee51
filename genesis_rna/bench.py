"""Throughput benchmarks for the data stages (prints a table, writes JSON). Not a test.

    python -m genesis_rna.bench parse annotate [--fasta FILE] [--json results/bench.json]

parse     FASTA records/s and peak RSS for FILE and for a 10x larger file made from it
          (peak RSS must not grow with corpus size: the stage streams).
annotate  sequences/s of the annotate stage (1 shard, 1 process) against raw ``RNA.fold`` on
          the same sequences (the stage's overhead), and 2 shards on 2 cores against 1.
train     real (non-padding) nucleotides/s of forward+backward+step for a model size on a split
          (``--split_dir``, e.g. results/realdata/split): this model (bf16, length buckets)
          against the earlier design (``baseline_model``: same dimensions, fp32, padded to
          512) on the same batches, in ``--train_rounds`` alternating rounds of
          ``--train_steps`` steps; the speedup per round, counted GFLOP/s and MFU against a
          bf16 matmul measured at the same thread count.
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
Each measurement runs in a fresh Python process so peak RSS is its own (decode: in-process).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from genesis_rna.atomic import write_json
from genesis_rna.seqio import read_fasta
from genesis_rna.tables import SEQUENCES

DEFAULT_FASTA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rfam14.9_seed.fasta.gz"


def _child(argv: list[str]) -> None:
    """Run one measurement in this process and print its JSON result."""
    kind, *rest = argv
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
    else:
        raise SystemExit(f"unknown measurement {kind}")
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"records": n, "seconds": seconds, "peak_rss_mb": rss_mb}))


def _measure(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "genesis_rna.bench", "_child", *args],
                         capture_output=True, text=True, check=True)
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
                batch: int = 32, bucket_multiple: int = 8) -> list[dict]:
    """Training throughput against the earlier design, in alternating rounds, with MFU.

    Two setups train on the same batches of the split (epoch 0 of the length-bucketed
    sampler): this package's model (bf16 autocast, widths a multiple of ``bucket_multiple``) and
    ``baseline_model.PaddedBaseline`` (the earlier design: same dimensions, fp32, every batch
    padded to 512). Each round runs ``steps`` steps of one setup, then the same batches on the
    other, so both see the same machine load; the ratio is reported per round (each width is
    run once before, untimed: a long run has its kernels cached by then). FLOPs per step
    are counted (``flops.counted_flops``) on the batches that were timed and divided by the
    time: MFU against a bf16 matmul measured here at the same thread count.
    """
    import statistics

    import torch

    from genesis_rna.baseline_model import PaddedBaseline
    from genesis_rna.data import BucketBatchSampler, RNADataset, collate, load_split
    from genesis_rna.flops import counted_flops, matmul_peak
    from genesis_rna.losses import MultiTaskLoss
    from genesis_rna.model import GenesisRNA, model_config_for

    threads = torch.get_num_threads()
    data = load_split(split_dir / "train.parquet")
    dataset = RNADataset(data, 512, 0.15, seed=0, train=True)
    order = BucketBatchSampler(data.lengths, batch, seed=0, shuffle=True).epoch_batches(0)
    need = 2 + rounds * steps
    if len(order) < need:
        raise ValueError(f"{split_dir} gives {len(order)} batches of {batch}; need {need}")
    loss_fn = MultiTaskLoss()
    cfg = model_config_for(model_size, max_len=512)
    setups = {  # name: (model, autocast bf16, bucket multiple)
        f"genesis_rna, bf16, length buckets of {bucket_multiple}": (GenesisRNA(cfg), True,
                                                                 bucket_multiple),
        "earlier design, fp32, padded to 512": (PaddedBaseline(cfg), False, 512),
    }

    def make_step(model, opt, bf16, multiple, idx):
        b = collate([dataset[(0, i)] for i in idx], 512, multiple)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(b["tokens"], b["attention_mask"])
            loss_fn(out, b).total.backward()
            if opt is not None:
                opt.step()
            model.zero_grad(set_to_none=True)
        return step, int(b["lengths"].sum())

    torch.manual_seed(0)
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
            t0 = time.perf_counter()
            for step, _ in steps_nt:
                step()
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
    peak_bf16, peak_fp32 = matmul_peak(torch.bfloat16), matmul_peak(torch.float32)
    rows = []
    for name, runs in timed.items():
        rates = [n / t for t, n in runs]
        mid = sorted(range(rounds), key=lambda k: rates[k])[rounds // 2]  # the median round
        peak = peak_bf16 if state[name][2] else peak_fp32
        t, n = runs[mid]
        rows.append({"bench": "train", "mode": f"{model_size}, {name}, batch {batch}, "
                     f"{threads} threads (median of {rounds} rounds)", "records": n,
                     "seconds": t, "records_per_s": n / t,
                     "round_nt_per_s": [round(x) for x in rates],
                     "gflop_per_s": flops[name][mid] / t / 1e9,
                     "mfu_vs_bf16_matmul": flops[name][mid] / t / peak_bf16,
                     "mfu_vs_own_dtype_matmul": flops[name][mid] / t / peak,
                     "round_mfu_vs_bf16": [round(f / t / peak_bf16, 3)
                                           for f, (t, _) in zip(flops[name], runs, strict=True)],
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    ours, old = timed.values()
    ratios = [(n1 / t1) / (n2 / t2) for (t1, n1), (t2, n2) in zip(ours, old, strict=True)]
    rows[0]["speedup_vs_earlier_design"] = statistics.median(ratios)
    rows[0]["round_speedups"] = [round(x, 2) for x in ratios]
    rows.append({"bench": "train", "mode": f"matmul peak, 2048^3, {threads} threads",
                 "records": 0, "seconds": 0.0, "records_per_s": 0.0,
                 "bf16_gflop_per_s": peak_bf16 / 1e9, "fp32_gflop_per_s": peak_fp32 / 1e9})
    return rows


def _start_trainer(args: list[str], log: Path) -> tuple[subprocess.Popen, object]:
    fh = open(log, "w")  # noqa: SIM115 - closed by _wait_trainer
    proc = subprocess.Popen([sys.executable, "-m", "genesis_rna.train_pretrain", *args],
                            stdout=fh, stderr=subprocess.STDOUT)
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


def _run_trainer(args: list[str], log: Path) -> float:
    """Run the trainer CLI to completion; return the peak RSS (MB) of that process."""
    return _wait_trainer(*_start_trainer(args, log), log)


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
    import numpy as np
    import yaml

    from genesis_rna.checkpoint import load_checkpoint
    from genesis_rna.plot_metrics import read_metrics

    data = tmp / "ast_data"
    data.mkdir()
    n_train = 0
    for name, n in (("train", train_rows), ("val", val_rows)):
        table = pq.read_table(split_dir / f"{name}.parquet")
        if n < table.num_rows:  # a seeded sample, kept in file order
            table = table.take(np.sort(np.random.default_rng(0).permutation(table.num_rows)[:n]))
        pq.write_table(table, data / f"{name}.parquet")
        n_train = n_train or table.num_rows
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
                   "val_mlm_acc": [float(x) for x in val["mlm_acc"]],
                   "val_struct_acc": [float(x) for x in val["struct_acc"]],
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
    import numpy as np

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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"]:
        _child(argv[1:])
        return 0
    ap = argparse.ArgumentParser(prog="python -m genesis_rna.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="+", choices=["parse", "annotate", "train", "ast", "decode"])
    ap.add_argument("--split_dir", type=Path, default=Path("results/realdata/split"))
    ap.add_argument("--model_size", default="small")
    ap.add_argument("--train_steps", type=int, default=4, help="train: steps per round")
    ap.add_argument("--train_rounds", type=int, default=3)
    ap.add_argument("--bucket_multiple", type=int, default=8, help="train: this model's widths")
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
    args = ap.parse_args(argv)
    if "decode" in args.what and (args.checkpoint is None or not args.checkpoint.is_file()):
        ap.error("decode needs --checkpoint pointing at a trained model.pt")
    if ("parse" in args.what or "annotate" in args.what) and not args.fasta.exists():
        ap.error(f"--fasta {args.fasta} not found (default is ../shared/data/rfam14.9_seed.fasta.gz)")
    if {"train", "ast", "decode"} & set(args.what) and not (args.split_dir / "train.parquet").exists():
        ap.error(f"--split_dir {args.split_dir} has no train.parquet (run the workflow first, e.g. "
                 "with --configfile config/realdata.yaml)")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="genesis_bench_") as tmp:
        if "parse" in args.what:
            rows += bench_parse(args.fasta, Path(tmp))
        if "annotate" in args.what:
            rows += bench_annotate(args.fasta, Path(tmp), n=args.annotate_n)
        if "train" in args.what:
            rows += bench_train(args.split_dir, args.model_size, args.train_steps,
                                 args.train_rounds, bucket_multiple=args.bucket_multiple)
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
    for r in rows:
        extra = {k: v for k, v in r.items()
                 if k not in ("bench", "records", "seconds", "records_per_s", "curve")}
        print(f"{r['bench']:9s} {r['records']:>9d} rec {r['seconds']:8.2f} s "
              f"{r['records_per_s']:10.1f} rec/s  " + "  ".join(
                  f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items()))
    write_json(args.json, {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                       "python": platform.python_version()},
                           "fasta": str(args.fasta), "results": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
