"""ViennaRNA folding, one place for the package: the annotate stage's MFE labels
(``mfe_fold`` with its settings), the free energy of a given structure (``structure_energy``)
and the thermodynamic features (``thermo_features``:
partition-function base-pair probabilities above ``BPP_FLOOR`` and the MFE pairs, default
parameters, and optionally the pair probabilities under further parameter sets,
``PARAMETER_SETS``), which the thermo stage stores, the fine-tuned model reads as input channels and
evaluation turns into ViennaRNA's MFE and MEA baselines.

``RNA`` is imported inside the functions: importing this module costs nothing where ViennaRNA
is never called, and spawned workers import it once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

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


# ViennaRNA's RNA energy parameter files, in the order the thermo stage stores their pair
# probabilities: the default (Turner 2004: the features' bpp_p, the MFE pairs and the ViennaRNA
# baselines) first, then the sets fitted to known structures (Andronescu et al. 2007;
# Langdon et al. 2018), each an extra probability column (bpp_x). Their MEA structures err
# differently: averaged pair probabilities of the three beat Turner's alone (README,
# "Thermodynamic features").
PARAMETER_SETS = ("turner2004", "andronescu2007", "langdon2018")


@dataclass
class ThermoFeatures:
    """ViennaRNA's view of one sequence (37 C, no span limit).

    ``bpp_i``/``bpp_j``/``bpp_p``: 0-based i < j and the equilibrium probability of that pair
    (default parameters) for every pair with p >= ``floor`` under some computed parameter set;
    ``bpp_x`` [K, S - 1]: the probabilities of the same cells under ``PARAMETER_SETS[1:S]``
    (0 where below the floor); ``mfe``: the MFE structure's pairs (i < j, default parameters);
    ``mfe_energy``: its free energy and ``ensemble_energy`` the ensemble's, kcal/mol."""

    bpp_i: np.ndarray  # int32 [K]
    bpp_j: np.ndarray  # int32 [K]
    bpp_p: np.ndarray  # float32 [K]
    mfe: np.ndarray  # int32 [M, 2]
    mfe_energy: float
    ensemble_energy: float
    bpp_x: np.ndarray = field(default=None)  # float32 [K, S - 1]

    def __post_init__(self):
        if self.bpp_x is None:
            self.bpp_x = np.zeros((len(self.bpp_p), 0), np.float32)

    @property
    def parameter_sets(self) -> int:
        """How many of ``PARAMETER_SETS`` (in order) these features hold."""
        return 1 + self.bpp_x.shape[1]

    def probabilities(self, s: int) -> np.ndarray:
        """The cells' pair probabilities under ``PARAMETER_SETS[s]``."""
        return self.bpp_p if s == 0 else self.bpp_x[:, s - 1]

    def crop(self, start: int, n: int) -> ThermoFeatures:
        """The features of positions start..start+n-1 (pairs with both bases inside), re-indexed."""
        keep = (self.bpp_i >= start) & (self.bpp_j < start + n)
        mk = (self.mfe[:, 0] >= start) & (self.mfe[:, 1] < start + n) if len(self.mfe) else \
            np.zeros(0, bool)
        return ThermoFeatures(self.bpp_i[keep] - start, self.bpp_j[keep] - start,
                              self.bpp_p[keep], self.mfe[mk] - start, self.mfe_energy,
                              self.ensemble_energy, self.bpp_x[keep])


@cache
def _parameters(name: str):
    """(energy, Boltzmann) parameter objects of a ViennaRNA parameter file, built once per
    process; ViennaRNA's global defaults are Turner 2004 again afterwards."""
    import RNA

    loaders = {"turner2004": RNA.params_load_RNA_Turner2004,
               "andronescu2007": RNA.params_load_RNA_Andronescu2007,
               "langdon2018": RNA.params_load_RNA_Langdon2018}
    try:
        loaders[name]()
        md = RNA.md()
        return RNA.param(md), RNA.exp_param(md)
    finally:
        RNA.params_load_RNA_Turner2004()


def _pair_probabilities(sequence: str, floor: float, parameters: str | None = None):
    """(MFE structure, MFE, ensemble energy, plist above floor) of one parameter set."""
    import RNA

    fc = RNA.fold_compound(sequence)
    if parameters is not None:
        energy, boltzmann = _parameters(parameters)
        fc.params_subst(energy)
        fc.exp_params_subst(boltzmann)
    structure, mfe = fc.mfe()
    fc.exp_params_rescale(mfe)  # Boltzmann factors scaled by the MFE: no overflow on long input
    _, ensemble = fc.pf()
    return structure, mfe, ensemble, fc.plist_from_probs(floor)


def thermo_features(sequence: str, floor: float = BPP_FLOOR,
                    parameter_sets: int = 1) -> ThermoFeatures:
    """Base-pair probabilities (McCaskill, ViennaRNA ``pf()``) above ``floor`` and the MFE
    pairs of ``sequence`` (A/C/G/U; N never pairs) under ViennaRNA's default parameters, and
    with ``parameter_sets`` > 1 the probabilities under ``PARAMETER_SETS[1:parameter_sets]``."""
    if not 1 <= parameter_sets <= len(PARAMETER_SETS):
        raise ValueError(f"parameter_sets must be 1..{len(PARAMETER_SETS)}, got {parameter_sets}")
    structure, mfe, ensemble, plist = _pair_probabilities(sequence, floor)
    cells: dict[tuple[int, int], np.ndarray] = {}
    for s, name in enumerate(PARAMETER_SETS[:parameter_sets]):
        if s:
            plist = _pair_probabilities(sequence, floor, name)[3]
        for e in plist:  # 1-based (i < j), as ViennaRNA's bpp() matrix
            row = cells.get((e.i - 1, e.j - 1))
            if row is None:
                row = cells[(e.i - 1, e.j - 1)] = np.zeros(parameter_sets, np.float32)
            row[s] = e.p
    keys = sorted(cells)
    ij = np.asarray(keys, np.int32).reshape(-1, 2)
    probs = np.stack([cells[k] for k in keys]) if keys else np.zeros((0, parameter_sets), np.float32)
    mfe_pairs = np.asarray(parse_dot_bracket(structure, source="ViennaRNA"), np.int32).reshape(-1, 2)
    return ThermoFeatures(ij[:, 0].copy(), ij[:, 1].copy(), probs[:, 0].copy(), mfe_pairs,
                          float(mfe), float(ensemble), probs[:, 1:].copy())
