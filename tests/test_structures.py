"""Structure formats and bpRNA element labels: hand-worked cases, malformed files, real data."""

from __future__ import annotations

import collections
import gzip
import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genesis_rna.errors import InputFileError
from genesis_rna.structures import (
    StructureRecord,
    element_labels,
    iter_bpseq_archive,
    pairs_to_dot_bracket,
    parse_dot_bracket,
    read_bpseq,
    read_ct,
    read_dot_bracket_fasta,
    read_provided_structures,
    read_structure_csv,
    split_pseudoknots,
)
from tests.helpers import shared_data


def labels(db: str) -> str:
    return element_labels(parse_dot_bracket(db), len(db))


# ------------------------------------------------------------------------------ dot-bracket


def test_parse_dot_bracket_pairs_are_zero_based_and_sorted():
    assert parse_dot_bracket("((..))") == [(0, 5), (1, 4)]
    assert parse_dot_bracket("(.[.).]") == [(0, 4), (2, 6)]
    assert parse_dot_bracket("A.(.a.)") == [(0, 4), (2, 6)]
    assert parse_dot_bracket(".,_-:~") == []
    assert parse_dot_bracket("") == []


@pytest.mark.parametrize(
    ("db", "position"),
    [("(()", "position 1 "), ("())", "position 3 "), ("..(..[..)..", "position 6 ")],
)
def test_unbalanced_brackets_name_the_position(db, position):
    with pytest.raises(InputFileError, match="unbalanced") as info:
        parse_dot_bracket(db, source="x.tsv", line=7)
    assert position in str(info.value)
    assert str(info.value).startswith("x.tsv:7:")


def test_unknown_character_is_rejected_with_position():
    with pytest.raises(InputFileError, match=r"'\*' at position 3 "):
        parse_dot_bracket("((*))")


def test_pseudoknot_rendered_with_square_brackets():
    pairs = [(0, 9), (1, 8), (4, 13), (5, 12)]
    assert pairs_to_dot_bracket(pairs, 14) == "((..[[..))..]]"
    nested, knotted = split_pseudoknots(pairs)
    assert nested == [(0, 9), (1, 8)] and knotted == [(4, 13), (5, 12)]
    # a third crossing layer goes to {}
    three = [(0, 4), (2, 6), (3, 8)]
    assert pairs_to_dot_bracket(three, 9) == "(.[{).].}"
    assert parse_dot_bracket(pairs_to_dot_bracket(three, 9)) == three


def test_pairs_to_dot_bracket_rejects_conflicting_pairs():
    with pytest.raises(ValueError, match="conflicts"):
        pairs_to_dot_bracket([(0, 5), (0, 6)], 8)
    with pytest.raises(ValueError, match="invalid pair"):
        pairs_to_dot_bracket([(0, 8)], 8)


# ------------------------------------------------------------------------------ element labels


def test_hairpin_and_exterior():
    assert labels("((....))") == "SSHHHHSS"
    assert labels("..((...))..") == "EESSHHHSSEE"
    assert labels("....") == "EEEE"


def test_bulge_versus_internal_loop():
    # one unpaired base on the 5' side only: bulge
    assert labels("((.((...))))") == "SSBSSHHHSSSS"
    # on the 3' side only: also a bulge
    assert labels("((((...))..))") == "SSSSHHHSSBBSS"
    # on both sides: internal loop
    assert labels("((.((...)).))") == "SSISSHHHSSISS"


def test_multiloop_and_dangling_ends():
    db = ".((..((...))..((...))..))."
    assert labels(db) == "ESSMMSSHHHSSMMSSHHHSSMMSSE"


def test_pseudoknot_pairs_are_stems_and_loops_come_from_the_nested_part():
    # nested part: ((........)) with a hairpin; the [[ ]] pairs are still S
    assert labels("((..[[..))..]]") == "SSHHSSHHSSEESS"


def test_labels_are_linear_enough_for_long_sequences():
    n = 3000
    db = "(" * 1400 + "." * 200 + ")" * 1400
    out = element_labels(parse_dot_bracket(db), n)
    assert out == "S" * 1400 + "H" * 200 + "S" * 1400


def _reference_labels(pairs: list[tuple[int, int]], length: int) -> str:
    """Quadratic restatement of the bpRNA rules, for cross-checking (nested input only)."""
    partner = {i: j for i, j in pairs} | {j: i for i, j in pairs}
    out = []
    for k in range(length):
        if k in partner:
            out.append("S")
            continue
        enclosing = [(i, j) for i, j in pairs if i < k < j]
        if not enclosing:
            out.append("E")
            continue
        i, j = max(enclosing)  # innermost: largest i among those enclosing k
        branches = [
            (a, b) for a, b in pairs
            if i < a and b < j and not any(i < c < a and b < d < j for c, d in pairs)
        ]
        if not branches:
            out.append("H")
        elif len(branches) == 1:
            a, b = branches[0]
            out.append("B" if a == i + 1 or b == j - 1 else "I")
        else:
            out.append("M")
    return "".join(out)


@st.composite
def nested_structures(draw) -> str:
    """Random balanced dot-bracket strings: stray ')' become '.', open '(' are closed at the end."""
    moves = draw(st.lists(st.sampled_from("(.)"), max_size=60))
    out, depth = [], 0
    for m in moves:
        if m == ")" and depth == 0:
            m = "."
        depth += {"(": 1, ")": -1, ".": 0}[m]
        out.append(m)
    return "".join(out) + ")" * depth


@settings(max_examples=300, deadline=None)
@given(nested_structures())
def test_random_nested_structures_round_trip_and_label(db):
    pairs = parse_dot_bracket(db)
    assert pairs_to_dot_bracket(pairs, len(db)) == db
    out = element_labels(pairs, len(db))
    assert len(out) == len(db)
    assert set(out) <= set("EHSBIM")
    assert out.count("S") == 2 * len(pairs)
    assert out == _reference_labels(pairs, len(db))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=25))
def test_random_pseudoknotted_pairs_round_trip(raw):
    used: set[int] = set()
    pairs = []
    for i, j in raw:
        if i != j and i not in used and j not in used:
            pairs.append((min(i, j), max(i, j)))
            used |= {i, j}
    pairs.sort()
    db = pairs_to_dot_bracket(pairs, 40)
    assert parse_dot_bracket(db) == pairs
    out = element_labels(pairs, 40)
    assert out.count("S") == 2 * len(pairs) and len(out) == 40


# ------------------------------------------------------------------------------ bpseq / ct


BPSEQ = "1 G 8\n2 G 7\n3 A 0\n4 A 0\n5 A 0\n6 a 0\n7 C 2\n8 t 1\n"


def test_read_bpseq_text_and_file(tmp_path):
    (rec,) = read_bpseq(BPSEQ, id="x")
    assert rec == StructureRecord("x", "GGAAAACU", [(0, 7), (1, 6)], None)
    f = tmp_path / "tRNA_yeast.bpseq"
    f.write_text("# comment\n" + BPSEQ.replace("\n", "\r\n"))
    (rec,) = read_bpseq(f, family="tRNA")
    assert rec.id == "tRNA_yeast" and rec.family == "tRNA" and rec.dot_bracket == "((....))"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("1 G 8\n2 G 7\n3 A 0\n4 A 0\n5 A 0\n6 A 0\n7 C 1\n8 C 1\n", 2, "asymmetric"),
        ("1 G 2\n2 C x\n", 2, "not an integer"),
        ("1 G 0\n3 C 0\n", 2, "index 3 where 2"),
        ("1 G 0\n2 C 9\n", 2, "outside 1..2"),
        ("1 G 0\n2 C\n", 2, "expected 3 columns"),
        ("1 G 1\n", 1, "itself"),
    ],
)
def test_malformed_bpseq_names_file_and_line(tmp_path, text, line, message):
    f = tmp_path / "bad.bpseq"
    f.write_text(text)
    with pytest.raises(InputFileError, match=message) as info:
        read_bpseq(f)
    assert str(info.value).startswith(f"{f}:{line}:")


def test_read_ct_single_and_multiple(tmp_path):
    ct = (
        "8 ENERGY = -1.2 demo\n"
        "1 G 0 2 8 1\n2 G 1 3 7 2\n3 A 2 4 0 3\n4 A 3 5 0 4\n"
        "5 A 4 6 0 5\n6 A 5 7 0 6\n7 C 6 8 2 7\n8 C 7 0 1 8\n"
    )
    f = tmp_path / "demo.ct"
    f.write_text(ct)
    (rec,) = read_ct(f)
    assert rec.id == "demo" and rec.sequence == "GGAAAACC" and rec.pairs == [(0, 7), (1, 6)]
    two = tmp_path / "two.ct"
    # second record (header on line 11 after a blank line): base 8 no longer pairs with base 1
    two.write_text(ct + "\n" + ct.replace("8 C 7 0 1 8", "8 C 7 0 0 8"))
    with pytest.raises(InputFileError, match="base 1 pairs with 8 but base 8 pairs with 0") as info:
        read_ct(two)
    assert str(info.value).startswith(f"{two}:12:")
    two.write_text(ct + ct)
    assert [r.id for r in read_ct(two)] == ["two_1", "two_2"]
    short = tmp_path / "short.ct"
    short.write_text(ct.rsplit("\n", 2)[0] + "\n")
    with pytest.raises(InputFileError, match="announces 8 bases"):
        read_ct(short)


# ------------------------------------------------------------------------------ FASTA / CSV


def test_read_dot_bracket_fasta(tmp_path):
    f = tmp_path / "s.db"
    f.write_text(
        ">a first\nGGAAACC\n((...))\n"
        ">b\nGGGA\nAACCC\n(((...)))  (-3.40)\n"
        ">c pk\nGGAAGGAACCAACC\n((..[[..))..]]\n"
    )
    recs = list(read_dot_bracket_fasta(f))
    assert [r.id for r in recs] == ["a", "b", "c"]
    assert recs[1].sequence == "GGGAAACCC" and recs[1].pairs == [(0, 8), (1, 7), (2, 6)]
    assert recs[2].pairs == [(0, 9), (1, 8), (4, 13), (5, 12)]
    bad = tmp_path / "bad.db"
    bad.write_text(">a\nGGAAACC\n((...))\n>b\nGGAAACC\n((....))\n")
    with pytest.raises(InputFileError, match="structure length 8 != sequence length 7") as info:
        list(read_dot_bracket_fasta(bad))
    assert str(info.value).startswith(f"{bad}:4:")


def test_read_structure_csv(tmp_path):
    f = tmp_path / "s.csv.gz"
    with gzip.open(f, "wt") as fh:
        fh.write("id,sequence,structure,base_pairs,len\n")
        fh.write('a,GGAAACC,((...)),"[[1, 7], [2, 6], [2, 6]]",7\n')
        fh.write("b,ggaaacc,.(...).,,7\n")
        fh.write('c,GGAAACC,.......,"[[1, 7], [3, 5]]",7\n')  # base_pairs wins
    recs = list(read_structure_csv(f))
    assert recs[0].pairs == [(0, 6), (1, 5)]
    assert recs[1].sequence == "GGAAACC" and recs[1].pairs == [(1, 5)]
    assert recs[2].pairs == [(0, 6), (2, 4)]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a,GGAAACC,((...),,7", "structure length 6 != sequence length 7"),
        ('a,GGAAACC,((...)),"[[1, 9]]",7', "outside 1..7"),
        ('a,GGAAACC,((...)),"[[1, 7], [7, 2]]",7', "base 7 is in two pairs"),
        ('a,GGAAACC,((...)),"[[1, 7",7', "not valid JSON"),
        ("a,GGAAACC,((...)),,8", "len 8 != sequence length 7"),
    ],
)
def test_malformed_csv_rows_name_the_line(tmp_path, row, message):
    f = tmp_path / "s.csv"
    f.write_text(f"id,sequence,structure,base_pairs,len\nok,GGAAACC,((...)),,7\n{row}\n")
    with pytest.raises(InputFileError, match=message) as info:
        list(read_structure_csv(f))
    assert str(info.value).startswith(f"{f}:3:")


def test_read_provided_structures_tsv_and_csv(tmp_path):
    tsv = tmp_path / "p.tsv.gz"
    with gzip.open(tsv, "wt") as fh:
        fh.write("id\tfamily\tstructure\nx/1-7\tRF1\t((...))\ny\tRF2\t.......\n")
    assert list(read_provided_structures(tsv)) == [("x/1-7", "((...))"), ("y", ".......")]
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("id,dot_bracket\nx,((..))\n")
    assert list(read_provided_structures(csv_file)) == [("x", "((..))")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("name\tstructure\nx\t..\n")
    with pytest.raises(InputFileError, match="needs columns 'id'"):
        list(read_provided_structures(bad))


def test_bpseq_archive_from_tarball_and_folder(tmp_path):
    folder = tmp_path / "arch"
    folder.mkdir()
    (folder / "5s_a.bpseq").write_text(BPSEQ)
    (folder / "tRNA_b_c.bpseq").write_text(BPSEQ)
    (folder / "README").write_text("not a structure")
    recs = list(iter_bpseq_archive(folder))
    assert [(r.id, r.family) for r in recs] == [("5s_a", "5s"), ("tRNA_b_c", "tRNA")]
    tar_path = tmp_path / "arch.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(folder, arcname="arch")
    assert [(r.id, r.family) for r in iter_bpseq_archive(tar_path)] == [
        (r.id, r.family) for r in recs
    ]
    bad_tar = tmp_path / "bad.tar.gz"
    with tarfile.open(bad_tar, "w:gz") as tar:
        data = b"1 G 0\n2 C 5\n"
        info = tarfile.TarInfo("x/grp1_bad.bpseq")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InputFileError, match="outside 1..2") as err:
        list(iter_bpseq_archive(bad_tar))
    assert "grp1_bad.bpseq]:2:" in str(err.value)
    truncated = tmp_path / "trunc.tar.gz"
    truncated.write_bytes(tar_path.read_bytes()[:-40])
    with pytest.raises(InputFileError, match="truncated"):
        list(iter_bpseq_archive(truncated))


# ------------------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_archiveii_tarball_parses_fully():
    path = shared_data("archiveII_bpseq.tar.gz")
    recs = list(iter_bpseq_archive(path))
    assert len(recs) == 3975
    families = collections.Counter(r.family for r in recs)
    assert families == {
        "5s": 1283, "srp": 928, "tRNA": 557, "tmRNA": 462, "RNaseP": 454, "16s": 110,
        "grp1": 98, "telomerase": 37, "23s": 35, "grp2": 11,
    }
    assert sum(bool(split_pseudoknots(r.pairs)[1]) for r in recs) == 1086
    assert max(len(r.sequence) for r in recs) == 2968
    longest = max(recs, key=lambda r: len(r.sequence))
    out = element_labels(longest.pairs, len(longest.sequence))
    assert out.count("S") == 2 * len(longest.pairs)
    assert parse_dot_bracket(longest.dot_bracket) == longest.pairs


@pytest.mark.realdata
def test_bprna_vl0_csv_parses_fully():
    path = shared_data("bprna_vl0.csv.gz")
    recs = list(read_structure_csv(path))
    assert len(recs) == 1273
    assert all(set(r.sequence) <= set("ACGUNRYKMSWBDHV") for r in recs)
    assert any(split_pseudoknots(r.pairs)[1] for r in recs)


@pytest.mark.realdata
def test_rfam_provided_structures_parse():
    path = shared_data("rfam14.9_seed_structures.tsv.gz")
    n = 0
    for rec_id, db in read_provided_structures(path):
        parse_dot_bracket(db, source=str(path))
        n += 1
        assert rec_id
    assert n == 90190
