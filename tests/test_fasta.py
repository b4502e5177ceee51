"""parse_fasta: normalization, every rejection reason, bad inputs, duplicate merging, real data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from genesis_rna.errors import ConfigError, InputFileError
from genesis_rna.fasta import main, parse_fasta, parse_header
from genesis_rna.tables import REJECTED, SEQUENCES
from tests.helpers import shared_data


def run(tmp_path: Path, content: str | bytes, name: str = "in.fa", **kwargs):
    """Write ``content`` and parse it; return (kept rows by id, rejected rows, stats)."""
    fasta = tmp_path / name
    if isinstance(content, str):
        content = content.encode()
    if name.endswith(".gz"):
        content = gzip.compress(content)
    fasta.write_bytes(content)
    out = tmp_path / "out"
    kwargs = {"min_length": 1, "max_length": None, **kwargs}
    stats = parse_fasta(
        fasta, out / "seq.parquet", out / "rej.parquet", out / "stats.json", progress=False, **kwargs
    )
    seqs = pq.read_table(out / "seq.parquet")
    rej = pq.read_table(out / "rej.parquet")
    assert seqs.schema.equals(SEQUENCES) and rej.schema.equals(REJECTED)
    assert json.loads((out / "stats.json").read_text()) == stats
    assert stats["records_read"] == stats["kept"] + stats["rejected"]
    assert stats["kept"] == seqs.num_rows and stats["rejected"] == rej.num_rows
    return {r["id"]: r for r in seqs.to_pylist()}, rej.to_pylist(), stats


def reason_of(rejected: list[dict], rec_id: str) -> str:
    (row,) = [r for r in rejected if r["id"] == rec_id]
    return row["reason"]


def test_normal_records_and_rnacentral_headers(tmp_path):
    kept, rejected, stats = run(
        tmp_path,
        ">URS0000000001_9606 Homo sapiens small RNA\nACGU\nACGU\n"
        ">URS00000000AB tax-less\nGGGGCCCC\n"
        ">X01556.1/3-118 RF00001 5S_rRNA Gene;rRNA;\nCUUGACGAUC\n"
        ">plain\nAAAA\n",
    )
    assert rejected == []
    a = kept["URS0000000001_9606"]
    assert a["taxid"] == 9606 and a["description"] == "Homo sapiens small RNA"
    assert a["sequence"] == "ACGUACGU" and a["length"] == 8 and a["duplicates"] == 0
    assert a["n_ambiguous"] == 0 and len(a["seq_hash"]) == 40
    assert kept["URS00000000AB"]["taxid"] is None
    assert kept["X01556.1/3-118"]["description"] == "RF00001 5S_rRNA Gene;rRNA;"
    assert kept["plain"]["description"] == ""
    assert stats["records_read"] == 4 and stats["total_nt"] == 30
    assert (stats["length_min"], stats["length_median"], stats["length_max"]) == (4, 8.0, 10)


def test_parse_header():
    assert parse_header("URS0000000001_9606 desc x") == ("URS0000000001_9606", "desc x", 9606)
    assert parse_header("URS0000000001") == ("URS0000000001", "", None)
    assert parse_header("URSX_12 y") == ("URSX_12", "y", None)


def test_lowercase_dna_crlf_and_spaces(tmp_path):
    kept, rejected, _ = run(tmp_path, ">a\r\nacgt tg\r\nTTAA\r\n>b\r\nggcc\r\n")
    assert rejected == []
    assert kept["a"]["sequence"] == "ACGUUGUUAA" and kept["b"]["sequence"] == "GGCC"


def test_iupac_to_n_and_reject(tmp_path):
    content = ">a\nACGURYACGUACGUACGUAC\n>b\nACGUACGUACGUACGUACGU\n>c\nACGUNACGUACGUACGUACG\n"
    kept, rejected, stats = run(tmp_path, content, max_ambiguous_fraction=0.1)
    assert kept["a"]["sequence"] == "ACGUNNACGUACGUACGUAC" and kept["a"]["n_ambiguous"] == 2
    assert stats["iupac_converted_to_n"] == 2
    kept, rejected, stats = run(tmp_path, content, iupac="reject")
    assert list(kept) == ["b", "c"]  # N is left to max_ambiguous_fraction
    assert reason_of(rejected, "a") == "IUPAC ambiguity code 'R' at position 5 (iupac=reject)"
    assert stats["rejected_by_reason"] == {"IUPAC code": 1}


def test_illegal_gap_and_empty_records_are_rejected_with_reasons(tmp_path):
    kept, rejected, stats = run(
        tmp_path, ">ok\nACGU\n>x\nACGUxACGU\n>gap\nAC-GU\n>dot\nAC.GU\n>empty\n\n>ok2\nGG\n"
    )
    assert sorted(kept) == ["ok", "ok2"]
    assert reason_of(rejected, "x") == "illegal character 'x' at position 5"
    assert "gap characters ('-' at position 3)" in reason_of(rejected, "gap")
    assert "gap characters ('.' at position 3)" in reason_of(rejected, "dot")
    assert reason_of(rejected, "empty") == "empty sequence"
    assert {r["id"]: r["line"] for r in rejected} == {"x": 3, "gap": 5, "dot": 7, "empty": 9}
    assert stats["rejected_by_reason"] == {
        "illegal character": 1, "gap characters": 2, "empty sequence": 1
    }


def test_duplicate_ids_keep_the_first(tmp_path):
    kept, rejected, _ = run(tmp_path, ">a one\nACGU\n>b\nGGGG\n>a two\nCCCC\n")
    assert kept["a"]["description"] == "one"
    assert rejected == [{"id": "a", "line": 5, "reason": "duplicate id, first seen at line 1"}]


def test_duplicate_id_is_checked_before_the_sequence(tmp_path):
    """A repeated id is rejected as such whatever its sequence (invalid, or a copy of a kept
    one, which then counts no copy); a rejected first occurrence still claims its id."""
    kept, rejected, stats = run(
        tmp_path,
        ">short\nAC\n>a\nGGGGCC\n>a\nAC-GU\n>a\nGGGGCC\n>short\nACGUACGU\n>b\nGGGGCC\n>c\nUUUU\n",
        min_length=3, row_group_size=2,
    )
    assert sorted(kept) == ["a", "c"] and kept["a"]["duplicates"] == 1
    assert rejected == [
        {"id": "short", "line": 1, "reason": "length 2 < min_length 3"},
        {"id": "a", "line": 5, "reason": "duplicate id, first seen at line 3"},
        {"id": "a", "line": 7, "reason": "duplicate id, first seen at line 3"},
        {"id": "short", "line": 9, "reason": "duplicate id, first seen at line 1"},
        {"id": "b", "line": 11, "reason": "exact duplicate of a"},
    ]  # in input order
    assert stats["rejected_by_reason"] == {"too short": 1, "duplicate id": 3, "exact duplicate": 1}


def test_exact_duplicates_are_merged_and_counted(tmp_path):
    kept, rejected, stats = run(
        tmp_path,
        ">a\nACGUACGU\n>b\nacgtacgt\n>c\nGGGG\n>d\nACGU\nACGU\n>e\nGGGG\n",
        row_group_size=2,  # the count fill-in pass must work across row groups
    )
    assert sorted(kept) == ["a", "c"]
    assert kept["a"]["duplicates"] == 2 and kept["c"]["duplicates"] == 1
    assert reason_of(rejected, "d") == "exact duplicate of a"
    assert reason_of(rejected, "e") == "exact duplicate of c"
    assert stats["duplicates_merged"] == 3


def test_length_filter_and_n_fraction(tmp_path):
    kept, rejected, stats = run(
        tmp_path,
        ">short\nACG\n>fits\nACGUA\n>long\nACGUACGUACG\n>ns\nNNACGUACGU\n>ns_ok\nNACGUACGUA\n",
        min_length=4, max_length=10, max_ambiguous_fraction=0.1,
    )
    assert sorted(kept) == ["fits", "ns_ok"]
    assert reason_of(rejected, "short") == "length 3 < min_length 4"
    assert reason_of(rejected, "long") == "length 11 > max_length 10"
    assert reason_of(rejected, "ns") == (
        "ambiguous (N) fraction 0.200 > max_ambiguous_fraction 0.1"
    )
    assert stats["rejected_by_reason"] == {"too short": 1, "too long": 1, "ambiguous fraction": 1}


def test_gzip_input_is_read_transparently(tmp_path):
    kept, _, stats = run(tmp_path, ">a\nACGU\n>b\nGGCC\n", name="in.fa.gz")
    assert sorted(kept) == ["a", "b"] and stats["kept"] == 2


def outputs_left(tmp_path: Path) -> list[str]:
    out = tmp_path / "out"
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def call(tmp_path: Path, content: bytes, name: str = "in.fa"):
    fasta = tmp_path / name
    fasta.write_bytes(content)
    out = tmp_path / "out"
    return parse_fasta(
        fasta, out / "seq.parquet", out / "rej.parquet", out / "stats.json", progress=False
    )


@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        (b"id,sequence\nx,ACGU\n", "not a FASTA file", 1),
        (b"\n\nACGU\n>a\nACGU\n", "not a FASTA file", 3),
        (b">a\nACGU\n\x00\x01\x02\x03binary", "NUL byte", 3),
        (b">a\nAC\xff\xfeGU\n", "not UTF-8", 2),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8", 1),
        (b">a\nACGU\n>b\nAC\x00GU\n", "NUL byte", 4),
    ],
)
def test_not_fasta_and_binary_input(tmp_path, content, message, line):
    with pytest.raises(InputFileError, match=message) as info:
        call(tmp_path, content)
    assert str(info.value).startswith(f"{tmp_path / 'in.fa'}:{line}:")
    assert outputs_left(tmp_path) == []


def test_empty_file(tmp_path):
    with pytest.raises(InputFileError, match="no FASTA records"):
        call(tmp_path, b"")
    with pytest.raises(InputFileError, match="no FASTA records"):
        call(tmp_path, b"\n \n")
    assert outputs_left(tmp_path) == []


def test_truncated_gzip_leaves_no_outputs(tmp_path):
    records = "".join(f">r{i}\n{'ACGU' * (i % 50 + 5)}\n" for i in range(3000)).encode()
    whole = gzip.compress(records)
    with pytest.raises(InputFileError, match="truncated or corrupt gzip") as info:
        call(tmp_path, whole[: len(whole) // 2], name="in.fa.gz")
    assert str(tmp_path / "in.fa.gz") in str(info.value)
    assert outputs_left(tmp_path) == []


def test_bad_parameters_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="parse.iupac"):
        call_kwargs(tmp_path, iupac="keep")
    with pytest.raises(ConfigError, match="parse.max_length"):
        call_kwargs(tmp_path, min_length=10, max_length=5)


def call_kwargs(tmp_path: Path, **kwargs):
    fasta = tmp_path / "in.fa"
    fasta.write_text(">a\nACGU\n")
    out = tmp_path / "out"
    return parse_fasta(fasta, out / "s", out / "r", out / "j", progress=False, **kwargs)


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.fa"
    bad.write_text("hello\n")
    out = tmp_path / "out"
    args = [str(bad), "--sequences", str(out / "s.parquet"), "--rejected", str(out / "r.parquet"),
            "--stats", str(out / "s.json"), "--no_progress"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}:1: not a FASTA file") and "Traceback" not in err
    good = tmp_path / "good.fa"
    good.write_text(">a\nACGU\n>b\nAC\n")
    args[0] = str(good)
    assert main([*args, "--min_length", "3", "--max_length", "0"]) == 0
    assert json.loads((out / "s.json").read_text())["kept"] == 1


@pytest.mark.realdata
def test_rfam_seed_first_records(tmp_path):
    path = shared_data("rfam14.9_seed.fasta.gz")
    lines = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.startswith(">") and sum(1 for x in lines if x.startswith(">")) == 5000:
                break
            lines.append(line)
    kept, rejected, stats = run(tmp_path, "".join(lines), name="rfam.fa.gz")
    assert stats["records_read"] == 5000
    assert stats["kept"] > 4000
    assert all(set(r["sequence"]) <= set("ACGUN") for r in kept.values())
    assert all(r["length"] == len(r["sequence"]) for r in kept.values())
    first = kept["X01556.1/3-118"]
    assert first["description"] == "RF00001 5S_rRNA Gene;rRNA;" and first["length"] == 116
    merged = sum(r["duplicates"] for r in kept.values())
    assert merged == stats["duplicates_merged"] == stats["rejected_by_reason"].get(
        "exact duplicate", 0
    )
    assert all(r["line"] >= 1 and r["reason"] for r in rejected)


def test_arrow_pool_is_switched_for_the_parse_and_restored(tmp_path, monkeypatch):
    import pyarrow as pa

    import genesis_rna.fasta as fasta_module

    before = pa.default_memory_pool().backend_name
    seen = []
    original = fasta_module._write_group
    monkeypatch.setattr(fasta_module, "_write_group", lambda *a: (
        seen.append(pa.default_memory_pool().backend_name), original(*a)))
    run(tmp_path, ">a\nACGU\n>b\nACGU\n")
    assert seen and set(seen) <= {"jemalloc", "system"}  # purges freed memory at once
    assert pa.default_memory_pool().backend_name == before
