"""Synthetic demo corpus: RNA-like sequences built around designed secondary structures.

The default workflow config runs offline on this corpus (``resources/demo_corpus.fasta``).
Real datasets may not be redistributed, so the project generates its own. Every sequence is
sampled from a small structure grammar and then given bases that fold into that structure:

    exterior  := tail5 domain (linker domain){0,2} tail3          (1-3 domains)
    domain    := stem(4-9 bp) closing one of
                   hairpin loop (3-8 nt)
                   bulge (1-3 nt, one side) or internal loop (1-5 x 1-5 nt), then a domain
                   multiloop with 3-4 branches (the closing stem counts as one branch)

Stems get complementary pairs (mostly GC/AU, some GU wobble, GC at stem ends so helices do
not fray); loops get A/U-rich unpaired bases (A cannot pair with A, so loops rarely capture
each other). A few records carry the variety the workflow has to handle: IUPAC ambiguity
codes, lowercase or DNA letters, near-duplicate families (compensatory mutations in stems,
so the designed structure still holds) and exact duplicates under other ids. Each FASTA
description says the record is synthetic and names its variant and parent, if any.

Only ``random.Random(seed).random()`` is used for randomness: CPython guarantees that method's
output for a given seed across versions (``randint``, ``choice`` and friends carry no such
promise), and no set or dict iteration order or hashing reaches the output, so the files are
byte-identical on every machine. The designed dot-brackets can be written alongside as a TSV
(``id``, ``structure``) for ``structures.source: provided``.
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

from genesis_rna.atomic import atomic_open, atomic_path

DEFAULT_N = 3000
DEFAULT_SEED = 20261125
DEFAULT_MIN_LEN = 40
DEFAULT_MAX_LEN = 200
ID_PREFIX = "GENESIS_DEMO_"
FASTA_WIDTH = 60  # wrapped, so consumers' multi-line FASTA parsing is exercised too

# Weighted tables are tuples of (value, weight): ordered, so sampling never depends on hashing.
_STEM_PAIRS = (("GC", 30), ("CG", 30), ("AU", 15), ("UA", 15), ("GU", 5), ("UG", 5))
# Helix ends carry most of the stacking penalty of a terminal AU/GU; GC there keeps the design
# the minimum-free-energy fold.
_END_PAIRS = (("GC", 40), ("CG", 40), ("AU", 10), ("UA", 10))
_LOOP_BASES = (("A", 40), ("U", 25), ("C", 20), ("G", 15))
_STEM_LENGTHS = ((4, 10), (5, 20), (6, 22), (7, 20), (8, 15), (9, 13))
_HAIRPIN_LENGTHS = ((3, 6), (4, 30), (5, 20), (6, 18), (7, 14), (8, 12))
# Stable tetraloops (GNRA, UNCG) that real hairpins favour.
_TETRALOOPS = (("GAAA", 1), ("GCAA", 1), ("GAGA", 1), ("GUGA", 1), ("UUCG", 1), ("UACG", 1))
_IUPAC_CODES = (
    ("N", 50),
    ("R", 10),
    ("Y", 10),
    ("K", 5),
    ("M", 5),
    ("S", 5),
    ("W", 5),
    ("B", 3),
    ("D", 3),
    ("H", 2),
    ("V", 2),
)
_CANONICAL = frozenset({"AU", "UA", "GC", "CG", "GU", "UG"})
_MAX_DEPTH = 4  # nesting bound so the recursion terminates and lengths stay near the bounds
_MAX_ATTEMPTS = 10_000

T = TypeVar("T")


class DemoRecord(NamedTuple):
    """One demo record with the structure it was designed to fold into."""

    id: str
    description: str
    sequence: str
    structure: str


class _Rng:
    """Sampling built only on ``Random.random()``, whose stream CPython keeps stable."""

    def __init__(self, seed: int):
        self._r = random.Random(seed)

    def random(self) -> float:
        return self._r.random()

    def int_in(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi]."""
        return lo + min(int(self._r.random() * (hi - lo + 1)), hi - lo)

    def weighted(self, table: Sequence[tuple[T, int]]) -> T:
        total = sum(w for _, w in table)
        x = self._r.random() * total
        for value, weight in table:
            x -= weight
            if x < 0:
                return value
        return table[-1][0]

    def shuffled(self, items: list[int]) -> list[int]:
        """Fisher-Yates shuffle of a copy."""
        out = list(items)
        for i in range(len(out) - 1, 0, -1):
            j = self.int_in(0, i)
            out[i], out[j] = out[j], out[i]
        return out


class _Design:
    """A sequence under construction and its dot-bracket."""

    def __init__(self) -> None:
        self.seq: list[str] = []
        self.db: list[str] = []
        self.domains: list[str] = []  # fold label of each exterior domain, 5' to 3'

    def unpaired(self, rng: _Rng, length: int) -> None:
        for _ in range(length):
            self.seq.append(rng.weighted(_LOOP_BASES))
            self.db.append(".")

    def summary(self) -> str:
        """Short fold label: each exterior domain named by its most complex motif."""
        return " + ".join(self.domains)


# Motif labels, least to most complex; a domain is named by the most complex one it contains.
_MOTIF_RANK = ("hairpin", "bulge", "internal loop", "multiloop(3)", "multiloop(4)")


def _domain(rng: _Rng, d: _Design, depth: int) -> int:
    """Append one stem and whatever it closes (recursion depth bounded by ``_MAX_DEPTH``);
    return the ``_MOTIF_RANK`` index of the most complex motif inside."""
    n_bp = rng.weighted(_STEM_LENGTHS)
    pairs = [rng.weighted(_END_PAIRS if k in (0, n_bp - 1) else _STEM_PAIRS) for k in range(n_bp)]
    for p in pairs:
        d.seq.append(p[0])
        d.db.append("(")
    if depth >= _MAX_DEPTH:
        kind = "hairpin"
    else:
        table: tuple[tuple[str, int], ...] = (("hairpin", 45), ("bulge", 12), ("internal", 25))
        if depth <= 1:
            table += (("multiloop", 15),)
        kind = rng.weighted(table)
    if kind == "hairpin":
        size = rng.weighted(_HAIRPIN_LENGTHS)
        if size == 4 and rng.random() < 0.4:
            d.seq.extend(rng.weighted(_TETRALOOPS))
            d.db.extend("....")
        else:
            d.unpaired(rng, size)
        rank = 0
    elif kind in ("bulge", "internal"):
        if kind == "bulge":
            size = rng.int_in(1, 3)
            left, right = (size, 0) if rng.random() < 0.5 else (0, size)
            rank = 1
        else:
            left, right = rng.int_in(1, 5), rng.int_in(1, 5)
            rank = 2
        d.unpaired(rng, left)
        rank = max(rank, _domain(rng, d, depth + 1))
        d.unpaired(rng, right)
    else:
        branches = rng.int_in(3, 4)  # counting the closing stem
        rank = branches  # multiloop(3) and multiloop(4) sit at indices 3 and 4
        for _ in range(branches - 1):
            d.unpaired(rng, rng.int_in(1, 4))
            rank = max(rank, _domain(rng, d, depth + 1))
        d.unpaired(rng, rng.int_in(1, 4))
    for p in reversed(pairs):
        d.seq.append(p[1])
        d.db.append(")")
    return rank


def _design(rng: _Rng, min_len: int, max_len: int) -> _Design:
    """Sample designs until one fits [min_len, max_len] (rejection keeps the grammar simple)."""
    for _ in range(_MAX_ATTEMPTS):
        d = _Design()
        n_domains = rng.weighted(((1, 55), (2, 33), (3, 12)))
        d.unpaired(rng, rng.int_in(0, 8))
        for k in range(n_domains):
            if k:
                d.unpaired(rng, rng.int_in(1, 6))
            d.domains.append(_MOTIF_RANK[_domain(rng, d, 0)])
        d.unpaired(rng, rng.int_in(0, 8))
        if min_len <= len(d.seq) <= max_len:
            return d
    raise ValueError(
        f"no designed structure with length in [{min_len}, {max_len}] after {_MAX_ATTEMPTS} "
        "attempts; widen the length bounds"
    )


def pair_table(structure: str) -> list[int]:
    """Partner index of each position (-1 if unpaired) of a balanced plain dot-bracket."""
    partner = [-1] * len(structure)
    stack: list[int] = []
    for i, c in enumerate(structure):
        if c == "(":
            stack.append(i)
        elif c == ")":
            if not stack:
                raise ValueError(f"unbalanced ')' at position {i + 1}")
            j = stack.pop()
            partner[i], partner[j] = j, i
        elif c != ".":
            raise ValueError(f"unexpected character {c!r} at position {i + 1}")
    if stack:
        raise ValueError(f"unbalanced '(' at position {stack[-1] + 1}")
    return partner


def _mutate(rng: _Rng, seq: str, structure: str) -> tuple[str, int]:
    """Substitute 1-5% of positions; paired bases change as compensatory pairs, so the parent's
    designed structure still holds. Returns the mutant and the number of positions changed."""
    partner = pair_table(structure)
    out = list(seq)
    target = max(1, round((0.01 + 0.04 * rng.random()) * len(seq)))
    changed = 0
    for i in rng.shuffled(list(range(len(seq)))):
        if changed >= target:
            break
        j = partner[i]
        if j < 0:
            new = rng.weighted(tuple((b, w) for b, w in _LOOP_BASES if b != out[i]))
            out[i] = new
            changed += 1
        else:
            lo, hi = min(i, j), max(i, j)
            old = out[lo] + out[hi]
            new = rng.weighted(tuple((p, w) for p, w in _STEM_PAIRS if p != old))
            changed += (new[0] != old[0]) + (new[1] != old[1])
            out[lo], out[hi] = new[0], new[1]
    return "".join(out), changed


def _add_iupac(rng: _Rng, seq: str, structure: str) -> tuple[str, str]:
    """Put one or two ambiguity codes at unpaired positions (a paired N could not be checked)."""
    loops = [i for i, c in enumerate(structure) if c == "."]
    out = list(seq)
    codes = []
    for i in rng.shuffled(loops)[: rng.int_in(1, 2)]:
        out[i] = rng.weighted(_IUPAC_CODES)
        codes.append(f"{out[i]}@{i + 1}")
    return "".join(out), ",".join(codes)


def _letter_variant(rng: _Rng, seq: str) -> tuple[str, str]:
    kind = rng.weighted((("lowercase", 1), ("DNA letters", 1), ("lowercase DNA letters", 1)))
    if "DNA" in kind:
        seq = seq.replace("U", "T")
    if "lowercase" in kind:
        seq = seq.lower()
    return seq, kind


def generate_demo_records(
    n: int = DEFAULT_N,
    seed: int = DEFAULT_SEED,
    min_len: int = DEFAULT_MIN_LEN,
    max_len: int = DEFAULT_MAX_LEN,
) -> list[DemoRecord]:
    """The demo corpus with each record's designed structure, deterministic in all arguments.

    Variant slots are drawn for the whole corpus first, so a smaller ``n`` is a different
    corpus, not a prefix of the larger one.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if min_len < 1 or max_len < min_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len} max_len={max_len}")
    rng = _Rng(seed)

    # Which records are variants. Records derived from a parent sit after the first tenth, so
    # a plain parent always precedes them.
    n_family, n_exact, n_iupac, n_letters = n // 100, min(5, n // 100), n // 50, n // 100
    slots = rng.shuffled(list(range(n // 10, n)))
    family = sorted(slots[:n_family])
    exact = slots[n_family : n_family + n_exact]
    iupac = set(slots[n_family + n_exact : n_family + n_exact + n_iupac])
    letters = set(slots[n_family + n_exact + n_iupac : n_family + n_exact + n_iupac + n_letters])
    # Parents are plain designs, so an "exact duplicate" really equals its parent.
    fresh = sorted(set(range(n)) - set(family) - set(exact) - iupac - letters)
    parent: dict[int, int] = {}

    def pick_parent(before: int) -> int:
        return fresh[rng.int_in(0, bisect.bisect_left(fresh, before) - 1)]

    k = 0
    while k < len(family):  # families of 2-4 mutants of one parent, scattered through the file
        size = min(rng.int_in(2, 4), len(family) - k)
        p = pick_parent(family[k])
        for idx in family[k : k + size]:
            parent[idx] = p
        k += size
    for idx in exact:
        parent[idx] = pick_parent(idx)

    plain: list[tuple[str, str, str]] = []  # (sequence, structure, fold summary) before variants
    records: list[DemoRecord] = []
    for idx in range(n):
        rid = f"{ID_PREFIX}{idx + 1:06d}"
        variant = ""
        if idx in parent:
            seq, structure, fold = plain[parent[idx]]
            pid = records[parent[idx]].id
            if idx in exact:
                variant = f"exact duplicate of {pid}"
            else:
                seq, changed = _mutate(rng, seq, structure)
                variant = f"near-duplicate of {pid}, {changed}/{len(seq)} positions changed"
            plain.append((seq, structure, fold))
        else:
            d = _design(rng, min_len, max_len)
            seq, structure, fold = "".join(d.seq), "".join(d.db), d.summary()
            plain.append((seq, structure, fold))
            if idx in iupac:
                seq, codes = _add_iupac(rng, seq, structure)
                variant = f"IUPAC codes {codes}"
            elif idx in letters:
                seq, variant = _letter_variant(rng, seq)
        extra = f"; variant: {variant}" if variant else ""
        description = f"synthetic RNA-like sequence; designed fold: {fold}{extra}; seed {seed}"
        records.append(DemoRecord(rid, description, seq, structure))
    return records


def generate_demo_corpus(
    n: int = DEFAULT_N,
    seed: int = DEFAULT_SEED,
    min_len: int = DEFAULT_MIN_LEN,
    max_len: int = DEFAULT_MAX_LEN,
) -> list[tuple[str, str, str]]:
    """(id, description, sequence) of each demo record; see ``generate_demo_records``."""
    return [
        (r.id, r.description, r.sequence) for r in generate_demo_records(n, seed, min_len, max_len)
    ]


def fasta_text(records: Sequence[tuple[str, str, str]] | Sequence[DemoRecord]) -> str:
    """FASTA with sequences wrapped at ``FASTA_WIDTH`` and a final newline."""
    lines: list[str] = []
    for rid, description, seq, *_ in records:
        lines.append(f">{rid} {description}")
        lines.extend(seq[i : i + FASTA_WIDTH] for i in range(0, len(seq), FASTA_WIDTH))
    return "\n".join(lines) + "\n"


def structures_text(records: Sequence[DemoRecord]) -> str:
    """Tab-separated ``id``/``structure`` table with a header line."""
    return "id\tstructure\n" + "".join(f"{r.id}\t{r.structure}\n" for r in records)


def write_demo_corpus(
    fasta_path: str | Path, structures_path: str | Path | None = None, **kw
) -> int:
    """Write the corpus (and optionally its designed structures) atomically; return the count.

    ``kw`` goes to ``generate_demo_records``. A structures path ending in ``.gz`` is gzipped
    with a zero timestamp and no file name in the header, so its content stays reproducible.
    """
    records = generate_demo_records(**kw)
    with atomic_open(fasta_path, "w", encoding="ascii", newline="\n") as fh:
        fh.write(fasta_text(records))
    if structures_path is not None:
        data = structures_text(records).encode("ascii")
        with atomic_path(structures_path) as tmp:
            if str(structures_path).endswith(".gz"):
                with (
                    open(tmp, "wb") as raw,
                    gzip.GzipFile(
                        filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0
                    ) as gz,
                ):
                    gz.write(data)
            else:
                tmp.write_bytes(data)
    return len(records)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genesis_rna.demo_corpus",
        description="Write the synthetic demo corpus (and its designed structures).",
    )
    parser.add_argument("--out", required=True, type=Path, help="FASTA to write")
    parser.add_argument("--structures", type=Path, help="TSV (.gz allowed) of id, structure")
    parser.add_argument("-n", type=int, default=DEFAULT_N, help="number of records")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--min-len", type=int, default=DEFAULT_MIN_LEN)
    parser.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN)
    args = parser.parse_args(argv)
    try:
        count = write_demo_corpus(
            args.out,
            args.structures,
            n=args.n,
            seed=args.seed,
            min_len=args.min_len,
            max_len=args.max_len,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {count} records to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
