"""Loader memory per process on packed splits of different sizes (for ``bench scale``).

``loader_memory_benchmark({"real": dir_a, "10M": dir_b})`` measures, for each packed split in
a fresh process, what the training loader costs: building the epoch's batch order, then
iterating its first batches with DataLoader workers. It returns per process (main and each
worker) peak RSS and current RSS, USS and PSS in MiB. RSS counts the shared page-cache pages
of the maps a process touched; USS is what the process alone holds; PSS shares the pages out.
Memory that is independent of the split size is the claim these numbers test.

Inputs: ``synthetic_split`` writes a random packed split of any size directly with numpy (no
table); ``tiled_split`` repeats a real packed split's rows up to any size.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import psutil

from genesis_rna.packed import ARRAYS, PackWriter, read_meta
from genesis_rna.tokenization import A_ID, STRUCTURE_CLASSES

MIB = 1 << 20


def synthetic_split(directory: str | Path, n: int, seed: int = 0, min_len: int = 30,
                    max_len: int = 200, block: int = 250_000) -> dict:
    """A packed split of ``n`` random sequences, each with a stem of length // 8 pairs."""
    rng = np.random.default_rng(seed)
    with PackWriter(directory, source={"synthetic": n, "seed": seed}) as w:
        for start in range(0, n, block):
            b = min(block, n - start)
            lengths = rng.integers(min_len, max_len + 1, size=b)
            total = int(lengths.sum())
            counts = lengths // 8
            row = np.repeat(np.arange(b), counts)
            k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            pairs = np.stack([k, lengths[row] - 1 - k], axis=1)
            w.add_block([f"syn{start + i}" for i in range(b)],
                        rng.integers(A_ID, A_ID + 4, size=total, dtype=np.uint8),
                        rng.integers(0, len(STRUCTURE_CLASSES), size=total, dtype=np.uint8),
                        lengths, pairs, counts)
    return read_meta(directory)


def tiled_split(source: str | Path, directory: str | Path, n: int) -> dict:
    """A packed split of ``n`` rows that repeats the rows of the packed split ``source`` in
    order (copy k's ids get the suffix ``#k``): the same length mix and labels as the source at
    any size, so what changes between the two is the split's size alone."""
    src = Path(source)
    meta = read_meta(src)
    if meta["n"] == 0:
        raise ValueError(f"{src} is empty; nothing to tile")
    arr = {name: np.fromfile(src / f"{name}.bin", dtype=dtype).reshape(-1, *shape)
           for name, (dtype, shape) in ARRAYS.items()}
    ids = [arr["ids"][a:b].tobytes().decode() for a, b in
           zip(arr["id_offsets"][:-1].tolist(), arr["id_offsets"][1:].tolist(), strict=True)]
    lengths = np.diff(arr["offsets"])
    pair_counts = np.diff(arr["pair_offsets"])
    with PackWriter(directory, source={"tiled": str(src), "n": n}) as w:
        for copy, start in enumerate(range(0, n, meta["n"])):
            k = min(meta["n"], n - start)  # rows of this copy (the last may be cut)
            t_end, p_end = int(arr["offsets"][k]), int(arr["pair_offsets"][k])
            w.add_block([f"{rid}#{copy}" for rid in ids[:k]], arr["tokens"][:t_end],
                        arr["elements"][:t_end], lengths[:k], arr["pairs"][:p_end],
                        pair_counts[:k])
    return read_meta(directory)


def _memory(pid: int) -> dict:
    proc = psutil.Process(pid)
    full = proc.memory_full_info()
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        status = dict(line.split(":", 1) for line in fh if ":" in line)
    peak_kib = int(status["VmHWM"].split()[0])
    return {"peak_rss_mib": peak_kib / 1024, "rss_mib": full.rss / MIB,
            "uss_mib": full.uss / MIB, "pss_mib": full.pss / MIB}


def loader_memory(packed_dir: str | Path, n_batches: int = 200, batch_size: int = 32,
                  num_workers: int = 2, max_len: int = 512, seed: int = 0) -> dict:
    """Memory of this process and its loader workers after ``n_batches`` training batches
    (run it in a fresh process: the peak RSS is the process's since it started)."""
    import torch

    from genesis_rna.data import BucketBatchSampler, RNADataset, make_loader
    from genesis_rna.packed import PackedSplit

    torch.set_num_threads(1)
    data = PackedSplit(packed_dir)
    t0 = time.perf_counter()
    sampler = BucketBatchSampler(data.lengths, batch_size, seed, shuffle=True)
    sampler.set_epoch(0)
    sampler.is_placeholder(0)  # builds the epoch's order now, to time it apart
    order_s = time.perf_counter() - t0
    loader = make_loader(RNADataset(data, max_len, 0.15, seed, train=True), sampler, max_len,
                         32, num_workers, seed)
    t0 = time.perf_counter()
    it = iter(loader)
    nt = 0
    for _ in range(min(n_batches, len(sampler))):
        nt += int(next(it)["lengths"].sum())
    iter_s = time.perf_counter() - t0
    workers = [c.pid for c in psutil.Process().children() if c.is_running()]
    out = {"sequences": len(data), "batches": min(n_batches, len(sampler)),
           "batch_size": batch_size, "num_workers": num_workers, "order_s": order_s,
           "iterate_s": iter_s, "nt": nt, "main": _memory(psutil.Process().pid),
           "workers": [_memory(pid) for pid in workers]}
    del it
    return out


def _child(queue, packed_dir, kwargs) -> None:
    try:
        queue.put(("ok", loader_memory(packed_dir, **kwargs)))
    except BaseException as exc:  # reported to the parent, which raises it
        queue.put(("error", repr(exc)))


def loader_memory_benchmark(packed_dirs: dict[str, str | Path], **kwargs) -> dict[str, dict]:
    """``loader_memory`` of each packed split, each in a fresh (spawned) process."""
    ctx = mp.get_context("spawn")
    results = {}
    for name, path in packed_dirs.items():
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(queue, str(path), kwargs))
        proc.start()
        status, value = queue.get()
        proc.join()
        if status != "ok":
            raise RuntimeError(f"loader memory of {path}: {value}")
        results[name] = value
    return results
