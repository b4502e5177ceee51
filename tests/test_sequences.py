"""sequences.normalize_sequence: every policy knob, the rejection categories, one return type."""

from __future__ import annotations

from dataclasses import replace

import pytest

from genesis_rna.sequences import (
    AMBIGUITY_CODES,
    FASTA_RECORDS,
    MODEL_INPUT,
    STRUCTURE_RECORDS,
    InvalidSequence,
    NormalizedSequence,
    SequencePolicy,
    normalize_sequence,
)


def norm(raw: str, policy: SequencePolicy = MODEL_INPUT) -> str:
    return normalize_sequence(raw, policy).sequence


def test_model_policy_t_lowercase_iupac():
    assert norm("acgt") == "ACGU"
    assert norm("ACGURYKMSWBDHVN") == "ACGU" + "N" * 11
    assert norm("") == ""  # an empty sequence is the caller's to handle (inference: no pairs)


@pytest.mark.parametrize("seq,char,pos", [("ACG-U", "-", 3), ("AC GU", " ", 2), ("X", "X", 0),
                                          ("ACGU1", "1", 4)])
def test_model_policy_names_invalid_characters_at_0_based_positions(seq, char, pos):
    with pytest.raises(ValueError, match=rf"{char!r} at position {pos}"):
        norm(seq)


def test_every_policy_returns_one_type_with_the_conversion_count():
    for policy in (MODEL_INPUT, FASTA_RECORDS, STRUCTURE_RECORDS):
        out = normalize_sequence("acgRYn", policy)
        assert isinstance(out, NormalizedSequence)
    assert normalize_sequence("acgRYn", FASTA_RECORDS) == NormalizedSequence("ACGNNN", 2)
    assert normalize_sequence("acgRYn", STRUCTURE_RECORDS) == NormalizedSequence("ACGRYN", 0)


def test_fasta_policy_removes_whitespace_and_counts_from_1():
    assert norm("acgt tg\r\nTTAA\t", FASTA_RECORDS) == "ACGUUGUUAA"
    with pytest.raises(InvalidSequence) as info:
        norm("ACGUxACGU", FASTA_RECORDS)
    assert (info.value.category, str(info.value)) == (
        "illegal character", "illegal character 'x' at position 5")
    with pytest.raises(InvalidSequence) as info:
        norm("AC.GU", FASTA_RECORDS)
    assert info.value.category == "gap characters"
    assert str(info.value) == "gap characters ('.' at position 3); ungap the input"
    for empty in ("", " \n\t"):
        with pytest.raises(InvalidSequence) as info:
            norm(empty, FASTA_RECORDS)
        assert info.value.category == info.value.reason == "empty sequence"


def test_ambiguity_reject_and_keep():
    reject = replace(FASTA_RECORDS, ambiguity="reject")
    assert norm("ACGUN", reject) == "ACGUN"  # N is not an ambiguity code here
    with pytest.raises(InvalidSequence) as info:
        norm("ACGUrY", reject)
    assert info.value.category == "IUPAC code"
    assert str(info.value) == "IUPAC ambiguity code 'R' at position 5 (iupac=reject)"
    keep = replace(FASTA_RECORDS, ambiguity="keep")
    assert normalize_sequence("ac" + AMBIGUITY_CODES.lower(), keep) == NormalizedSequence(
        "AC" + AMBIGUITY_CODES, 0)


def test_structure_policy_changes_nothing_but_case_and_t():
    assert norm("acgt-x~N", STRUCTURE_RECORDS) == "ACGU-X~N"
    assert norm("", STRUCTURE_RECORDS) == ""


def test_position_is_checked_before_uppercasing_changes_lengths():
    # 'ß'.upper() is 'SS': the position must refer to the input as written
    with pytest.raises(InvalidSequence, match="'ß' at position 3"):
        norm("ACßG", FASTA_RECORDS)


@pytest.mark.parametrize("kwargs,key", [({"ambiguity": "drop"}, "ambiguity"),
                                        ({"other": "skip"}, "other"),
                                        ({"first_position": 2}, "first_position")])
def test_bad_policy_values_are_named(kwargs, key):
    with pytest.raises(ValueError, match=key):
        SequencePolicy(**kwargs)
