"""seqio: the one opener (gzip told by magic bytes, not by name), numbered lines, FASTA records."""

from __future__ import annotations

import gzip

import pytest

from genesis_rna.errors import InputFileError
from genesis_rna.seqio import FastaRecord, open_input, read_fasta, text_lines

TEXT = ">a first\nACGU\nGG\n\n>b\nUUUU\n"


def test_gzip_is_detected_by_magic_bytes_whatever_the_name(tmp_path):
    disguised = tmp_path / "plain_looking.fa"  # gzip content, plain name
    disguised.write_bytes(gzip.compress(TEXT.encode()))
    misnamed = tmp_path / "compressed_looking.fa.gz"  # plain content, gzip name
    misnamed.write_text(TEXT)
    assert disguised.read_bytes()[:2] == b"\x1f\x8b" != misnamed.read_bytes()[:2]
    for path in (disguised, misnamed):
        with open_input(path) as fh:
            assert fh.read() == TEXT.encode()
        with open_input(path, text=True) as fh:
            assert fh.read() == TEXT
        assert [r.title for r in read_fasta(path)] == ["a first", "b"]
        assert list(text_lines(path))[:2] == [(1, ">a first"), (2, "ACGU")]


def _truncated_gzip(tmp_path, name="cut.fa"):
    records = "".join(f">r{i}\n{'ACGU' * (i % 50 + 5)}\n" for i in range(3000)).encode()
    whole = gzip.compress(records)
    path = tmp_path / name
    path.write_bytes(whole[: len(whole) // 2])
    return path


@pytest.mark.parametrize("read", [
    lambda p: list(read_fasta(p)),
    lambda p: list(text_lines(p)),
])
def test_truncated_gzip_error_names_the_file_and_line(tmp_path, read):
    path = _truncated_gzip(tmp_path)
    with pytest.raises(InputFileError, match="truncated or corrupt gzip data") as info:
        read(path)
    assert info.value.path == str(path) and info.value.line is not None
    assert str(info.value).startswith(f"{path}:{info.value.line}: ")


def test_gzip_error_inside_an_open_block_names_the_file(tmp_path):
    path = _truncated_gzip(tmp_path)
    with pytest.raises(InputFileError, match="truncated or corrupt gzip data") as info:
        with open_input(path) as fh:
            fh.read()
    assert info.value.path == str(path)


def test_missing_file_and_bad_utf8_text(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        with open_input(tmp_path / "nope.fa"):
            pass
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"id\tx\na\t\xff\xfe\n")
    with pytest.raises(InputFileError, match="not UTF-8 text near line") as info:  # decoded in chunks
        list(text_lines(bad))
    assert info.value.path == str(bad)


def test_fasta_records_carry_header_lines_and_optional_body_lines(tmp_path):
    path = tmp_path / "in.fa"
    path.write_bytes(b"\xef\xbb\xbf\n>a first\r\nAC GU\r\nGG\n\n>b\nUUUU\n>c\n")
    assert list(read_fasta(path)) == [
        FastaRecord("a first", "ACGUGG", 2), FastaRecord("b", "UUUU", 6), FastaRecord("c", "", 8)]
    kept = list(read_fasta(path, keep_lines=True))
    assert [r.lines for r in kept] == [("AC GU", "GG"), ("UUUU",), ()]


def test_comment_lines_are_skipped_only_when_asked(tmp_path):
    path = tmp_path / "s.db"
    path.write_text("# made by hand\n>a\nGGAAACC\n  # note\n((...))\n")
    (rec,) = read_fasta(path, comment="#", keep_lines=True)
    assert rec.lines == ("GGAAACC", "((...))") and rec.line == 2
    with pytest.raises(InputFileError, match="not a FASTA file") as info:
        list(read_fasta(path))
    assert str(info.value).startswith(f"{path}:1:")


@pytest.mark.parametrize(("content", "message", "line"), [
    (b"", "no FASTA records", None),
    (b"\n \n", "no FASTA records", None),
    (b"ACGU\n>a\nACGU\n", "expected a '>' header", 1),
    (b">a\nAC\x00GU\n", "NUL byte", 2),
    (b">a\nAC\xffGU\n", "not UTF-8", 2),
])
def test_fasta_input_errors_name_file_and_line(tmp_path, content, message, line):
    path = tmp_path / "in.fa"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=message) as info:
        list(read_fasta(path))
    assert info.value.path == str(path) and info.value.line == line
