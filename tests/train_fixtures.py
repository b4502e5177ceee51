"""Tiny split tables for trainer tests: random sequences folded by ViennaRNA."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import RNA

from genesis_rna.structures import element_labels, parse_dot_bracket
from genesis_rna.tables import SPLITS, write_table

REPO = Path(__file__).resolve().parents[1]


def make_rows(n: int, seed: int, min_len: int = 20, max_len: int = 60, split: str = "train"):
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        seq = "".join(rng.choice(list("ACGU"), size=length))
        structure, energy = RNA.fold(seq)
        pairs = parse_dot_bracket(structure)
        rows.append({
            "id": f"{split}_{seed}_{k}", "description": "random", "sequence": seq,
            "length": length, "structure": structure,
            "pair_i": [i for i, _ in pairs], "pair_j": [j for _, j in pairs],
            "elements": element_labels(pairs, length), "energy": float(energy),
            "label_source": f"ViennaRNA {RNA.__version__}", "cluster": f"{split}_{seed}_{k}",
            "split": split,
        })
    return rows


def make_splits(directory: Path, n_train: int = 48, n_val: int = 16, seed: int = 0,
                min_len: int = 20, max_len: int = 60) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("val", n_val, seed + 1000),
                        ("test", n_val, seed + 2000)):
        rows = make_rows(n, s, min_len, max_len, split)
        write_table(directory / f"{split}.parquet", pa.Table.from_pylist(rows, schema=SPLITS))
    return directory


TINY_ARGS = [
    "--model_size", "tiny", "--batch_size", "8", "--mixed_precision", "fp32", "--device", "cpu",
    "--threads", "1", "--warmup_steps", "2", "--learning_rate", "3e-3", "--num_workers", "0",
    "--no-progress", "--max_len", "64", "--pair_conv_layers", "1", "--pair_conv_channels", "4",
]


def run_cli(args: list[str], timeout: float = 300, env: dict | None = None, **kwargs
            ) -> subprocess.CompletedProcess:
    env = {**(os.environ if env is None else env), "PYTHONWARNINGS": "default"}
    return subprocess.run([sys.executable, "-m", "genesis_rna.train_pretrain", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
