"""ViennaRNA folding, one place for the package: the annotate stage's MFE labels
(``mfe_fold`` with its settings), the free energy of a given structure (``structure_energy``)
and the thermodynamic features (``thermo_features``:
partition-function base-pair probabilities above ``BPP_FLOOR`` and the MFE pairs, default
parameters), which the thermo stage stores, the fine-tuned model reads as input channels and
evaluation turns into ViennaRNA's MFE and MEA baselines.

``RNA`` is imported inside the functions: importing this module costs nothing where ViennaRNA
is never called, and spawned workers import it once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from genesis_rna.pair_metrics import Pair
from genesis_rna.structures import parse_dot_bracket


def vienna_version() -> str:
    import RNA

    return RNA.__version__


def mfe_fold(sequence: str, max_bp_span: int = -1, temperature: float = 37.0) -> tuple[str, float]:
    """ViennaRNA MFE structure and free energy (kcal/mol); -1 means no base-pair span limit.

    Settings are arguments, not process state, so the annotation stage and the evaluation
    baseline (default parameters) can fold in one process without affecting each other.
    """
    import RNA

    md = RNA.md()
    md.temperature = temperature
    if max_bp_span and max_bp_span > 0:
        md.max_bp_span = max_bp_span
    structure, mfe = RNA.fold_compound(sequence, md).mfe()
    return structure, float(mfe)


def structure_energy(sequence: str, pairs: Iterable[Pair]) -> float:
    """Free energy (kcal/mol, ViennaRNA default parameters) of a structure on ``sequence``, as
    ``RNA.fold_compound(sequence).eval_structure`` gives it (what RNAfold prints beside a
    structure). Pseudoknotted pairs are outside ViennaRNA's energy model: the energy is that of
    the nested part (``structures.split_pseudoknots``)."""
    import RNA

    from genesis_rna.structures import pairs_to_dot_bracket, split_pseudoknots

    nested, _ = split_pseudoknots(pairs)
    db = pairs_to_dot_bracket(nested, len(sequence))
    return float(RNA.fold_compound(sequence).eval_structure(db))


# Pair probabilities below this are not stored. Decoding never uses them (the lowest MEA
# threshold tried is 0.02, and a pair needs p > t to contribute), and to the model a cell of
# 1e-3 is indistinguishable from 0; the stored list stays at a few cells per nucleotide
# (measured on the Rfam seed mix: see README, "Thermodynamic features").
BPP_FLOOR = 1e-3


@dataclass
class ThermoFeatures:
    """ViennaRNA's view of one sequence (default parameters, 37 C, no span limit).

    ``bpp_i``/``bpp_j``/``bpp_p``: 0-based i < j and the equilibrium probability of that pair,
    for every pair with p >= ``floor``; ``mfe``: the MFE structure's pairs (i < j);
    ``mfe_energy``: its free energy and ``ensemble_energy`` the ensemble's, kcal/mol."""

    bpp_i: np.ndarray  # int32 [K]
    bpp_j: np.ndarray  # int32 [K]
    bpp_p: np.ndarray  # float32 [K]
    mfe: np.ndarray  # int32 [M, 2]
    mfe_energy: float
    ensemble_energy: float

    def crop(self, start: int, n: int) -> ThermoFeatures:
        """The features of positions start..start+n-1 (pairs with both bases inside), re-indexed."""
        keep = (self.bpp_i >= start) & (self.bpp_j < start + n)
        mk = (self.mfe[:, 0] >= start) & (self.mfe[:, 1] < start + n) if len(self.mfe) else \
            np.zeros(0, bool)
        return ThermoFeatures(self.bpp_i[keep] - start, self.bpp_j[keep] - start,
                              self.bpp_p[keep], self.mfe[mk] - start, self.mfe_energy,
                              self.ensemble_energy)


def thermo_features(sequence: str, floor: float = BPP_FLOOR) -> ThermoFeatures:
    """Base-pair probabilities (McCaskill, ViennaRNA ``pf()``) above ``floor`` and the MFE
    pairs of ``sequence`` (A/C/G/U; N never pairs), ViennaRNA default parameters."""
    import RNA

    fc = RNA.fold_compound(sequence)
    structure, mfe = fc.mfe()
    fc.exp_params_rescale(mfe)  # Boltzmann factors scaled by the MFE: no overflow on long input
    _, ensemble = fc.pf()
    plist = fc.plist_from_probs(floor)
    k = len(plist)
    i, j, p = np.empty(k, np.int32), np.empty(k, np.int32), np.empty(k, np.float32)
    for n, e in enumerate(plist):  # 1-based (i < j), as ViennaRNA's bpp() matrix
        i[n], j[n], p[n] = e.i - 1, e.j - 1, e.p
    order = np.lexsort((j, i))
    mfe_pairs = np.asarray(parse_dot_bracket(structure, source="ViennaRNA"), np.int32).reshape(-1, 2)
    return ThermoFeatures(i[order], j[order], p[order], mfe_pairs, float(mfe), float(ensemble))
