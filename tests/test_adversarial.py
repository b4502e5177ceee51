"""Adversarial inputs: arbitrary bytes and text into every reader, arbitrary config mappings.

For any input the outcome is either parsed records (with every record read accounted for as
kept or rejected) or a typed error naming the file or key: never another exception, never a
hang (each call runs under an alarm), never a silent loss.
"""

from __future__ import annotations

import contextlib
import gzip
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesis_rna.errors import ConfigError, GenesisError, InputFileError
from genesis_rna.fasta import parse_fasta
from genesis_rna.structures import (
    StructureRecord,
    parse_dot_bracket,
    read_bpseq,
    read_ct,
    read_dot_bracket_fasta,
    read_structure_csv,
)
from genesis_rna.train_config import MODEL_KEYS, TrainConfig, load_yaml_config

FUZZ = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
SECONDS_PER_CALL = 10  # far above any legitimate call on these sizes: exceeding it is a hang


@contextlib.contextmanager
def no_hang(seconds: int = SECONDS_PER_CALL) -> Iterator[None]:
    def fire(signum, frame):
        raise TimeoutError(f"call did not return within {seconds} s (hang)")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder per example (hypothesis reuses function-scoped fixtures)."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def _line(alphabet: str, max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, max_size=max_size)


# -- FASTA reader and normalizer ------------------------------------------------------------

FASTA_LINES = st.lists(
    st.one_of(
        _line("ACGUTacgutNRYKMSWBDHV-.*xX \t", 60),  # sequence lines, legal and illegal
        _line("ACGU", 60),
        st.builds(lambda s: ">" + s, st.text(max_size=30)),  # headers, any unicode
        st.builds(lambda s: ">" + s, _line("ab12 |_", 12)),  # headers with duplicate ids
        st.just(""),
        st.just(">"),
    ),
    max_size=30,
)
FASTA_BYTES = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda lines, eol: eol.join(lines).encode("utf-8"), FASTA_LINES,
              st.sampled_from(["\n", "\r\n", "\r"])),
    st.builds(lambda lines, junk: "\n".join(lines).encode("utf-8") + junk, FASTA_LINES,
              st.binary(max_size=20)),
)


def _check_fasta(content: bytes, name: str = "in.fa") -> None:
    with scratch() as tmp:
        fasta = tmp / name
        fasta.write_bytes(content)
        out = tmp / "out"
        outputs = [out / "sequences.parquet", out / "rejected.parquet", out / "stats.json"]
        try:
            with no_hang():
                stats = parse_fasta(fasta, *outputs, min_length=1, progress=False)
        except GenesisError as exc:
            assert isinstance(exc, InputFileError), repr(exc)
            assert exc.path == str(fasta), str(exc)
            left = sorted(p.name for p in out.iterdir()) if out.exists() else []
            assert left == [], f"outputs left after an error: {left}"
            return
        assert stats["records_read"] == stats["kept"] + stats["rejected"]
        assert pq.read_metadata(outputs[0]).num_rows == stats["kept"]
        assert pq.read_metadata(outputs[1]).num_rows == stats["rejected"]
        # Every header line of the input is one record read (none dropped silently). Lines end
        # at LF (CRLF included); a lone CR is not a line break.
        text = gzip.decompress(content) if name.endswith(".gz") else content
        lines = text.decode("utf-8").removeprefix("\ufeff").split("\n")
        headers = sum(1 for ln in lines if ln.startswith(">"))
        assert stats["records_read"] == headers, (stats, headers)


@FUZZ
@given(FASTA_BYTES)
def test_fasta_reader_on_arbitrary_bytes(content):
    _check_fasta(content)


@FUZZ
@given(FASTA_BYTES, st.integers(min_value=0, max_value=100))
def test_fasta_reader_on_arbitrary_gzip(content, cut):
    """Gzip input, whole or truncated at an arbitrary point."""
    data = gzip.compress(content, mtime=0)
    _check_fasta(data[: max(1, len(data) * cut // 100)], name="in.fa.gz")


# -- structure parsers ----------------------------------------------------------------------

DB_TEXT = st.one_of(st.text(max_size=80), _line(".()[]{}<>AaBbzZ-_", 80))


@FUZZ
@given(DB_TEXT)
def test_parse_dot_bracket_on_arbitrary_text(text):
    try:
        with no_hang():
            pairs = parse_dot_bracket(text)
    except InputFileError as exc:
        assert exc.path == "<string>"
        return
    assert all(0 <= i < j < len(text) for i, j in pairs)
    assert len({p for pair in pairs for p in pair}) == 2 * len(pairs)  # one partner per base


def _digits_lines(columns: int) -> st.SearchStrategy[str]:
    token = st.one_of(st.integers(-3, 12).map(str), _line("ACGUNacgu", 2), st.just("x"))
    return st.lists(st.lists(token, min_size=0, max_size=columns + 1).map(" ".join),
                    max_size=14).map("\n".join)


BPSEQ_TEXT = st.one_of(st.text(max_size=200), _digits_lines(3),
                       st.builds(lambda a, b: f"# comment\n{a}\n{b}", _digits_lines(3),
                                 st.text(max_size=20)))
CT_TEXT = st.one_of(st.text(max_size=200), _digits_lines(6),
                    st.builds(lambda n, body: f"{n} title\n{body}", st.integers(-2, 10),
                              _digits_lines(6)))
CSV_TEXT = st.one_of(
    st.text(max_size=200),
    st.builds(lambda header, rows: header + "\n" + "\n".join(rows),
              st.sampled_from(["id,sequence,structure,base_pairs", "id,sequence,structure",
                               "id,sequence,base_pairs", "id,seq", "id,sequence,structure,len"]),
              st.lists(st.lists(st.one_of(_line("ACGU", 8), _line(".()[]", 8),
                                          st.just("[[0, 5]]"), st.just("[[1,2],[2,3]]"),
                                          st.just('"a,b"'), st.text(max_size=6)),
                                max_size=5).map(",".join), max_size=6)),
)
DB_FASTA_TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(st.builds(lambda s: ">" + s, st.text(max_size=8)), _line("ACGU", 10),
                       _line(".()[]", 10), st.just("")), max_size=12).map("\n".join),
)


def _check_reader(reader, text: str, name: str) -> None:
    with scratch() as tmp:
        path = tmp / name
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        try:
            with no_hang():
                records = list(reader(path))
        except InputFileError as exc:
            assert exc.path.startswith(str(path)), str(exc)  # the file (or archive member)
            return
        for rec in records:
            assert isinstance(rec, StructureRecord)
            assert all(0 <= i < j < len(rec.sequence) for i, j in rec.pairs), rec


@FUZZ
@given(BPSEQ_TEXT)
def test_read_bpseq_on_arbitrary_text(text):
    _check_reader(read_bpseq, text, "x.bpseq")


@FUZZ
@given(st.binary(max_size=300))
def test_read_bpseq_on_arbitrary_bytes(content):
    with scratch() as tmp:
        path = tmp / "x.bpseq"
        path.write_bytes(content)
        try:
            with no_hang():
                read_bpseq(path)
        except InputFileError as exc:
            assert exc.path == str(path)


@FUZZ
@given(CT_TEXT)
def test_read_ct_on_arbitrary_text(text):
    _check_reader(read_ct, text, "x.ct")


@FUZZ
@given(CSV_TEXT)
def test_read_structure_csv_on_arbitrary_text(text):
    _check_reader(read_structure_csv, text, "x.csv")


@FUZZ
@given(DB_FASTA_TEXT)
def test_read_dot_bracket_fasta_on_arbitrary_text(text):
    _check_reader(read_dot_bracket_fasta, text, "x.db")


# -- trainer config loader ------------------------------------------------------------------

KNOWN_KEYS = [f.name for f in fields(TrainConfig)] + list(MODEL_KEYS)
YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.text(max_size=5), children, max_size=3),
    max_leaves=5,
)
YAML_KEYS = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=12))


def _check_config(path: Path, keys: set[str] = frozenset()) -> None:
    try:
        with no_hang():
            values = load_yaml_config(path)
            values = {**values, "data_path": "d", "output_dir": "o"}
            TrainConfig(**values)
    except ConfigError as exc:
        assert f"config key '{exc.key}'" in str(exc)
        # an unknown key is named as YAML read it (YAML normalizes some characters, and keys
        # may be null or numbers), so compare with the file's own keys as strings
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            loaded = None
        file_keys = {str(k) for k in loaded} if isinstance(loaded, dict) else set()
        head = exc.key.partition(".")[0]  # "model.pair_dim": a key under model:
        assert (exc.key == "config" or exc.key in KNOWN_KEYS or exc.key in keys
                or exc.key in file_keys or head in file_keys), str(exc)


@FUZZ
@given(st.dictionaries(YAML_KEYS, YAML_VALUES.filter(lambda v: v is not None), max_size=6))
def test_config_loader_on_arbitrary_mappings(mapping):
    """Top-level nulls are left out here: see test_config_loader_on_empty_values."""
    with scratch() as tmp:
        path = tmp / "train.yaml"
        path.write_text(yaml.safe_dump(mapping, allow_unicode=True))
        _check_config(path, set(mapping))


@FUZZ
@given(st.one_of(st.text(max_size=120), st.binary(max_size=120).map(
    lambda b: b.decode("latin-1"))))
def test_config_loader_on_arbitrary_text(text):
    with scratch() as tmp:
        path = tmp / "train.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _check_config(path)


@pytest.mark.parametrize("text", ["dropout:\n", "save_every_steps: null\n", "num_epochs: ~\n"])
def test_config_loader_on_empty_values(tmp_path, text):
    """``dropout:`` with no value is a config error naming the key, not a TypeError later."""
    path = tmp_path / "train.yaml"
    path.write_text(text)
    key = text.split(":")[0]
    with pytest.raises(ConfigError, match=key):
        TrainConfig(**{**load_yaml_config(path), "data_path": "d", "output_dir": "o"})


@pytest.mark.parametrize("mapping", [{"": None, 0: None}, {1: 2, "lr": 1}])
def test_config_loader_on_mixed_key_types(tmp_path, mapping):
    """Keys of several YAML types (``1:`` next to ``lr:``) are unknown keys, not a crash."""
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(mapping))
    with pytest.raises(ConfigError):
        load_yaml_config(path)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00bad", b"lr: \x80\n"])
def test_config_loader_on_undecodable_bytes(tmp_path, content):
    path = tmp_path / "train.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="config"):
        load_yaml_config(path)


# -- workflow config through snakemake (each start costs seconds: a few concrete cases) -----

@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "key"), [
    ({"annotate": {"shards": "four"}}, "shards"),  # wrong type
    ({"parse": {"min_length": -5}}, "min_length"),  # negative size
    ({"split": {"val_fractoin": 0.1}}, "val_fractoin"),  # unknown (misspelt) key
])
def test_bad_workflow_config_stops_before_any_job(tmp_path, overrides, key):
    from tests.workflow_utils import copy_workflow, snakemake, write_config

    copy_workflow(tmp_path)
    write_config(tmp_path, overrides)
    proc = snakemake(tmp_path, "--configfile=test_config.yaml", check=False, timeout=120)
    message = proc.stdout + proc.stderr
    assert proc.returncode != 0, message
    assert key in message, message
    assert not (tmp_path / "results").exists(), "a job ran despite the bad config"
