"""The shipped demo corpus matches its generator, and its designs are valid RNA folds."""

from __future__ import annotations

import gzip
import re
from collections import Counter
from pathlib import Path

import pytest

from genesis_rna.demo_corpus import (
    DEFAULT_MAX_LEN,
    DEFAULT_MIN_LEN,
    DEFAULT_N,
    DemoRecord,
    fasta_text,
    generate_demo_corpus,
    generate_demo_records,
    main,
    pair_table,
    structures_text,
    write_demo_corpus,
)

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
SHIPPED_FASTA = RESOURCES / "demo_corpus.fasta"
SHIPPED_STRUCTURES = RESOURCES / "demo_structures.tsv.gz"
CANONICAL = {"AU", "UA", "GC", "CG", "GU", "UG"}


@pytest.fixture(scope="module")
def records() -> list[DemoRecord]:
    return generate_demo_records()


def _normalized(seq: str) -> str:
    return seq.upper().replace("T", "U")


def test_shipped_fasta_is_reproduced_byte_for_byte(tmp_path: Path) -> None:
    # Regenerating through the writer (not just the text helper) must give the shipped bytes,
    # so the resource cannot drift from the code.
    out_fasta, out_struct = tmp_path / "demo.fasta", tmp_path / "demo_structures.tsv.gz"
    assert write_demo_corpus(out_fasta, out_struct) == DEFAULT_N
    assert out_fasta.read_bytes() == SHIPPED_FASTA.read_bytes()
    # gzip bytes depend on the zlib build, so compare the content for the structures table.
    assert gzip.decompress(out_struct.read_bytes()) == gzip.decompress(
        SHIPPED_STRUCTURES.read_bytes()
    )


def test_shipped_structures_match_shipped_fasta(records: list[DemoRecord]) -> None:
    lines = gzip.decompress(SHIPPED_STRUCTURES.read_bytes()).decode("ascii").splitlines()
    assert lines[0] == "id\tstructure"
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[0] for r in rows] == [r.id for r in records]
    assert [r[1] for r in rows] == [r.structure for r in records]
    assert gzip.decompress(SHIPPED_STRUCTURES.read_bytes()).decode() == structures_text(records)


def test_triples_match_records() -> None:
    full = generate_demo_records(n=50, seed=11)
    assert generate_demo_corpus(n=50, seed=11) == [(r.id, r.description, r.sequence) for r in full]


def test_ids_unique_and_descriptions_honest(records: list[DemoRecord]) -> None:
    assert len(records) == DEFAULT_N
    ids = [r.id for r in records]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"GENESIS_DEMO_\d{6}", i) for i in ids)
    for r in records:
        assert r.description.startswith("synthetic RNA-like sequence; designed fold: ")
        assert r.description.endswith("; seed 20261125")
        assert "\n" not in r.description and "\t" not in r.description


def test_lengths_within_bounds(records: list[DemoRecord]) -> None:
    lengths = [len(r.sequence) for r in records]
    assert min(lengths) >= DEFAULT_MIN_LEN and max(lengths) <= DEFAULT_MAX_LEN
    # A spread of lengths, not one size.
    assert max(lengths) - min(lengths) > 100
    assert all(len(r.structure) == len(r.sequence) for r in records)


def test_designed_structures_balanced_and_complementary(records: list[DemoRecord]) -> None:
    for r in records:
        seq = _normalized(r.sequence)
        partner = pair_table(r.structure)  # raises on unbalanced brackets
        n_pairs = 0
        for i, j in enumerate(partner):
            if j > i:
                n_pairs += 1
                assert seq[i] + seq[j] in CANONICAL, (r.id, i, seq[i], seq[j])
                assert j - i - 1 >= 3, (r.id, "hairpin shorter than 3 nt")
        assert n_pairs >= 4, r.id


def test_variety_for_the_workflow(records: list[DemoRecord]) -> None:
    by_id = {r.id: r for r in records}
    iupac = [r for r in records if re.search(r"[^ACGUTacgut]", r.sequence)]
    assert 40 <= len(iupac) <= 80
    for r in iupac:
        assert "variant: IUPAC codes" in r.description
        # Ambiguity codes sit only in loops, so every pair stays checkable.
        assert all(r.structure[i] == "." for i, c in enumerate(r.sequence) if c not in "ACGU")
    lower = [r for r in records if r.sequence != r.sequence.upper()]
    dna = [r for r in records if "T" in r.sequence.upper()]
    assert lower and dna and 20 <= len({r.id for r in lower + dna}) <= 40

    exact = [r for r in records if "variant: exact duplicate of" in r.description]
    assert len(exact) == 5
    for r in exact:
        parent = by_id[re.search(r"exact duplicate of (\S+);", r.description).group(1)]
        assert parent.id < r.id and parent.sequence == r.sequence
    seq_counts = Counter(r.sequence for r in records)
    assert sum(c - 1 for c in seq_counts.values()) == len(exact)

    near = [r for r in records if "variant: near-duplicate of" in r.description]
    assert 25 <= len(near) <= 35
    families = Counter()
    for r in near:
        m = re.search(r"near-duplicate of (\S+), (\d+)/(\d+) positions changed", r.description)
        parent = by_id[m.group(1)]
        families[parent.id] += 1
        diff = sum(a != b for a, b in zip(parent.sequence, r.sequence, strict=True))
        assert diff == int(m.group(2)) and 0.01 * len(r.sequence) - 1 < diff
        assert diff <= 0.05 * len(r.sequence) + 2
        assert r.structure == parent.structure
    assert all(size >= 2 for size in families.values())


def test_designs_are_viennarna_mfe_folds(records: list[DemoRecord]) -> None:
    # Stems are designed strong enough that ViennaRNA recovers most designed pairs; the
    # demo's folding labels then resemble the designs.
    rna = pytest.importorskip("RNA")

    def pairs(db: str) -> set[tuple[int, int]]:
        return {(i, j) for i, j in enumerate(pair_table(db)) if j > i}

    scores = []
    for r in records[::75]:  # 40 records across the file
        pred, ref = pairs(rna.fold(_normalized(r.sequence))[0]), pairs(r.structure)
        tp = len(pred & ref)
        scores.append(0.0 if tp == 0 else 2 * tp / (len(pred) + len(ref)))
    assert sum(scores) / len(scores) > 0.75


def test_seed_and_bounds_change_the_output() -> None:
    a = generate_demo_records(n=30)
    assert generate_demo_records(n=30) == a
    b = generate_demo_records(n=30, seed=7)
    assert [r.sequence for r in b] != [r.sequence for r in a]
    assert all(r.description.endswith("; seed 7") for r in b)
    short = generate_demo_records(n=30, min_len=20, max_len=60)
    assert all(20 <= len(r.sequence) <= 60 for r in short)
    assert generate_demo_records(n=0) == []


def test_bad_bounds_rejected() -> None:
    with pytest.raises(ValueError, match="min_len"):
        generate_demo_records(n=3, min_len=100, max_len=50)
    with pytest.raises(ValueError, match="widen the length bounds"):
        generate_demo_records(n=1, min_len=5, max_len=8)  # shortest design is 11 nt


def test_cli_writes_plain_tsv(tmp_path: Path) -> None:
    fasta, tsv = tmp_path / "out" / "c.fasta", tmp_path / "out" / "s.tsv"
    assert main(["--out", str(fasta), "--structures", str(tsv), "-n", "12", "--seed", "3"]) == 0
    recs = generate_demo_records(n=12, seed=3)
    assert fasta.read_text() == fasta_text(recs)
    assert tsv.read_text() == structures_text(recs)
    assert sorted(p.name for p in fasta.parent.iterdir()) == ["c.fasta", "s.tsv"]  # no temps
    with pytest.raises(SystemExit):
        main(["--out", str(fasta), "--min-len", "90", "--max-len", "10"])
