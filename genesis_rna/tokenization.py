"""Nucleotide tokenizer and the fixed structure-class order.

Policy (deliberate, tested):
- ``T`` becomes ``U`` (DNA-encoded RNA is common in RNAcentral and FASTA dumps);
- lowercase becomes uppercase (soft-masking carries no meaning for this model);
- IUPAC ambiguity codes (R Y K M S W B D H V N) become ``N``: the base is unknown, so the
  model sees one "unknown" token instead of ten rare ones it could never learn;
- anything else (gaps, digits, whitespace, punctuation) raises ``ValueError`` naming the
  character and its 0-based position, since silently dropping it would shift every label.
"""

from __future__ import annotations

from collections.abc import Sequence

# Special tokens first so that PAD is 0 (zero-filled tensors are padding by construction).
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<mask>", "<cls>", "<sep>")
NUCLEOTIDES: tuple[str, ...] = ("A", "C", "G", "U", "N")
VOCAB: tuple[str, ...] = SPECIAL_TOKENS + NUCLEOTIDES

PAD_ID, MASK_ID, CLS_ID, SEP_ID = 0, 1, 2, 3
A_ID, C_ID, G_ID, U_ID, N_ID = 4, 5, 6, 7, 8

# bpRNA element classes in the fixed order used for labels everywhere (E=0 ... M=5).
STRUCTURE_CLASSES: str = "EHSBIM"
STRUCTURE_INDEX: dict[str, int] = {c: k for k, c in enumerate(STRUCTURE_CLASSES)}

IUPAC_AMBIGUOUS = frozenset("RYKMSWBDHVN")
# Canonical pairs (Watson-Crick plus GU wobble), used by pair post-processing.
CANONICAL_PAIRS = frozenset({("A", "U"), ("U", "A"), ("G", "C"), ("C", "G"), ("G", "U"), ("U", "G")})


def normalize_sequence(sequence: str) -> str:
    """Apply the policy above; return an A/C/G/U/N string or raise ``ValueError``."""
    out = []
    for pos, ch in enumerate(sequence):
        up = ch.upper()
        if up in "ACGU":
            out.append(up)
        elif up == "T":
            out.append("U")
        elif up in IUPAC_AMBIGUOUS:
            out.append("N")
        else:
            raise ValueError(f"invalid nucleotide {ch!r} at position {pos}")
    return "".join(out)


class Tokenizer:
    """Maps RNA strings to token ids; ``encode`` adds CLS ... SEP around the sequence."""

    def __init__(self, vocab: Sequence[str] = VOCAB):
        self.vocab = tuple(vocab)
        self.index = {tok: k for k, tok in enumerate(self.vocab)}
        if self.vocab[:4] != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with {SPECIAL_TOKENS}, got {self.vocab[:4]}")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode_nucleotides(self, sequence: str) -> list[int]:
        """Token ids of the normalized sequence, without special tokens."""
        return [self.index[c] for c in normalize_sequence(sequence)]

    def encode(self, sequence: str, add_special_tokens: bool = True) -> list[int]:
        ids = self.encode_nucleotides(sequence)
        return [CLS_ID, *ids, SEP_ID] if add_special_tokens else ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        toks = [self.vocab[int(i)] for i in ids]
        if skip_special_tokens:
            toks = [t for t in toks if t not in SPECIAL_TOKENS]
        return "".join(toks)

    def to_dict(self) -> dict:
        return {"vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:
        return cls(d["vocab"])
