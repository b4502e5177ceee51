"""Small builders shared by tests (tables of the stage contracts, paths to real data)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from genesis_rna.tables import ANNOTATIONS, write_table

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


# What each real-data file is, so a skip says what to fetch (outsiders have no README there).
REAL_DATA = {
    "rfam14.9_seed.fasta.gz": "the Rfam 14.9 seed sequences as ungapped FASTA "
                              "(>NAME/START-END FAMILY_ACC FAMILY_ID TYPE), from Rfam's Rfam.seed",
    "rfam14.9_seed_structures.tsv.gz": "the same Rfam 14.9 seed sequences with family, clan and "
                                       "the family's SS_cons projected on each (TSV: id, family, "
                                       "family_id, type, clan, length, sequence, structure)",
    "archiveII_bpseq.tar.gz": "ArchiveII (Sloma & Mathews 2016) as a tarball of .bpseq files",
    "bprna_vl0.csv.gz": "bpRNA-1m VL0 as CSV (id, sequence, structure, base_pairs, len)",
}


def shared_data(name: str) -> Path:
    """Path to a file of ../shared/data, or skip the test saying which data it needs."""
    path = SHARED_DATA / name
    if not path.exists():
        what = REAL_DATA.get(name, "a real-data file")
        pytest.skip(f"needs {name}: {what}; place it at {path}")
    return path


def need_mmseqs() -> None:
    if shutil.which("mmseqs") is None:
        pytest.skip("mmseqs (MMseqs2) is not installed: apt-get install mmseqs2")


def random_rna(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGU") for _ in range(n))


def mutate(rng: random.Random, seq: str, rate: float) -> str:
    return "".join(rng.choice("ACGU".replace(c, "")) if rng.random() < rate else c for c in seq)


def family_rows(n_families: int, members: int, seed: int = 0, rate: float = 0.03) -> list[dict]:
    """Annotation rows: n_families of `members` near-identical sequences each (unstructured)."""
    rng = random.Random(seed)
    rows = []
    for f in range(n_families):
        parent = random_rna(rng, rng.randint(80, 150))
        for m in range(members):
            seq = parent if m == 0 else mutate(rng, parent, rate)
            rows.append(
                {
                    "id": f"fam{f:03d}_m{m}",
                    "description": f"family {f}",
                    "sequence": seq,
                    "length": len(seq),
                    "structure": "." * len(seq),
                    "pair_i": [],
                    "pair_j": [],
                    "elements": "E" * len(seq),
                    "energy": 0.0,
                    "label_source": "test",
                }
            )
    return rows


def write_annotations(path: Path, rows: list[dict]) -> Path:
    write_table(path, pa.Table.from_pylist(rows, schema=ANNOTATIONS))
    return path
