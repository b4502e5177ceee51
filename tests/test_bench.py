"""The scale benchmark's synthetic corpora are what they claim: k copies, none a duplicate."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from genesis_rna.bench import mutate_sequences, synthetic_corpus, synthetic_split_table
from genesis_rna.fasta import parse_fasta
from genesis_rna.packed import pack_table


def test_mutations_change_every_sequence_and_are_seeded():
    seqs = ["ACGU" * 10, "G", "acgtn" * 4, ""]
    out = mutate_sequences(seqs, np.random.default_rng(1))
    assert [len(s) for s in out] == [len(s) for s in seqs]
    assert all(a != b for a, b in zip(seqs[:3], out[:3], strict=True)) and out[3] == ""
    assert all(a == b or b in "ACGU" for s, o in zip(seqs, out, strict=True)
               for a, b in zip(s, o, strict=True))
    assert out == mutate_sequences(seqs, np.random.default_rng(1))


def test_synthetic_corpus_parses_to_copies_that_are_not_duplicates(tmp_path):
    fasta = tmp_path / "seed.fa"
    rng = np.random.default_rng(0)
    fasta.write_text("".join(
        f">s{k}/1-60 RF{k:05d}\n{''.join(rng.choice(list('ACGU'), 60))}\n" for k in range(50)))
    assert synthetic_corpus(fasta, 4, tmp_path / "x4.fa.gz") == 200
    stats = parse_fasta(tmp_path / "x4.fa.gz", tmp_path / "s.parquet", tmp_path / "r.parquet",
                        tmp_path / "s.json", min_length=1, progress=False)
    assert stats["records_read"] == stats["kept"] == 200, stats
    ids = pq.read_table(tmp_path / "s.parquet", columns=["id"]).column(0).to_pylist()
    assert ids[:2] == ["s0/1-60", "s1/1-60"] and ids[50] == "m1_s0/1-60"


def test_synthetic_split_table_packs(tmp_path):
    tsv = tmp_path / "st.tsv"
    tsv.write_text("id\tsequence\tstructure\n"
                   "a\tGGGAAACCC\t(((...)))\n"
                   "b\tACGUACGUAC\t..((...)).\n")
    assert synthetic_split_table(tsv, 3, tmp_path / "t.parquet") == 6
    meta = pack_table(tmp_path / "t.parquet", tmp_path / "packed")
    assert meta["n"] == 6 and meta["n_tokens"] == 3 * 19 and meta["n_pairs"] == 3 * 5
