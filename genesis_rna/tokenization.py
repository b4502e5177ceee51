"""Nucleotide tokenizer and the fixed structure-class order.

The tokenizer reads sequences under ``sequences.MODEL_INPUT``: T -> U, lowercase -> uppercase,
IUPAC ambiguity codes -> ``N``; anything else (gaps, digits, whitespace, punctuation) raises
``ValueError`` naming the character and its 0-based position.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genesis_rna.sequences import MODEL_INPUT, normalize_sequence

# Special tokens first so that PAD is 0 (zero-filled tensors are padding by construction).
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<mask>", "<cls>", "<sep>")
NUCLEOTIDES: tuple[str, ...] = ("A", "C", "G", "U", "N")
VOCAB: tuple[str, ...] = SPECIAL_TOKENS + NUCLEOTIDES

PAD_ID, MASK_ID, CLS_ID, SEP_ID = 0, 1, 2, 3
A_ID, C_ID, G_ID, U_ID, N_ID = 4, 5, 6, 7, 8

# bpRNA element classes in the fixed order used for labels everywhere (E=0 ... M=5).
STRUCTURE_CLASSES: str = "EHSBIM"
STRUCTURE_INDEX: dict[str, int] = {c: k for k, c in enumerate(STRUCTURE_CLASSES)}

# Canonical pairs (Watson-Crick plus GU wobble), used by pair post-processing.
CANONICAL_PAIRS = frozenset({("A", "U"), ("U", "A"), ("G", "C"), ("C", "G"), ("G", "U"), ("U", "G")})


class Tokenizer:
    """Maps RNA strings to token ids; ``encode`` adds CLS ... SEP around the sequence."""

    def __init__(self, vocab: Sequence[str] = VOCAB):
        self.vocab = tuple(vocab)
        self.index = {tok: k for k, tok in enumerate(self.vocab)}
        if self.vocab[:4] != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with {SPECIAL_TOKENS}, got {self.vocab[:4]}")
        if len(self.vocab) > 255:
            raise ValueError(f"at most 255 tokens fit the uint8 ids, got {len(self.vocab)}")
        # Byte -> token id of the one-letter tokens (255: not a token), so that sequences
        # already normalized (every split table's) encode without a Python loop per base.
        self._byte_to_id = np.full(256, 255, dtype=np.uint8)
        for k, tok in enumerate(self.vocab):
            if len(tok) == 1 and ord(tok) < 128:
                self._byte_to_id[ord(tok)] = k

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, sequence: str, add_special_tokens: bool = True) -> np.ndarray:
        """uint8 token ids of ``sequence`` under ``MODEL_INPUT`` (``ValueError`` naming the
        character it cannot read), framed by CLS ... SEP with ``add_special_tokens``."""
        ids = self._byte_to_id[np.frombuffer(sequence.encode("ascii", "replace"), np.uint8)]
        if (ids == 255).any():  # not normalized yet: apply the policy (or name the character)
            normalized = normalize_sequence(sequence, MODEL_INPUT).sequence
            ids = self._byte_to_id[np.frombuffer(normalized.encode("ascii"), np.uint8)]
            if (ids == 255).any():
                missing = sorted({c for c in normalized if c not in self.index})
                raise ValueError(f"nucleotides {missing} are not in the vocabulary {self.vocab}")
        if add_special_tokens:
            ids = np.concatenate([np.array([CLS_ID], np.uint8), ids, np.array([SEP_ID], np.uint8)])
        return ids

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
