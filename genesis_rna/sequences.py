"""The nucleotide alphabet and the one sequence normalizer, driven by a ``SequencePolicy``.

Always: letters are uppercased (soft-masking carries no meaning here) and ``T`` becomes ``U``
(DNA-encoded RNA is common in RNAcentral and FASTA dumps). The policy says the rest: what
happens to IUPAC ambiguity codes, to other characters, to whitespace and to an empty
sequence, and whether positions in messages count from 1 (file contents people read) or
from 0 (token and pair indices, which are 0-based everywhere in the model code).

Three policies cover the project:
- ``FASTA_RECORDS``: the parse stage and predict (whitespace of wrapped lines removed, gaps
  and illegal characters rejected with 1-based positions, an empty record rejected; the parse
  stage swaps in its configured ``iupac``);
- ``MODEL_INPUT``: what the tokenizer accepts (codes become ``N``; any other character, gaps
  and whitespace included, is an error at its 0-based position, since silently dropping it
  would shift every label);
- ``STRUCTURE_RECORDS``: sequences of structure files are only case-folded and T -> U, so
  nothing is changed silently beyond case; evaluation applies ``MODEL_INPUT`` later and
  reports what the model cannot read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

RNA_BASES = "ACGU"
UNKNOWN_BASE = "N"  # IUPAC "any base": the one unknown token the model sees
# IUPAC nucleotide ambiguity codes other than N. Each names 2-3 possible bases; the model gets
# N for all of them rather than ten rare tokens it could never learn.
AMBIGUITY_CODES = "RYKMSWBDHV"
GAP_CHARS = "-."

# Anything but DNA/RNA letters, N and the ambiguity codes (either case).
_OUTSIDE_ALPHABET = re.compile(f"[^ACGTU{UNKNOWN_BASE}{AMBIGUITY_CODES}]", re.IGNORECASE)
_AMBIGUOUS = re.compile(f"[{AMBIGUITY_CODES}]")
_WHITESPACE = re.compile(r"\s+")
_T_TO_U = str.maketrans("T", "U")


class InvalidSequence(ValueError):
    """A sequence the policy rejects. ``category`` is a short stable label for counting
    (e.g. ``"gap characters"``); the message is the full reason with the position."""

    def __init__(self, category: str, reason: str):
        self.category = category
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class SequencePolicy:
    """What ``normalize_sequence`` does beyond uppercasing and T -> U.

    ``ambiguity``: IUPAC codes R..V become N (``to_n``), reject the sequence (``reject``) or
    stay as written (``keep``); N itself is always kept. ``other``: any other character
    rejects the sequence (``reject``, naming it: a gap character gets its own category) or is
    kept as written (``keep``). ``remove_whitespace``: drop whitespace first (line breaks and
    spaces of wrapped FASTA lines) instead of treating it as another character.
    ``allow_empty``: an empty result is a sequence (True) or a rejection (False).
    ``first_position``: the number of the first position in messages.
    """

    ambiguity: Literal["to_n", "reject", "keep"] = "to_n"
    other: Literal["reject", "keep"] = "reject"
    remove_whitespace: bool = False
    allow_empty: bool = True
    first_position: int = 1

    def __post_init__(self):
        if self.ambiguity not in ("to_n", "reject", "keep"):
            raise ValueError(f"ambiguity must be 'to_n', 'reject' or 'keep', got {self.ambiguity!r}")
        if self.other not in ("reject", "keep"):
            raise ValueError(f"other must be 'reject' or 'keep', got {self.other!r}")
        if self.first_position not in (0, 1):
            raise ValueError(f"first_position must be 0 or 1, got {self.first_position}")


FASTA_RECORDS = SequencePolicy(remove_whitespace=True, allow_empty=False, first_position=1)
MODEL_INPUT = SequencePolicy(first_position=0)
STRUCTURE_RECORDS = SequencePolicy(ambiguity="keep", other="keep")


@dataclass(frozen=True)
class NormalizedSequence:
    sequence: str
    ambiguity_to_n: int = 0  # IUPAC codes R..V rewritten as N (ambiguity='to_n')


def normalize_sequence(raw: str, policy: SequencePolicy) -> NormalizedSequence:
    """Apply ``policy`` to ``raw``; raise ``InvalidSequence`` (a ValueError) when it rejects.

    Rejection order: empty (after whitespace removal), the first character outside the
    alphabet, then the first ambiguity code under ``ambiguity='reject'``.
    """
    seq = _WHITESPACE.sub("", raw) if policy.remove_whitespace else raw
    if not seq:
        if policy.allow_empty:
            return NormalizedSequence("")
        raise InvalidSequence("empty sequence", "empty sequence")
    if policy.other == "reject":
        # Checked before uppercasing: str.upper can change a non-ASCII string's length,
        # which would shift the reported position.
        bad = _OUTSIDE_ALPHABET.search(seq)
        if bad:
            ch, pos = bad.group(), bad.start() + policy.first_position
            if ch in GAP_CHARS:
                raise InvalidSequence(
                    "gap characters", f"gap characters ({ch!r} at position {pos}); ungap the input"
                )
            raise InvalidSequence("illegal character", f"illegal character {ch!r} at position {pos}")
    seq = seq.upper().translate(_T_TO_U)
    if policy.ambiguity == "reject":
        amb = _AMBIGUOUS.search(seq)
        if amb:
            pos = amb.start() + policy.first_position
            raise InvalidSequence(
                "IUPAC code", f"IUPAC ambiguity code {amb.group()!r} at position {pos} (iupac=reject)"
            )
    elif policy.ambiguity == "to_n":
        seq, converted = _AMBIGUOUS.subn(UNKNOWN_BASE, seq)
        return NormalizedSequence(seq, converted)
    return NormalizedSequence(seq)
